//! Grants from a client: burn order, expiry, voiding, replays and races.

use pg_credits_client_tests::*;
use postgres::Client;
use rust_decimal::Decimal;
use std::thread;
use std::time::Duration;

/// Grants `amount` with the given SQL arguments after it; returns the grant id.
fn grant(client: &mut Client, account: &str, amount: &str, terms: &str) -> i64 {
    client
        .query_one(&format!("SELECT grant_id FROM credits.grant($1, {amount}{terms})"), &[&account])
        .unwrap()
        .get(0)
}

/// The pools a charge took from, in ledger order: (grant_id, amount), 0 for the own balance.
fn drawn(client: &mut Client, account: &str, since: i64) -> Vec<(i64, Decimal)> {
    client
        .query(
            "SELECT coalesce(grant_id, 0), -amount FROM credits.ledger
              WHERE account = $1 AND kind = 'charge' AND id > $2 ORDER BY id",
            &[&account, &since],
        )
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

fn last_entry(client: &mut Client) -> i64 {
    client.query_one("SELECT coalesce(max(id), 0) FROM credits.ledger", &[]).unwrap().get(0)
}

#[test]
fn the_burn_order_is_total_and_documented() {
    // Each case: the own balance, grants (amount, SQL terms), a charge, and what it draws
    // from each pool (1-based grant, 0 for the own balance).
    type Case<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str, &'a [(usize, &'a str)]);
    let cases: &[Case] = &[
        ("priority first", "0", &[("10", ", priority => 60"), ("10", ", priority => 40")], "15", &[(2, "10"), (1, "5")]),
        ("soonest expiry", "0", &[("10", ", expires_at => now() + interval '2 days'"), ("10", ", expires_at => now() + interval '1 day'")], "12", &[(2, "10"), (1, "2")]),
        ("never-expiring last", "0", &[("10", ""), ("10", ", expires_at => now() + interval '9 days'")], "12", &[(2, "10"), (1, "2")]),
        ("promotional before paid", "0", &[("10", ", 'paid'"), ("10", ", 'promotional'")], "12", &[(2, "10"), (1, "2")]),
        ("earlier effective_at", "0", &[("10", ", effective_at => now() - interval '1 hour'"), ("10", ", effective_at => now() - interval '2 hours'")], "12", &[(2, "10"), (1, "2")]),
        ("then the grant id", "0", &[("10", ""), ("10", "")], "12", &[(1, "10"), (2, "2")]),
        ("not in effect yet", "0", &[("10", ", effective_at => now() + interval '1 hour'"), ("10", "")], "10", &[(2, "10")]),
        ("the own balance before equal grants", "50", &[("10", "")], "60", &[(0, "50"), (1, "10")]),
        ("the own balance after a lower priority", "50", &[("10", ", priority => 49"), ("10", ", priority => 51")], "15", &[(1, "10"), (0, "5")]),
        ("the own balance after expiring credit", "50", &[("10", ", expires_at => now() + interval '1 year'")], "15", &[(1, "10"), (0, "5")]),
    ];
    for (what, own, grants, cost, expected) in cases {
        let db = fresh_database("grants_order");
        let mut client = connect(&db);
        client.execute(&format!("SELECT credits.create_account('a', {own})"), &[]).unwrap();
        let ids: Vec<i64> = grants.iter().map(|(amount, terms)| grant(&mut client, "a", amount, terms)).collect();
        let since = last_entry(&mut client);
        client.query_one(&format!("SELECT credits.charge('a', {cost})"), &[]).unwrap();
        let expected: Vec<(i64, Decimal)> =
            expected.iter().map(|&(n, amount)| (if n == 0 { 0 } else { ids[n - 1] }, dec(amount))).collect();
        assert_eq!(drawn(&mut client, "a", since), expected, "{what}");
        assert_ledger_invariant(&mut client);
    }
}

