//! Holds from a client: reserve, then settle, over real connections and transactions.

use pg_credits_client_tests::*;
use postgres::Client;
use rust_decimal::Decimal;
use std::thread;
use std::time::Duration;

fn hold(client: &mut Client, account: &str, amount: &str) -> i64 {
    client
        .query_one("SELECT hold_id FROM credits.hold($1, $2::text::numeric)", &[&account, &amount])
        .unwrap()
        .get(0)
}

/// (captured, released, status, balance) of a capture.
fn capture(client: &mut Client, hold_id: i64, amount: Option<&str>, last: bool) -> (Decimal, Decimal, String, Decimal) {
    let row = client
        .query_one(
            "SELECT captured, released, status, balance FROM credits.capture($1, $2::text::numeric, final => $3)",
            &[&hold_id, &amount, &last],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

fn figures(client: &mut Client, account: &str) -> (Decimal, Decimal) {
    (balance(client, account), available(client, account))
}

#[test]
fn balance_and_available_after_every_step() {
    let db = fresh_database("holds_steps");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 100, min_balance => 10)", &[]).unwrap();
    assert_eq!(figures(&mut client, "a"), (dec("100"), dec("90")));
    let h = hold(&mut client, "a", "40");
    assert_eq!(figures(&mut client, "a"), (dec("100"), dec("50")));
    assert_eq!(capture(&mut client, h, Some("15"), false), (dec("15"), dec("0"), "active".into(), dec("85")));
    assert_eq!(figures(&mut client, "a"), (dec("85"), dec("50")));
    assert_eq!(capture(&mut client, h, Some("5"), true), (dec("5"), dec("20"), "captured".into(), dec("80")));
    assert_eq!(figures(&mut client, "a"), (dec("80"), dec("70")));
    let h2 = hold(&mut client, "a", "70");
    assert_eq!(figures(&mut client, "a"), (dec("80"), dec("0")));
    let row = client.query_one("SELECT captured, released, status FROM credits.release($1)", &[&h2]).unwrap();
    assert_eq!((row.get::<_, Decimal>(0), row.get::<_, Decimal>(1), row.get::<_, String>(2)), (dec("0"), dec("70"), "released".into()));
    assert_eq!(figures(&mut client, "a"), (dec("80"), dec("70")));
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_hold_counts_against_every_path() {
    let db = fresh_database("holds_every_path");
    let mut client = connect(&db);
    client.batch_execute("SELECT credits.create_account('a', 10); SELECT credits.create_account('b', 10);").unwrap();
    hold(&mut client, "a", "7");
    // The direct path and the fast SQL path (with a key), and the slow path.
    assert_eq!(db_error(client.query_one("SELECT credits.charge('a', 4)", &[])).code().code(), "PT402");
    assert_eq!(db_error(client.query_one("SELECT credits.charge('a', 4, idempotency_key => 'k')", &[])).code().code(), "PT402");
    let error = db_error(client.query_one("SELECT credits.charge('a', 3.01)", &[]));
    let payload = payload(&error);
    assert_eq!((payload["held"].as_str(), payload["available"].as_str(), payload["shortfall"].as_str()), (Some("7"), Some("3"), Some("0.01")));
    // charge_many, another hold, the guard trigger on a direct write, set_limits.
    let status: String = client
        .query_one("SELECT status FROM credits.charge_many(ARRAY['a', 'b'], ARRAY[4, 4]::numeric[]) WHERE account = 'a'", &[])
        .unwrap()
        .get(0);
    assert_eq!(status, "failed");
    assert_eq!(db_error(client.query_one("SELECT * FROM credits.hold('a', 4)", &[])).code().code(), "PT402");
    assert_eq!(db_error(client.execute("UPDATE credits.accounts SET balance = 6 WHERE account = 'a'", &[])).code().code(), "PT402");
    assert_eq!(db_error(client.execute("SELECT credits.set_limits('a', 4)", &[])).code().code(), "PT402");
    // Within what is free, all of them pass.
    client.query_one("SELECT credits.charge('a', 1)", &[]).unwrap();
    client.execute("UPDATE credits.accounts SET balance = balance - 1 WHERE account = 'a'", &[]).unwrap();
    client.execute("SELECT credits.set_limits('a', 1)", &[]).unwrap();
    assert_eq!(available(&mut client, "a"), dec("0"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_hold_or_capture_rolled_back_never_happened() {
    let db = fresh_database("holds_rollback");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 10)", &[]).unwrap();
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT * FROM credits.hold('a', 6)", &[]).unwrap();
    tx.rollback().unwrap();
    let holds: i64 = client.query_one("SELECT count(*) FROM credits.holds", &[]).unwrap().get(0);
    assert_eq!((holds, available(&mut client, "a")), (0, dec("10")));

    let h = hold(&mut client, "a", "6");
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT * FROM credits.capture($1, 6)", &[&h]).unwrap();
    tx.rollback().unwrap();
    let status: String = client.query_one("SELECT status FROM credits.holds WHERE hold_id = $1", &[&h]).unwrap().get(0);
    assert_eq!((status.as_str(), figures(&mut client, "a")), ("active", (dec("10"), dec("4"))));
    // Still capturable once.
    capture(&mut client, h, None, true);
    assert_eq!(figures(&mut client, "a"), (dec("4"), dec("4")));
    assert_ledger_invariant(&mut client);
}

#[test]
fn the_errors_of_a_hold_and_their_payloads() {
    let db = fresh_database("holds_errors");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 10)", &[]).unwrap();
    let h = hold(&mut client, "a", "5");
    let over = db_error(client.query_one("SELECT * FROM credits.capture($1, 6)", &[&h]));
    let body = payload(&over);
    assert_eq!((over.code().code(), body["name"].as_str(), body["code"].as_i64()), ("PT422", Some("CaptureExceedsHoldError"), Some(422)));
    assert_eq!((body["hold_id"].as_i64(), body["remaining"].as_str(), body["amount"].as_str()), (Some(h), Some("5"), Some("6")));
    capture(&mut client, h, Some("2"), true);
    let again = db_error(client.query_one("SELECT * FROM credits.release($1)", &[&h]));
    let body = payload(&again);
    assert_eq!((again.code().code(), body["name"].as_str(), body["status"].as_str()), ("PT409", Some("HoldFinalizedError"), Some("captured")));
    let missing = db_error(client.query_one("SELECT * FROM credits.capture(424242)", &[]));
    assert_eq!((missing.code().code(), payload(&missing)["name"].as_str()), ("PT404", Some("HoldNotFoundError")));
    let unknown = db_error(client.query_one("SELECT * FROM credits.hold('nobody', 1)", &[]));
    assert_eq!(unknown.code().code(), "PT404");
    let short = client.query_one("SELECT hold_id FROM credits.hold('a', 1, ttl => '100 milliseconds')", &[]).unwrap().get::<_, i64>(0);
    thread::sleep(Duration::from_millis(200));
    let expired = db_error(client.query_one("SELECT * FROM credits.capture($1)", &[&short]));
    let body = payload(&expired);
    assert_eq!((expired.code().code(), body["name"].as_str(), body["code"].as_i64()), ("PT410", Some("HoldExpiredError"), Some(410)));
    // PT410 again after the expiry entry is written; extend_hold refuses it too.
    client.query_one("SELECT credits.expire_holds()", &[]).unwrap();
    assert_eq!(db_error(client.query_one("SELECT * FROM credits.capture($1)", &[&short])).code().code(), "PT410");
    assert_eq!(db_error(client.query_one("SELECT credits.extend_hold($1, '1 hour')", &[&short])).code().code(), "PT410");
    client.execute("SET credits.max_hold_ttl = '1h'", &[]).unwrap();
    assert_eq!(db_error(client.query_one("SELECT * FROM credits.hold('a', 1, ttl => '2 hours')", &[])).code().code(), "22003");
    assert_ledger_invariant(&mut client);
}

#[test]
fn an_expired_hold_stops_counting_at_once_and_expires_once() {
    let db = fresh_database("holds_expiry");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 10)", &[]).unwrap();
    client.query_one("SELECT * FROM credits.hold('a', 8, ttl => '150 milliseconds')", &[]).unwrap();
    assert_eq!(db_error(client.query_one("SELECT credits.charge('a', 5)", &[])).code().code(), "PT402");
    thread::sleep(Duration::from_millis(250));
    // Before anything wrote the expiry, in a transaction that began before it.
    let mut tx = client.transaction().unwrap();
    assert_eq!(tx.query_one("SELECT credits.available('a')", &[]).unwrap().get::<_, Decimal>(0), dec("10"));
    tx.query_one("SELECT credits.charge('a', 5)", &[]).unwrap();
    tx.commit().unwrap();
    let entries: Vec<(String, Option<Decimal>)> = client
        .query("SELECT kind, held_amount FROM credits.ledger WHERE account = 'a' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        entries,
        [("opening".into(), None), ("hold".into(), Some(dec("8"))), ("expiry".into(), Some(dec("-8"))), ("charge".into(), None)]
    );
    assert_eq!(client.query_one("SELECT credits.expire_holds()", &[]).unwrap().get::<_, i32>(0), 0);
    assert_ledger_invariant(&mut client);
}

#[test]
fn replays_by_key_return_the_original_result() {
    let db = fresh_database("holds_replay");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 100)", &[]).unwrap();
    let first = client.query_one("SELECT hold_id, available FROM credits.hold('a', 30, idempotency_key => 'h')", &[]).unwrap();
    client.query_one("SELECT credits.charge('a', 10)", &[]).unwrap();
    let again = client.query_one("SELECT hold_id, available FROM credits.hold('a', 30, idempotency_key => 'h')", &[]).unwrap();
    assert_eq!((again.get::<_, i64>(0), again.get::<_, Decimal>(1)), (first.get::<_, i64>(0), dec("70")));
    let h: i64 = first.get(0);
    let capture_sql = "SELECT captured, released, status, balance FROM credits.capture($1, 12, idempotency_key => 'c')";
    let one = client.query_one(capture_sql, &[&h]).unwrap();
    let two = client.query_one(capture_sql, &[&h]).unwrap();
    for column in [0, 1, 3] {
        assert_eq!(one.get::<_, Decimal>(column), two.get::<_, Decimal>(column));
    }
    assert_eq!((one.get::<_, String>(2), two.get::<_, String>(2)), ("captured".into(), "captured".into()));
    assert_eq!(db_error(client.query_one("SELECT * FROM credits.capture($1, 13, idempotency_key => 'c')", &[&h])).code().code(), "PT409");
    assert_eq!(db_error(client.query_one("SELECT credits.charge('a', 1, idempotency_key => 'h')", &[])).code().code(), "PT409");
    let holds: i64 = client.query_one("SELECT count(*) FROM credits.holds", &[]).unwrap().get(0);
    assert_eq!(holds, 1);
    assert_ledger_invariant(&mut client);
}

#[test]
fn two_captures_racing_resolve_the_hold_once() {
    let db = fresh_database("holds_race");
    let mut setup = connect(&db);
    setup.execute("SELECT credits.create_account('a', 100)", &[]).unwrap();
    for isolation in ["READ COMMITTED", "REPEATABLE READ"] {
        let h = hold(&mut setup, "a", "10");
        let mut first = connect(&db);
        let mut tx = first.transaction().unwrap();
        tx.batch_execute(&format!("SET TRANSACTION ISOLATION LEVEL {isolation}")).unwrap();
        tx.query_one("SELECT * FROM credits.capture($1, 6)", &[&h]).unwrap();
        let db2 = db.clone();
        let racer = thread::spawn(move || {
            let mut second = connect(&db2);
            let mut tx = second.transaction().unwrap();
            tx.batch_execute(&format!("SET TRANSACTION ISOLATION LEVEL {isolation}")).unwrap();
            let result = tx.query_one("SELECT * FROM credits.capture($1, 6)", &[&h]).map(drop);
            result.map_err(|e| e.as_db_error().map(|e| e.code().code().to_owned()))
        });
        thread::sleep(Duration::from_millis(300));
        tx.commit().unwrap();
        let code = racer.join().unwrap().expect_err("the second capture must fail").expect("a server error");
        let expected = if isolation == "READ COMMITTED" { "PT409" } else { "40001" };
        assert_eq!(code, expected, "{isolation}");
    }
    assert_eq!(balance(&mut setup, "a"), dec("88"));
    assert_ledger_invariant(&mut setup);
}

#[test]
fn a_hold_and_a_charge_racing_for_the_last_credit() {
    let db = fresh_database("holds_last_credit");
    let mut setup = connect(&db);
    setup.execute("SELECT credits.create_account('a', 10)", &[]).unwrap();
    let mut holder = connect(&db);
    let mut tx = holder.transaction().unwrap();
    tx.query_one("SELECT * FROM credits.hold('a', 7)", &[]).unwrap();
    let db2 = db.clone();
    let charger = thread::spawn(move || {
        let mut client = connect(&db2);
        client.query_one("SELECT credits.charge('a', 7)", &[]).map(drop).map_err(|e| e.as_db_error().unwrap().code().code().to_owned())
    });
    thread::sleep(Duration::from_millis(300));
    tx.commit().unwrap();
    assert_eq!(charger.join().unwrap(), Err("PT402".to_owned()));
    assert_eq!(figures(&mut setup, "a"), (dec("10"), dec("3")));
    assert_ledger_invariant(&mut setup);
}

#[test]
fn holds_on_a_hot_account_stay_outside_its_slots() {
    let db = fresh_database("holds_hot");
    let mut client = connect(&db);
    client.batch_execute("SELECT credits.create_account('h', 100); SELECT credits.set_slots('h', 4);").unwrap();
    let h = hold(&mut client, "h", "60");
    let spread: Decimal = client.query_one("SELECT sum(available) FROM credits.account_slots WHERE account = 'h'", &[]).unwrap().get(0);
    assert_eq!(spread, dec("40"));
    for _ in 0..4 {
        client.query_one("SELECT credits.charge('h', 10)", &[]).unwrap();
    }
    assert_eq!(db_error(client.query_one("SELECT credits.charge('h', 0.01)", &[])).code().code(), "PT402");
    assert_eq!(capture(&mut client, h, Some("50"), true).3, dec("10"));
    assert_eq!(figures(&mut client, "h"), (dec("10"), dec("10")));
    client.query_one("SELECT credits.charge('h', 10)", &[]).unwrap();
    assert_ledger_invariant(&mut client);
}

/// Charges 1 to 'h' in a transaction left open: it holds one slot until it commits.
fn busy_slot(holder: &mut Client) -> postgres::Transaction<'_> {
    let mut busy = holder.transaction().unwrap();
    busy.query_one("SELECT credits.charge('h', 1)", &[]).unwrap();
    busy
}

