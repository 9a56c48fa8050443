//! The picture of usage from a client: what the functions read, and that their figures
//! agree with the balance whatever the account is.

use pg_credits_client_tests::*;
use postgres::Client;
use rust_decimal::Decimal;

/// Restores `accounts` accounts of `entries` entries each, one an hour back from now, as
/// pg_restore would (account rows and entries together, each balance their sum).
fn restore_history(client: &mut Client, accounts: i32, entries: i32) {
    client
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO credits.accounts (account, balance, created_at)
             SELECT 'acct-' || a, 1000 - {entries} + 1, now() - interval '1 hour' * {entries}
               FROM generate_series(1, {accounts}) a;
             INSERT INTO credits.ledger (account, amount, kind, reason, created_at)
             SELECT 'acct-' || a, CASE WHEN e = 1 THEN 1000 ELSE -1 END, CASE WHEN e = 1 THEN 'opening' ELSE 'charge' END,
                    CASE WHEN e = 1 THEN 'initial balance' WHEN e % 2 = 0 THEN 'search' ELSE 'chat' END,
                    now() - interval '1 hour' * ({entries} - e + 1)
               FROM generate_series(1, {accounts}) a, generate_series(1, {entries}) e;
             COMMIT;
             ANALYZE credits.ledger, credits.accounts;"
        ))
        .unwrap();
}

#[test]
fn the_usage_functions_read_only_the_accounts_entries_through_an_index() {
    let db = fresh_database("usage_indexes");
    let mut client = connect(&db);
    restore_history(&mut client, 300, 200);
    let mut tx = client.transaction().unwrap();
    let calls = [
        "SELECT count(*) FROM credits.statement('acct-7', now() - interval '2 days', now(), 'hour')",
        "SELECT count(*) FROM credits.statement('acct-7', now() - interval '190 hours', now() - interval '150 hours', 'day', 'Asia/Tokyo')",
        "SELECT count(*) FROM credits.usage('acct-7', now() - interval '3 days', now())",
        "SELECT count(*) FROM credits.balance_at('acct-7', now() - interval '100 hours')",
        "SELECT count(*) FROM credits.runway('acct-7')",
    ];
    // The backend's counts not sent to the statistics yet (the restore's among them), so
    // what the calls add is the difference.
    let reads = |tx: &mut postgres::Transaction<'_>| -> (i64, i64) {
        let sql = "SELECT seq_scan, idx_tup_fetch FROM pg_stat_xact_user_tables WHERE relid = 'credits.ledger'::regclass";
        let row = tx.query_one(sql, &[]).unwrap();
        (row.get(0), row.get(1))
    };
    let before = reads(&mut tx);
    for call in calls {
        tx.query_one(call, &[]).unwrap();
    }
    let after = reads(&mut tx);
    let (seq_scanned, returned) = (after.0 - before.0, after.1 - before.1);
    assert_eq!(seq_scanned, 0, "no sequential scan of the ledger");
    // Each call reads at most the account's 200 entries (60,000 in the ledger).
    assert!(returned <= 200 * calls.len() as i64, "read {returned} entries");
}

#[test]
fn statements_agree_with_the_balance_for_every_kind_of_account() {
    let db = fresh_database("usage_agree");
    let mut client = connect(&db);
    client
        .batch_execute(
            "SELECT credits.create_account('plain', 100);
             SELECT credits.charge('plain', 30, 'chat');
             SELECT credits.create_account('hot', 1000); SELECT credits.set_slots('hot', 4);
             SELECT credits.charge('hot', 7, 'chat') FROM generate_series(1, 10);
             SELECT credits.create_account('granted', 10);
             SELECT credits.grant('granted', 50, 'promotional', priority => 10);
             SELECT credits.charge('granted', 55, 'chat');
             SELECT hold_id FROM credits.hold('granted', 3);",
        )
        .unwrap();
    for account in ["plain", "hot", "granted"] {
        let row = client
            .query_one(
                "SELECT sum(credited) - sum(debited) - sum(expired), min(opening) FILTER (WHERE period_start < now() - interval '1 day'),
                        (array_agg(closing ORDER BY period_start DESC))[1],
                        credits.balance_at($1, now()), credits.balance($1),
                        bool_and(opening + credited - debited - expired = closing)
                   FROM credits.statement($1, now() - interval '2 days', now() + interval '1 hour', 'hour')",
                &[&account],
            )
            .unwrap();
        let (net, before, closing, at_now, balance, reconciles): (Decimal, Decimal, Decimal, Decimal, Decimal, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5));
        assert_eq!(before, dec("0"), "{account}: nothing before it was opened");
        assert_eq!((net, closing, at_now), (balance, balance, balance), "{account}");
        assert!(reconciles, "{account}: every period reconciles");
        let spent: Decimal = client
            .query_one("SELECT sum(spent) FROM credits.usage($1, now() - interval '1 day', now() + interval '1 hour')", &[&account])
            .unwrap()
            .get(0);
        let debited: Decimal = client
            .query_one("SELECT debited FROM credits.statement($1, now() - interval '1 day', now() + interval '1 hour')", &[&account])
            .unwrap()
            .get(0);
        assert_eq!(spent, debited, "{account}: usage is what the statement debits");
    }
    assert_ledger_invariant(&mut client);
}