#[test]
fn a_charge_spanning_grants_is_one_charge_in_the_callers_statement() {
    let db = fresh_database("grants_span");
    let mut client = connect(&db);
    for i in 0..5 {
        grant(&mut client, "a", "2", &format!(", priority => {i}"));
    }
    let since = last_entry(&mut client);
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT credits.charge('a', 9, idempotency_key => 'k')", &[]).unwrap();
    tx.rollback().unwrap();
    assert_eq!(balance(&mut client, "a"), dec("10"));
    assert_eq!(client.query_one("SELECT credits.charge('a', 9, idempotency_key => 'k')", &[]).unwrap().get::<_, Decimal>(0), dec("1"));
    assert_eq!(drawn(&mut client, "a", since).len(), 5);
    assert_eq!(client.query_one("SELECT credits.charge('a', 9, idempotency_key => 'k')", &[]).unwrap().get::<_, Decimal>(0), dec("1"));
    assert_eq!(db_error(client.query_one("SELECT credits.charge('a', 8, idempotency_key => 'k')", &[])).code().code(), "PT409");
    // charge_many replays the same key the same way.
    let status: String = client
        .query_one("SELECT status FROM credits.charge_many(ARRAY['a'], ARRAY[9]::numeric[], ARRAY['k'])", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "replayed");
    assert_ledger_invariant(&mut client);
}

