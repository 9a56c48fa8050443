//! The direct paths (src/direct: a charge, a slot charge, a batch's writes, a hold and its
//! capture or release, a charge drawn from grants, a transfer) write the tables without
//! the executor: these tests check that what they write is exactly what the SQL path
//! writes, that indexes stay complete (amcheck), that transactions and savepoints see
//! and undo it like any write, and that tables changed by hand make charges take the
//! SQL path instead.

use pg_credits_client_tests::*;
use rust_decimal::Decimal;

fn account(test: &str) -> postgres::Client {
    let db = fresh_database(test);
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 1000, low_balance_threshold => 10)", &[]).unwrap();
    client
}

#[test]
fn a_charge_writes_the_full_ledger_entry() {
    let mut client = account("direct_entry");
    let mut tx = client.transaction().unwrap();
    let after: Decimal = tx
        .query_one("SELECT credits.charge('a', 2.5, reason => 'api call', metadata => '{\"req\": 7}')", &[])
        .unwrap()
        .get(0);
    assert_eq!(after, dec("997.5"));
    let row = tx
        .query_one(
            "SELECT amount, balance_after, kind, reason, metadata->>'req', idempotency_key IS NULL,
                    txid = pg_current_xact_id(), created_at = now(),
                    (SELECT updated_at = now() FROM credits.accounts WHERE account = 'a')
               FROM credits.ledger WHERE kind = 'charge'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, Decimal>(0), dec("-2.5"));
    assert_eq!(row.get::<_, Decimal>(1), dec("997.5"));
    assert_eq!(row.get::<_, String>(2), "charge");
    assert_eq!(row.get::<_, String>(3), "api call");
    assert_eq!(row.get::<_, String>(4), "7");
    for column in 5..9 {
        assert!(row.get::<_, bool>(column), "column {column}");
    }
    tx.commit().unwrap();
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_batch_writes_full_ledger_entries_in_item_order() {
    let mut client = account("direct_batch_entry");
    client.execute("SELECT credits.create_account('b', 10)", &[]).unwrap();
    let mut tx = client.transaction().unwrap();
    tx.query(
        "SELECT * FROM credits.charge_many(ARRAY['b', 'a', 'b', 'a'], ARRAY[1, 2, 3, 4]::numeric[],
                                           ARRAY['k1', NULL, 'k3', 'k4'], reason => 'usage')",
        &[],
    )
    .unwrap();
    let rows = tx
        .query(
            "SELECT account, amount, balance_after, idempotency_key, kind = 'charge' AND reason = 'usage'
                    AND metadata IS NULL AND txid = pg_current_xact_id() AND created_at = now()
               FROM credits.ledger WHERE kind = 'charge' ORDER BY id",
            &[],
        )
        .unwrap();
    let entries: Vec<(String, Decimal, Decimal, Option<String>, bool)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
    let expected = [
        ("a", "-2", "998", None),
        ("a", "-4", "994", Some("k4")),
        ("b", "-1", "9", Some("k1")),
        ("b", "-3", "6", Some("k3")),
    ];
    assert_eq!(entries.len(), expected.len());
    for (entry, (account, amount, after, key)) in entries.iter().zip(expected) {
        assert_eq!((entry.0.as_str(), entry.1, entry.2, entry.3.as_deref()), (account, dec(amount), dec(after), key));
        assert!(entry.4, "kind, reason, metadata, txid and created_at of {entry:?}");
    }
    let updated: bool =
        tx.query_one("SELECT bool_and(updated_at = now()) FROM credits.accounts", &[]).unwrap().get(0);
    assert!(updated, "both accounts' updated_at");
    tx.commit().unwrap();
    let replayed = client
        .query_one("SELECT credits.charge('b', 3, idempotency_key => 'k3'), credits.balance('b')", &[])
        .unwrap();
    assert_eq!((replayed.get::<_, Decimal>(0), replayed.get::<_, Decimal>(1)), (dec("6"), dec("6")),
               "the batch's key is found by a single charge");
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_key_applies_once_whether_replayed_in_its_transaction_or_after() {
    let mut client = account("direct_keys");
    let mut tx = client.transaction().unwrap();
    let charge = "SELECT credits.charge('a', $1::text::numeric, idempotency_key => 'k')";
    for _ in 0..2 {
        let after: Decimal = tx.query_one(charge, &[&"5"]).unwrap().get(0);
        assert_eq!(after, dec("995"));
    }
    tx.commit().unwrap();
    let after: Decimal = client.query_one(charge, &[&"5"]).unwrap().get(0);
    assert_eq!(after, dec("995"), "replayed after commit");
    let conflict = db_error(client.query_one(charge, &[&"6"]));
    assert_eq!(payload(&conflict)["name"], "IdempotencyConflictError");
    let entry = client
        .query_one("SELECT count(*), min(amount), min(balance_after) FROM credits.ledger WHERE idempotency_key = 'k'", &[])
        .unwrap();
    assert_eq!((entry.get::<_, i64>(0), entry.get::<_, Decimal>(1), entry.get::<_, Decimal>(2)),
               (1, dec("-5"), dec("995")));
    assert_ledger_invariant(&mut client);
}

#[test]
fn charges_within_one_statement_and_one_transaction_see_each_other() {
    let mut client = account("direct_visibility");
    let row = client
        .query_one("SELECT credits.charge('a', 1), credits.charge('a', 1), credits.balance('a')", &[])
        .unwrap();
    assert_eq!((row.get::<_, Decimal>(0), row.get::<_, Decimal>(1), row.get::<_, Decimal>(2)),
               (dec("999"), dec("998"), dec("998")));
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT credits.charge('a', 8)", &[]).unwrap();
    let mut savepoint = tx.savepoint("s").unwrap();
    savepoint.query_one("SELECT credits.charge('a', 100)", &[]).unwrap();
    savepoint.rollback().unwrap();
    tx.commit().unwrap();
    assert_eq!(balance(&mut client, "a"), dec("990"));
    let entries: i64 = client.query_one("SELECT count(*) FROM credits.ledger WHERE kind = 'charge'", &[]).unwrap().get(0);
    assert_eq!(entries, 3, "the rolled-back charge left no entry");
    assert_ledger_invariant(&mut client);
}

/// amcheck over every index of pg_credits' tables: the structure, and that each heap row
/// has its entry (heapallindexed).
fn check_indexes(client: &mut postgres::Client) {
    check(
        client,
        &[
            "credits.accounts_pkey",
            "credits.ledger_pkey",
            "credits.ledger_idempotency_key",
            "credits.ledger_account_created_at",
            "credits.account_slots_pkey",
        ],
    );
}

/// amcheck: every row of the table is in the index, and the index is well formed.
fn check(client: &mut postgres::Client, indexes: &[&str]) {
    for index in indexes {
        client
            .execute(&format!("SELECT bt_index_parent_check('{index}', heapallindexed => true)"), &[])
            .unwrap_or_else(|e| panic!("{index}: {e}"));
    }
}

#[test]
fn indexes_hold_every_row_the_direct_path_wrote() {
    let mut client = account("direct_amcheck");
    client
        .batch_execute(
            "CREATE EXTENSION amcheck;
             SELECT credits.create_account('acct-' || i, 100) FROM generate_series(1, 200) i;
             SELECT credits.charge('acct-' || (i % 200 + 1), 0.25) FROM generate_series(1, 20000) i;
             SELECT credits.charge('a', 1) FROM generate_series(1, 500);
             SELECT credits.set_slots('a', 4);
             SELECT credits.charge('a', 1, idempotency_key => 'hot-' || i) FROM generate_series(1, 300) i;
             SELECT credits.charge('acct-' || (i % 200 + 1), 0.25, idempotency_key => 'single-' || i)
               FROM generate_series(1, 2000) i;
             SELECT count(*) FROM credits.charge_many(
                 ARRAY(SELECT 'acct-' || (i % 200 + 1) FROM generate_series(1, 2000) i),
                 array_fill(0.25::numeric, ARRAY[2000]),
                 ARRAY(SELECT 'usage-' || i FROM generate_series(1, 2000) i));",
        )
        .unwrap();
    check_indexes(&mut client);
    assert_eq!(balance(&mut client, "acct-1"), dec("70"));
    assert_eq!(balance(&mut client, "a"), dec("200"));
    for prefix in ["single-", "usage-", "hot-"] {
        let keyed: i64 = client
            .query_one("SELECT count(*) FROM credits.ledger WHERE idempotency_key LIKE $1 || '%'", &[&prefix])
            .unwrap()
            .get(0);
        assert_eq!(keyed, if prefix == "hot-" { 300 } else { 2000 }, "{prefix}");
    }
    assert_ledger_invariant(&mut client);
}

#[test]
fn tables_changed_by_hand_are_honoured() {
    let mut client = account("direct_hand_made");
    client
        .batch_execute(
            // Inside pg_credits' functions only pg_catalog is searched: triggers added
            // to its tables name their own tables in full.
            "CREATE TABLE audit (account text, balance numeric);
             CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN INSERT INTO public.audit VALUES (NEW.account, NEW.balance); RETURN NULL; END $$;
             CREATE TRIGGER audit AFTER UPDATE ON credits.accounts FOR EACH ROW EXECUTE FUNCTION audit();
             CREATE INDEX ledger_by_reason ON credits.ledger (reason);
             CREATE EXTENSION amcheck;",
        )
        .unwrap();
    client.query_one("SELECT credits.charge('a', 5, reason => 'audited')", &[]).unwrap();
    client.query("SELECT * FROM credits.charge_many(ARRAY['a', 'a'], ARRAY[1, 2]::numeric[], reason => 'audited')", &[]).unwrap();
    let audited: Vec<Decimal> =
        client.query("SELECT balance FROM audit", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(audited, [dec("995"), dec("992")], "a user's trigger on the accounts fired for the charge and the batch");
    client
        .execute("SELECT bt_index_check('credits.ledger_by_reason', heapallindexed => true)", &[])
        .unwrap();
    client.batch_execute("SET enable_seqscan = off").unwrap();
    let by_reason: i64 =
        client.query_one("SELECT count(*) FROM credits.ledger WHERE reason = 'audited'", &[]).unwrap().get(0);
    assert_eq!(by_reason, 3, "found through the hand-made index");
    client.batch_execute("DROP TRIGGER audit ON credits.accounts; DROP INDEX credits.ledger_by_reason").unwrap();
    client.query_one("SELECT credits.charge('a', 5)", &[]).unwrap();
    client.query("SELECT * FROM credits.charge_many(ARRAY['a'], ARRAY[1]::numeric[])", &[]).unwrap();
    let audited: i64 = client.query_one("SELECT count(*) FROM audit", &[]).unwrap().get(0);
    assert_eq!(audited, 2, "the trigger is gone: no new audit row");
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_read_only_transaction_cannot_charge() {
    let mut client = account("direct_read_only");
    let mut tx = client.build_transaction().read_only(true).start().unwrap();
    let error = db_error(tx.query_one("SELECT credits.charge('a', 1)", &[]));
    assert_eq!(error.code().code(), "25006", "read_only_sql_transaction");
    tx.rollback().unwrap();
    assert_eq!(balance(&mut client, "a"), dec("1000"));
}

#[test]
fn large_metadata_survives_direct_writes() {
    let mut client = account("direct_toast");
    // Incompressible JSON near the 8 KB limit: stored out of line (TOAST) in both tables.
    let big: String = (0..700u32).map(|i| format!("{:08x}", i.wrapping_mul(2_654_435_761))).collect();
    let metadata = format!("{{\"blob\": \"{}\"}}", &big[..5600]);
    client.execute("SELECT credits.set_metadata('a', $1::text::jsonb)", &[&metadata]).unwrap();
    for _ in 0..5 {
        client.query_one("SELECT credits.charge('a', 1, metadata => $1::text::jsonb)", &[&metadata]).unwrap();
    }
    let row = client
        .query_one(
            "SELECT (SELECT metadata::text FROM credits.accounts WHERE account = 'a'),
                    (SELECT count(*) FROM credits.ledger WHERE metadata::text = $1::text::jsonb::text)",
            &[&metadata],
        )
        .unwrap();
    let stored: String = row.get(0);
    assert_eq!(stored, client.query_one("SELECT $1::text::jsonb::text", &[&metadata]).unwrap().get::<_, String>(0));
    assert_eq!(row.get::<_, i64>(1), 5);
    assert_eq!(balance(&mut client, "a"), dec("995"));
    assert_ledger_invariant(&mut client);
}

/// The defect this guards against: `charge_many` read the account id for its primary key
/// entry out of a heap page it no longer pinned. Rows of about 1.9 kB (four to a page)
/// make every update leave the page (not HOT), while other backends prune and compact
/// the pages they charge: the id bytes then changed under the batch, which indexed a row
/// under another account's id (23505, PT404 for an account that exists, a second row for
/// it) or crashed. Fourteen clients mix two-account batches and single charges.
#[test]
fn batches_racing_page_compaction_index_every_row_under_its_own_account() {
    const ACCOUNTS: usize = 40;
    const CLIENTS: usize = 14;
    let seconds: u64 = std::env::var("PG_CREDITS_COMPACTION_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let db = fresh_database("direct_compaction");
    let mut client = connect(&db);
    let padding = "x".repeat(1800);
    client.batch_execute("CREATE EXTENSION amcheck").unwrap();
    for i in 0..ACCOUNTS {
        client
            .execute(
                "SELECT credits.create_account($1, 1000000, metadata => jsonb_build_object('pad', $2::text))",
                &[&format!("r{i}"), &padding],
            )
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let db = db.clone();
            std::thread::spawn(move || -> usize {
                let mut client = connect(&db);
                // Not waiting for the WAL flush, many more writes (and windows) a second.
                client.batch_execute("SET synchronous_commit = off").unwrap();
                let mut charged = 0;
                let mut n = worker;
                while std::time::Instant::now() < deadline {
                    n = n.wrapping_mul(2_654_435_761).wrapping_add(12345) % 1_000_003;
                    let (a, b) = (format!("r{}", n % ACCOUNTS), format!("r{}", (n / ACCOUNTS) % ACCOUNTS));
                    if worker % 2 == 0 {
                        let rows = client
                            .query(
                                "SELECT status FROM credits.charge_many(ARRAY[$1, $2]::text[], ARRAY[1, 1]::numeric[])",
                                &[&a, &b],
                            )
                            .unwrap_or_else(|e| panic!("charge_many of {a} and {b}: {e}"));
                        assert!(rows.iter().all(|r| r.get::<_, &str>(0) == "charged"), "{a}, {b}");
                        charged += 2;
                    } else {
                        client
                            .query_one("SELECT credits.charge($1, 1)", &[&a])
                            .unwrap_or_else(|e| panic!("charge of {a}: {e}"));
                        charged += 1;
                    }
                }
                charged
            })
        })
        .collect();
    let charged: usize = workers.into_iter().map(|w| w.join().expect("a worker failed")).sum();
    println!("{charged} charges in {seconds} s");
    check_indexes(&mut client);
    let rows: i64 = client.query_one("SELECT count(*) FROM credits.accounts", &[]).unwrap().get(0);
    assert_eq!(rows, ACCOUNTS as i64, "one row per account");
    let total: Decimal = client.query_one("SELECT sum(credits.balance(account)) FROM credits.accounts", &[]).unwrap().get(0);
    assert_eq!(total, Decimal::from(ACCOUNTS as i64 * 1_000_000 - charged as i64), "every charge taken once");
    assert_ledger_invariant(&mut client);
}

#[test]
fn idempotency_keys_replay_under_the_databases_linguistic_collation() {
    // The test databases use ICU en-US: 'a-1' < 'B-1' < 'c-1' there, 'B-1' < 'a-1' in C.
    let mut client = account("direct_collation");
    let keys: Vec<String> =
        (0..300).map(|i| format!("{}-{}", ["B", "a", "c", "D", "e"][i % 5], i / 5)).collect();
    client.execute("SELECT credits.create_account('h', 1000)", &[]).unwrap();
    client.execute("SELECT credits.set_slots('h', 4)", &[]).unwrap();
    for account in ["a", "h"] {
        let first: Vec<Decimal> = keys
            .iter()
            .map(|key| client.query_one("SELECT credits.charge($1, 1, NULL, $2)", &[&account, key]).unwrap().get(0))
            .collect();
        for (key, balance_after) in keys.iter().zip(&first) {
            let again: Decimal = client
                .query_one("SELECT credits.charge($1, 1, NULL, $2)", &[&account, key])
                .unwrap_or_else(|e| panic!("replay of {key} on {account}: {e}"))
                .get(0);
            if account == "a" {
                assert_eq!(&again, balance_after, "{key} replays its balance after");
            }
        }
        let batch = client
            .query(
                "SELECT status FROM credits.charge_many(array_fill($1::text, ARRAY[cardinality($2::text[])]),
                                                        array_fill(1::numeric, ARRAY[cardinality($2::text[])]), $2)",
                &[&account, &keys],
            )
            .unwrap();
        assert!(batch.iter().all(|r| r.get::<_, &str>(0) == "replayed"), "charge_many replays every key of {account}");
        assert_eq!(balance(&mut client, account), dec("700"), "{account}: each key charged once");
    }
    client.batch_execute("CREATE EXTENSION amcheck").unwrap();
    check_indexes(&mut client);
    assert_ledger_invariant(&mut client);
}

/// Whatever the SQL path would refuse, the direct path refuses too: each change made by
/// hand, the SQLSTATE it must make each statement fail with, and the statements: a charge
/// and a batch (written directly when the tables are as made) and, where it applies, a
/// recharge (always through SQL).
#[test]
fn constraints_added_by_hand_hold_for_charges_as_for_recharges() {
    const CHARGE: [&str; 3] = [
        "SELECT credits.charge('a', 1)",
        "SELECT * FROM credits.charge_many(ARRAY['a'], ARRAY[1]::numeric[])",
        "SELECT credits.recharge('a', 1)",
    ];
    let long_reason = [
        "SELECT credits.charge('a', 1, reason => repeat('r', 21))",
        "SELECT * FROM credits.charge_many(ARRAY['a'], ARRAY[1]::numeric[], reason => repeat('r', 21))",
        "SELECT credits.recharge('a', 1, reason => repeat('r', 21))",
    ];
    let cases: [(&str, &str, &str, &[&str]); 7] = [
        ("ALTER TABLE credits.accounts ADD CONSTRAINT keep_five CHECK (balance >= 5)",
         "ALTER TABLE credits.accounts DROP CONSTRAINT keep_five", "23514",
         &["SELECT credits.charge('a', 996)",
           "SELECT * FROM credits.charge_many(ARRAY['a'], ARRAY[996]::numeric[])"]),
        ("ALTER TABLE credits.ledger ADD CONSTRAINT no_ones CHECK (amount NOT IN (-1, 1)) NOT VALID",
         "ALTER TABLE credits.ledger DROP CONSTRAINT no_ones", "23514", &CHARGE),
        ("ALTER TABLE credits.ledger ALTER COLUMN reason TYPE varchar(20)",
         "ALTER TABLE credits.ledger ALTER COLUMN reason TYPE text", "22001", &long_reason),
        ("ALTER TABLE credits.ledger ALTER COLUMN reason SET NOT NULL",
         "ALTER TABLE credits.ledger ALTER COLUMN reason DROP NOT NULL", "23502", &CHARGE),
        ("ALTER TABLE credits.accounts REPLICA IDENTITY NOTHING; CREATE PUBLICATION p FOR TABLE credits.accounts",
         "DROP PUBLICATION p; ALTER TABLE credits.accounts REPLICA IDENTITY DEFAULT", "55000", &CHARGE),
        ("CREATE PUBLICATION p FOR TABLE credits.accounts WHERE (slots >= 0)",
         "DROP PUBLICATION p", "42P10", &CHARGE),
        ("CREATE PUBLICATION p FOR TABLE credits.accounts (balance)",
         "DROP PUBLICATION p", "42P10", &CHARGE),
    ];
    let mut client = account("direct_constraints");
    for (change, undo, sqlstate, statements) in cases {
        client.batch_execute(change).unwrap();
        for sql in statements {
            let error = db_error(client.query(*sql, &[]));
            assert_eq!(error.code().code(), sqlstate, "{sql} after {change}: {}", error.message());
        }
        client.batch_execute(undo).unwrap();
        // With a reason: the NOT NULL case needs every entry to have one.
        client
            .query_one("SELECT credits.charge('a', 1, reason => 'as made')", &[])
            .unwrap_or_else(|e| panic!("after {undo}: {e}"));
    }
    assert_eq!(balance(&mut client, "a"), dec("993"), "only the charges made with the tables as made");
    assert_ledger_invariant(&mut client);
}

/// A charge called from an UPDATE of its own account row: the SQL path's charge comes
/// after the UPDATE's scan (SPI increments the command counter), so the UPDATE then
/// meets a row changed by a later command and fails, and nothing is charged. The direct
/// path must do the same, not leave the charge in place and skip the UPDATE in silence.
#[test]
fn a_charge_inside_an_update_of_its_own_row_fails_as_on_the_sql_path() {
    let mut client = account("direct_self_update");
    let update = "UPDATE credits.accounts SET metadata = jsonb_build_object('c', credits.charge(account, 1)) WHERE account = $1";
    let error = db_error(client.execute(update, &[&"a"]));
    assert_eq!(error.code().code(), "27000", "{}", error.message());
    assert_eq!(balance(&mut client, "a"), dec("1000"), "nothing charged");
    // A hot account's charge writes a slot, not the row: on either path the UPDATE then
    // goes through, with the charge.
    client.execute("SELECT credits.set_slots('a', 2)", &[]).unwrap();
    assert_eq!(client.execute(update, &[&"a"]).unwrap(), 1);
    let recorded: String =
        client.query_one("SELECT metadata->>'c' FROM credits.accounts WHERE account = 'a'", &[]).unwrap().get(0);
    assert_eq!((recorded.as_str(), balance(&mut client, "a")), ("999", dec("999")));
    assert_ledger_invariant(&mut client);
}

/// Holds, captures, releases and charges drawn from grants, in one session of a database
/// whose tables are as made (the direct path) and of one with an index added by hand (the
/// SQL writer everywhere): the same calls leave the same rows.
const HOLDS_AND_GRANTS: &str = "
    SELECT credits.create_account('h', 100, low_balance_threshold => 80);
    SELECT hold_id FROM credits.hold('h', 30, reason => 'llm', metadata => '{\"m\": 1}');
    SELECT * FROM credits.capture(1, 12.5, reason => 'llm done', metadata => '{\"tokens\": 9}');
    SELECT hold_id FROM credits.hold('h', 20, idempotency_key => 'hold-2');
    SELECT * FROM credits.capture(2, 5, final => false, idempotency_key => 'cap-2');
    SELECT * FROM credits.capture(2, 5, final => false, idempotency_key => 'cap-2');
    SELECT * FROM credits.capture(2, 4, final => false);
    SELECT * FROM credits.release(2, reason => 'cancelled', idempotency_key => 'rel-2');
    SELECT hold_id FROM credits.hold('h', 1, ttl => NULL);
    SELECT * FROM credits.capture(3);
    SELECT credits.create_account('g', 10, low_balance_threshold => 5);
    SELECT grant_id FROM credits.grant('g', 3, category => 'promotional', priority => 10);
    SELECT grant_id FROM credits.grant('g', 4, priority => 20, expires_at => now() + interval '1 day');
    SELECT credits.charge('g', 1);
    SELECT credits.charge('g', 5, idempotency_key => 'span', reason => 'span', metadata => '{\"x\": 2}');
    SELECT credits.charge('g', 5, idempotency_key => 'span', reason => 'span', metadata => '{\"x\": 2}');
    SELECT credits.charge('g', 2);
    SELECT credits.charge('g', 8.5);
    SELECT credits.create_account('t', 0, low_balance_threshold => 1);
    SELECT * FROM credits.transfer('h', 't', 7, reason => 'share', metadata => '{\"y\": 3}');
    SELECT * FROM credits.transfer('t', 'h', 6.5);
";

fn holds_and_grants_rows(client: &mut postgres::Client) -> Vec<String> {
    let tables = [
        "SELECT account, amount, balance_after, kind, reason, idempotency_key, metadata, grant_id, hold_id,
                held_amount, outcome - 'expires_at', outcome ? 'expires_at', transfer_id FROM credits.ledger ORDER BY id",
        "SELECT account, hold_id, amount, captured, released, status, pools, parts, resolved_at IS NULL, reason, metadata,
                expires_at = 'infinity' FROM credits.holds ORDER BY hold_id",
        "SELECT account, grant_id, amount, remaining, held, category, priority, closed, closed_at IS NULL
           FROM credits.account_grants ORDER BY account, grant_id",
        "SELECT account, balance, held, has_grants FROM credits.accounts ORDER BY account",
    ];
    tables
        .iter()
        .flat_map(|sql| client.query(&format!("SELECT row_to_json(r)::text FROM ({sql}) r"), &[]).unwrap())
        .map(|row| row.get(0))
        .collect()
}

/// How many of this session's kept plans are of statements whose text has `fragment`.
fn kept_plans(client: &mut postgres::Client, fragment: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_backend_memory_contexts WHERE name = 'CachedPlanSource' AND ident LIKE '%' || $1 || '%'",
            &[&fragment],
        )
        .unwrap()
        .get(0)
}

#[test]
fn holds_captures_grant_charges_and_transfers_write_what_the_sql_writer_writes() {
    let mut direct = account("direct_holds_grants");
    let mut sql = account("direct_holds_grants_sql");
    direct.batch_execute("CREATE EXTENSION amcheck").unwrap();
    sql.batch_execute("CREATE INDEX ledger_by_reason ON credits.ledger (reason)").unwrap();
    for client in [&mut direct, &mut sql] {
        client.batch_execute(HOLDS_AND_GRANTS).unwrap();
        let refused = db_error(client.query_one("SELECT credits.charge('g', 100)", &[]));
        assert_eq!(refused.code().code(), "PT402");
    }
    // The direct path wrote the holds, captures and draws: their SQL was never prepared
    // in its session (the replays by key are the SQL path's, and prepare other plans).
    // (Fragments from the first 1,024 characters of each: all a memory context shows.)
    for statement in [
        "INSERT INTO credits.holds",
        "UNION ALL SELECT NULL, 0, 1",
        "g.held = 0 THEN 'depleted' END",
        "nextval('credits.transfer_ids')",
    ] {
        assert_eq!(kept_plans(&mut direct, statement), 0, "{statement}");
        assert!(kept_plans(&mut sql, statement) > 0, "{statement}");
    }
    assert_eq!(holds_and_grants_rows(&mut direct), holds_and_grants_rows(&mut sql));
    check(
        &mut direct,
        &[
            "credits.holds_pkey",
            "credits.holds_id",
            "credits.holds_expiry",
            "credits.holds_due",
            "credits.account_grants_pkey",
            "credits.account_grants_burn_order",
            "credits.account_grants_expiry",
            "credits.account_grants_effective",
            "credits.account_grants_due",
            "credits.account_grants_id",
        ],
    );
    check_indexes(&mut direct);
    for client in [&mut direct, &mut sql] {
        assert_ledger_invariant(client);
    }
}
