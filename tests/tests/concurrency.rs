//! Many sessions on one account: no overdraft, no lost update, keys applied once.

use pg_credits_client_tests::*;
use postgres::IsolationLevel;
use serde_json::json;
use std::sync::{Arc, Barrier};
use std::thread;

const SESSIONS: usize = 16;

/// Runs `work` in SESSIONS threads with their own connections, started together.
fn in_parallel<T: Send + 'static>(
    db: &str,
    work: impl Fn(&mut postgres::Client) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(SESSIONS));
    let work = Arc::new(work);
    let handles: Vec<_> = (0..SESSIONS)
        .map(|_| {
            let (barrier, work, db) = (barrier.clone(), work.clone(), db.to_string());
            thread::spawn(move || {
                let mut client = connect(&db);
                barrier.wait();
                work(&mut client)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("session thread")).collect()
}

fn charge_until_refused(client: &mut postgres::Client, isolation: Option<IsolationLevel>) -> (u32, u32) {
    let (mut charged, mut serialization_failures) = (0, 0);
    loop {
        let outcome = match isolation {
            None => client.query_one("SELECT credits.charge('hot', 1)", &[]).map(drop),
            Some(level) => client
                .build_transaction()
                .isolation_level(level)
                .start()
                .and_then(|mut tx| {
                    tx.query_one("SELECT credits.charge('hot', 1)", &[])?;
                    tx.commit()
                }),
        };
        match outcome {
            Ok(()) => charged += 1,
            Err(e) => match e.as_db_error().map(|d| d.code().code()) {
                Some("PT402") => return (charged, serialization_failures),
                Some("40001") => serialization_failures += 1,
                _ => panic!("unexpected error: {e}"),
            },
        }
    }
}

/// `slots`: 0 for a plain account, more for a hot one (whose slots run dry one by one,
/// so the last charges are decided by gathering: the path that must not overdraw).
fn exact_count_under(isolation: Option<IsolationLevel>, name: &str, slots: i32) {
    let db = fresh_database(name);
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('hot', 300)", &[]).unwrap();
    client.execute("SELECT credits.set_slots('hot', $1)", &[&slots]).unwrap();
    let results = in_parallel(&db, move |c| charge_until_refused(c, isolation));
    let charged: u32 = results.iter().map(|(ok, _)| ok).sum();
    assert_eq!(charged, 300, "exactly the balance's worth of unit charges succeed");
    assert_eq!(balance(&mut client, "hot"), dec("0"));
    let charges: i64 = client
        .query_one("SELECT count(*) FROM credits.ledger WHERE kind = 'charge'", &[])
        .unwrap()
        .get(0);
    assert_eq!(charges, 300);
    assert_ledger_invariant(&mut client);
}

#[test]
fn read_committed_sessions_spend_exactly_the_balance() {
    exact_count_under(None, "conc_rc", 0);
}

#[test]
fn read_committed_sessions_spend_exactly_the_balance_of_a_hot_account() {
    exact_count_under(None, "conc_rc_hot", 8);
}

#[test]
fn repeatable_read_sessions_never_overdraw_a_hot_account() {
    exact_count_under(Some(IsolationLevel::RepeatableRead), "conc_rr_hot", 8);
}

#[test]
fn repeatable_read_sessions_never_overdraw() {
    exact_count_under(Some(IsolationLevel::RepeatableRead), "conc_rr", 0);
}

#[test]
fn serializable_sessions_never_overdraw() {
    exact_count_under(Some(IsolationLevel::Serializable), "conc_ser", 0);
}

/// Every session charges with one key and recharges a new account with another.
fn idempotency_race(name: &str, slots: i32) {
    let db = fresh_database(name);
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('idem', 100)", &[]).unwrap();
    client.execute("SELECT credits.set_slots('idem', $1)", &[&slots]).unwrap();
    let results = in_parallel(&db, |c| {
        let charged: rust_decimal::Decimal = c
            .query_one("SELECT credits.charge('idem', 7, idempotency_key => 'req-42')", &[])
            .unwrap()
            .get(0);
        let recharged: rust_decimal::Decimal = c
            .query_one("SELECT credits.recharge('fresh', 5, idempotency_key => 'pay-1')", &[])
            .unwrap()
            .get(0);
        (charged, recharged)
    });
    assert!(results.iter().all(|r| *r == (dec("93"), dec("5"))), "every caller sees the original result: {results:?}");
    assert_eq!(balance(&mut client, "idem"), dec("93"));
    assert_eq!(balance(&mut client, "fresh"), dec("5"));
    let entries: i64 = client
        .query_one("SELECT count(*) FROM credits.ledger WHERE idempotency_key IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert_eq!(entries, 2);
    assert_ledger_invariant(&mut client);
}

#[test]
fn racing_calls_with_one_idempotency_key_apply_once() {
    idempotency_race("conc_idem", 0);
}

#[test]
fn racing_calls_with_one_idempotency_key_apply_once_on_a_hot_account() {
    idempotency_race("conc_idem_hot", 4);
}

#[test]
fn parallel_batches_and_charges_over_the_same_accounts_neither_deadlock_nor_overdraw() {
    let db = fresh_database("conc_batch");
    let mut client = connect(&db);
    client
        .batch_execute("SELECT credits.create_account('b' || i, 50) FROM generate_series(1, 20) i")
        .unwrap();
    // Each session names the accounts in its own order; each charges 1 to every account
    // 5 times per batch, 10 batches, with single charges in between: over 800 wanted per
    // account, 50 available.
    let charged: Vec<i64> = in_parallel(&db, |c| {
        let mut charged = 0;
        for round in 0..10 {
            for k in 0..5 {
                match c.query_one("SELECT credits.charge($1, 1)", &[&format!("b{}", 1 + (round * 3 + k) % 20)]) {
                    Ok(_) => charged += 1,
                    Err(e) => assert_eq!(e.as_db_error().map(|e| e.code().code()), Some("PT402"), "{e}"),
                }
            }
            let row = c
                .query_one(
                    "SELECT count(*) FILTER (WHERE status = 'charged')
                       FROM credits.charge_many(
                            ARRAY(SELECT 'b' || (1 + (i * 7 + $1) % 20) FROM generate_series(1, 100) i),
                            array_fill(1::numeric, ARRAY[100]))",
                    &[&(round as i32)],
                )
                .unwrap();
            charged += row.get::<_, i64>(0);
        }
        charged
    });
    assert_eq!(charged.iter().sum::<i64>(), 20 * 50, "every credit spent once, none twice");
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_key_used_after_a_repeatable_read_snapshot_is_a_serialization_failure() {
    // A plain account's row lock raises PostgreSQL's own 40001; a hot account has no row
    // lock that would, and must raise it too (not the unique index's 23505).
    for slots in [0, 4] {
        let db = fresh_database(&format!("conc_idem_rr_{slots}"));
        let mut client = connect(&db);
        client.execute("SELECT credits.create_account('rr', 100)", &[]).unwrap();
        client.execute("SELECT credits.set_slots('rr', $1)", &[&slots]).unwrap();
        let mut late = connect(&db);
        let mut tx = late.build_transaction().isolation_level(IsolationLevel::RepeatableRead).start().unwrap();
        tx.query_one("SELECT credits.balance('rr')", &[]).unwrap();
        let charge = "SELECT credits.charge('rr', 3, idempotency_key => 'k')";
        client.query_one(charge, &[]).unwrap();
        let error = db_error(tx.query_one(charge, &[]));
        assert_eq!(error.code().code(), "40001", "slots {slots}: {}", error.message());
        if slots > 0 {
            let payload = payload(&error);
            for (field, expected) in [
                ("name", json!("ConcurrentKeyUseError")),
                ("code", json!(409)),
                ("status_code", json!(40903)),
                ("account", json!("rr")),
                ("idempotency_key", json!("k")),
            ] {
                assert_eq!(payload[field], expected, "field {field} of {payload}");
            }
            assert_eq!(error.hint(), Some("Retry the transaction."));
        }
        tx.rollback().unwrap();
        let retried: rust_decimal::Decimal = late.query_one(charge, &[]).unwrap().get(0);
        assert_eq!(retried, dec("97"), "slots {slots}: the retry replays");
        assert_eq!(balance(&mut client, "rr"), dec("97"));
        assert_ledger_invariant(&mut client);
    }
}

#[test]
fn a_key_whose_first_use_rolled_back_applies_on_retry() {
    let db = fresh_database("conc_idem_rollback");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('r', 10)", &[]).unwrap();
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT credits.charge('r', 4, idempotency_key => 'k')", &[]).unwrap();
    tx.rollback().unwrap();
    let after: rust_decimal::Decimal = client
        .query_one("SELECT credits.charge('r', 4, idempotency_key => 'k')", &[])
        .unwrap()
        .get(0);
    assert_eq!(after, dec("6"));
}