#[test]
fn expiry_takes_effect_at_once_and_is_written_once() {
    let db = fresh_database("grants_expiry");
    let mut client = connect(&db);
    client.execute("SELECT credits.recharge('a', 5)", &[]).unwrap();
    let g = grant(&mut client, "a", "20", ", 'promotional', expires_at => clock_timestamp() + interval '200 milliseconds'");
    client.query_one("SELECT credits.charge('a', 3)", &[]).unwrap();
    assert_eq!((balance(&mut client, "a"), available(&mut client, "a")), (dec("22"), dec("22")));
    thread::sleep(Duration::from_millis(300));
    // Already gone for every reader and every decision, before the entry is written.
    assert_eq!((balance(&mut client, "a"), available(&mut client, "a")), (dec("5"), dec("5")));
    let status: String = client.query_one("SELECT status FROM credits.grants WHERE grant_id = $1", &[&g]).unwrap().get(0);
    assert_eq!(status, "expired");
    assert_eq!(db_error(client.query_one("SELECT credits.charge('a', 6)", &[])).code().code(), "PT402");
    // The refused charge rolled back the expiry it wrote; expire_grants writes it, once.
    assert_eq!(client.query_one("SELECT credits.expire_grants()", &[]).unwrap().get::<_, i32>(0), 1);
    assert_eq!(client.query_one("SELECT credits.expire_grants()", &[]).unwrap().get::<_, i32>(0), 0);
    let expiry: (Decimal, bool) = client
        .query_one(
            "SELECT l.amount, l.created_at = g.expires_at FROM credits.ledger l JOIN credits.account_grants g USING (account, grant_id)
              WHERE l.kind = 'expiry'",
            &[],
        )
        .map(|row| (row.get(0), row.get(1)))
        .unwrap();
    assert_eq!(expiry, (dec("-17"), true));
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_charge_racing_a_grants_expiry() {
    // The charge decides by the clock under the lock: once the grant has expired it
    // cannot pay from it, whichever transaction began first.
    let db = fresh_database("grants_expiry_race");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 0)", &[]).unwrap();
    grant(&mut client, "a", "10", ", expires_at => clock_timestamp() + interval '300 milliseconds'");
    let mut blocker = connect(&db);
    let mut tx = blocker.transaction().unwrap();
    tx.query_one("SELECT credits.charge('a', 1)", &[]).unwrap();
    let db2 = db.clone();
    let racer = thread::spawn(move || {
        let mut client = connect(&db2);
        let mut tx = client.transaction().unwrap();
        tx.query_one("SELECT credits.available('a')", &[]).unwrap();
        let result = tx.query_one("SELECT credits.charge('a', 5)", &[]).map(drop);
        let code = result.map_err(|e| e.as_db_error().unwrap().code().code().to_owned());
        let _ = tx.commit();
        code
    });
    thread::sleep(Duration::from_millis(500));
    tx.commit().unwrap();
    assert_eq!(racer.join().unwrap(), Err("PT402".to_owned()));
    assert_eq!(balance(&mut client, "a"), dec("0"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn void_set_expiry_replays_and_errors() {
    let db = fresh_database("grants_void");
    let mut client = connect(&db);
    let g = client
        .query_one("SELECT grant_id FROM credits.grant('a', 10, idempotency_key => 'promo-1')", &[])
        .unwrap()
        .get::<_, i64>(0);
    let again: i64 = client.query_one("SELECT grant_id FROM credits.grant('a', 10, idempotency_key => 'promo-1')", &[]).unwrap().get(0);
    assert_eq!(again, g);
    assert_eq!(db_error(client.query_one("SELECT * FROM credits.grant('a', 11, idempotency_key => 'promo-1')", &[])).code().code(), "PT409");
    client.query_one("SELECT credits.charge('a', 4)", &[]).unwrap();
    let voided = client.query_one("SELECT voided, balance FROM credits.void_grant($1, 'fraud', 'v-1')", &[&g]).unwrap();
    assert_eq!((voided.get::<_, Decimal>(0), voided.get::<_, Decimal>(1)), (dec("6"), dec("0")));
    let replayed = client.query_one("SELECT voided, balance FROM credits.void_grant($1, 'fraud', 'v-1')", &[&g]).unwrap();
    assert_eq!(replayed.get::<_, Decimal>(0), dec("6"));
    assert_eq!(db_error(client.query_one("SELECT * FROM credits.void_grant($1)", &[&g])).code().code(), "PT403");
    let missing = db_error(client.query_one("SELECT * FROM credits.void_grant(987654)", &[]));
    assert_eq!((missing.code().code(), payload(&missing)["name"].as_str()), ("PT404", Some("GrantNotFoundError")));
    assert_eq!(db_error(client.execute("SELECT credits.set_grant_expiry(0, NULL)", &[])).code().code(), "PT404");
    let h = grant(&mut client, "a", "3", ", expires_at => now() + interval '1 hour'");
    client.execute("SELECT credits.set_grant_expiry($1, NULL)", &[&h]).unwrap();
    let never: Option<std::time::SystemTime> = client.query_one("SELECT expires_at FROM credits.grants WHERE grant_id = $1", &[&h]).unwrap().get(0);
    assert!(never.is_none());
    assert_ledger_invariant(&mut client);
}

#[test]
fn grants_and_holds_together() {
    let db = fresh_database("grants_holds");
    let mut client = connect(&db);
    client.execute("SELECT credits.recharge('a', 10)", &[]).unwrap();
    let promo = grant(&mut client, "a", "10", ", 'promotional', priority => 0");
    // The hold draws in burn order too: all of the promotion, then 2 of the own balance.
    let h: i64 = client.query_one("SELECT hold_id FROM credits.hold('a', 12)", &[]).unwrap().get(0);
    let held: Decimal = client.query_one("SELECT held FROM credits.grants WHERE grant_id = $1", &[&promo]).unwrap().get(0);
    assert_eq!((held, available(&mut client, "a")), (dec("10"), dec("8")));
    // Voiding the promotion leaves its held part with the hold; released, it is voided too.
    client.query_one("SELECT * FROM credits.void_grant($1)", &[&promo]).unwrap();
    assert_eq!((balance(&mut client, "a"), available(&mut client, "a")), (dec("20"), dec("8")));
    client.query_one("SELECT * FROM credits.release($1)", &[&h]).unwrap();
    assert_eq!((balance(&mut client, "a"), available(&mut client, "a")), (dec("10"), dec("10")));
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_thousand_grants_are_not_read_by_a_charge() {
    let db = fresh_database("grants_many");
    let mut client = connect(&db);
    client
        .batch_execute(
            "SELECT credits.grant('a', 1, priority => 1 + (i % 90), expires_at => now() + i * interval '1 minute')
               FROM generate_series(1, 1000) i",
        )
        .unwrap();
    client.query_one("SELECT credits.charge('a', 2.5)", &[]).unwrap();
    // The plan reads the burn-order index, not the grants.
    let plan: Vec<String> = client
        .query(
            "EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF, TIMING OFF)
             SELECT grant_id FROM credits.account_grants
              WHERE account = 'a' AND closed IS NULL AND remaining > 0
              ORDER BY priority, expires_at, (category = 'paid'), effective_at, grant_id LIMIT 16",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(plan.iter().any(|line| line.contains("account_grants_burn_order")), "{plan:#?}");
    assert!(!plan.iter().any(|line| line.contains("Sort")), "{plan:#?}");
    assert_eq!(balance(&mut client, "a"), dec("997.5"));
    assert_ledger_invariant(&mut client);
}