#[test]
fn a_hold_on_a_hot_account_takes_from_one_free_slot_and_its_capture_from_none() {
    let db = fresh_database("holds_hot_one_slot");
    let mut client = connect(&db);
    client.batch_execute("SELECT credits.create_account('h', 400); SELECT credits.set_slots('h', 4);").unwrap();
    // Gathering would wait for a slot another transaction is charging: the timeout
    // turns such a wait into a failure.
    client.batch_execute("SET statement_timeout = '3s'").unwrap();
    let mut holder = connect(&db);
    let slots = |client: &mut Client| -> Vec<Decimal> {
        let rows = client.query("SELECT available FROM credits.account_slots WHERE account = 'h' ORDER BY available", &[]);
        rows.unwrap().iter().map(|row| row.get(0)).collect()
    };

    let busy = busy_slot(&mut holder);
    let placed = client.query_one("SELECT hold_id, available FROM credits.hold('h', 50)", &[]).unwrap();
    let (h, available): (i64, Decimal) = (placed.get(0), placed.get(1));
    assert_eq!(available, dec("350"), "as of the hold's snapshot: the busy slot's charge is not committed");
    busy.commit().unwrap();
    assert_eq!(slots(&mut client), vec![dec("50"), dec("99"), dec("100"), dec("100")], "taken from one free slot");
    assert_eq!(figures(&mut client, "h"), (dec("399"), dec("349")));

    let busy = busy_slot(&mut holder);
    assert_eq!(capture(&mut client, h, Some("30"), true), (dec("30"), dec("20"), "captured".into(), dec("369")));
    busy.commit().unwrap();
    let row = client.query_one("SELECT balance, held FROM credits.accounts WHERE account = 'h'", &[]).unwrap();
    assert_eq!((row.get(0), row.get(1)), (dec("20"), dec("0")), "captured from the row, the rest released to it");
    assert_eq!(slots(&mut client).iter().sum::<Decimal>(), dec("348"), "no slot touched but by the charges");
    assert_eq!(figures(&mut client, "h"), (dec("368"), dec("368")));

    // What the capture released is on the account row: the next hold takes it from there.
    let before = slots(&mut client);
    let h2 = hold(&mut client, "h", "20");
    assert_eq!(slots(&mut client), before);
    client.query_one("SELECT * FROM credits.release($1)", &[&h2]).unwrap();
    let exact: i64 = client
        .query_one("SELECT count(*) FROM credits.ledger WHERE hold_id IS NOT NULL AND balance_after IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(exact, 0, "no exact balance after while the slots hold money");
    assert_ledger_invariant(&mut client);
}
