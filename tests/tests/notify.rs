//! Low-balance alerts: NOTIFY credits_low_balance once per crossing, on commit only.

use pg_credits_client_tests::*;
use postgres::fallible_iterator::FallibleIterator;
use serde_json::{json, Value};
use std::time::Duration;

fn received(listener: &mut postgres::Client) -> Vec<Value> {
    let mut notifications = listener.notifications();
    let mut found = Vec::new();
    let mut waiting = notifications.timeout_iter(Duration::from_millis(500));
    while let Some(n) = waiting.next().unwrap() {
        assert_eq!(n.channel(), "credits_low_balance");
        found.push(serde_json::from_str(n.payload()).expect("payload is JSON"));
    }
    found
}

/// The alerts recorded in credits.events, in commit order, each as the NOTIFY it also sent.
fn recorded(client: &mut postgres::Client) -> Vec<Value> {
    client
        .query("SELECT payload || jsonb_build_object('event_id', id) FROM credits.events
                 WHERE kind = 'low_balance' ORDER BY txid, id", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// What an alert says, without its event id.
fn alert(account: &str, balance: &str, threshold: &str) -> Value {
    json!({"account": account, "balance": balance, "threshold": threshold})
}

/// The alerts without their event id and pace (which every alert names).
fn without_id(mut alerts: Vec<Value>) -> Vec<Value> {
    for alert in &mut alerts {
        let fields = alert.as_object_mut().unwrap();
        for field in ["event_id", "spent_per_day", "runs_out_at"] {
            fields.remove(field).unwrap_or_else(|| panic!("every alert names its {field}"));
        }
    }
    alerts
}

#[test]
fn crossing_below_the_threshold_alerts_once_and_only_on_commit() {
    let db = fresh_database("notify");
    let mut listener = connect(&db);
    listener.batch_execute("LISTEN credits_low_balance").unwrap();
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('n', 100, low_balance_threshold => 20)", &[]).unwrap();

    client.query_one("SELECT credits.charge('n', 70)", &[]).unwrap();
    assert!(received(&mut listener).is_empty(), "still above the threshold");

    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT credits.charge('n', 15)", &[]).unwrap();
    tx.rollback().unwrap();
    assert!(received(&mut listener).is_empty(), "a rolled-back crossing sends nothing");

    let mut tx = client.transaction().unwrap();
    tx.batch_execute("SAVEPOINT s; SELECT credits.charge('n', 15); ROLLBACK TO SAVEPOINT s;").unwrap();
    tx.commit().unwrap();
    assert!(received(&mut listener).is_empty(), "a crossing in a rolled-back savepoint sends nothing");

    let mut tx = client.transaction().unwrap();
    tx.batch_execute("SAVEPOINT s; SELECT credits.charge('n', 15); RELEASE SAVEPOINT s;").unwrap();
    tx.commit().unwrap();
    let first = received(&mut listener);
    assert_eq!(without_id(first.clone()), [alert("n", "15", "20")]);

    client.query_one("SELECT credits.charge('n', 5)", &[]).unwrap();
    assert!(received(&mut listener).is_empty(), "already below: no second alert");

    client.query_one("SELECT credits.recharge('n', 30)", &[]).unwrap();
    client.execute("UPDATE credits.accounts SET balance = 1 WHERE account = 'n'", &[]).unwrap();
    let second = received(&mut listener);
    assert_eq!(without_id(second.clone()), [alert("n", "1", "20")]);

    assert_eq!(recorded(&mut client), [first, second].concat(), "each alert is an event, and only those");
}

#[test]
fn a_prepared_transaction_that_crossed_the_threshold_commits_with_its_event() {
    let db = fresh_database("notify_2pc");
    let mut listener = connect(&db);
    listener.batch_execute("LISTEN credits_low_balance").unwrap();
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('n', 100, low_balance_threshold => 20)", &[]).unwrap();
    // The direct path, the SQL path (a key), and a hot account's slot.
    client.execute("SELECT credits.create_account('k', 100, low_balance_threshold => 20)", &[]).unwrap();
    client.execute("SELECT credits.create_account('h', 100, low_balance_threshold => 20)", &[]).unwrap();
    client.execute("SELECT credits.set_slots('h', 2)", &[]).unwrap();

    client
        .batch_execute(
            "BEGIN;
             SELECT credits.charge('n', 90);
             SELECT credits.charge('k', 90, idempotency_key => 'two-phase');
             SELECT credits.charge('h', 90);
             PREPARE TRANSACTION 'charge-2pc';",
        )
        .unwrap();
    assert!(recorded(&mut client).is_empty(), "not committed yet");
    client.batch_execute("COMMIT PREPARED 'charge-2pc'").unwrap();
    assert!(received(&mut listener).is_empty(), "a prepared transaction sends no NOTIFY");
    let mut accounts: Vec<String> =
        without_id(recorded(&mut client)).iter().map(|a| a["account"].as_str().unwrap().to_owned()).collect();
    accounts.sort();
    assert_eq!(accounts, ["h", "k", "n"], "its events are its alerts");
    assert_eq!(balance(&mut client, "n"), dec("10"));
    assert_ledger_invariant(&mut client);

    // A prepared transaction rolled back leaves neither charge nor event.
    client.batch_execute("BEGIN; SELECT credits.charge('n', 5); PREPARE TRANSACTION 'undone';").unwrap();
    client.batch_execute("ROLLBACK PREPARED 'undone'").unwrap();
    assert_eq!(recorded(&mut client).len(), 3);
    assert_eq!(balance(&mut client, "n"), dec("10"));
}

#[test]
fn an_alert_says_how_fast_the_account_spends_and_when_it_runs_out() {
    let db = fresh_database("notify_pace");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('p', 100, low_balance_threshold => 50)", &[]).unwrap();
    client.query_one("SELECT credits.charge('p', 20)", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    client.query_one("SELECT credits.charge('p', 20)", &[]).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    client.query_one("SELECT credits.charge('p', 20)", &[]).unwrap();
    let alert = &recorded(&mut client)[0];
    let per_day: f64 = alert["spent_per_day"].as_str().expect("a rate").parse().unwrap();
    // 60 in about 1.2 s: about 4.3 million a day.
    assert!((2e6..1e7).contains(&per_day), "{alert}");
    let soon = client
        .query_one(
            "SELECT ($1::text)::timestamptz BETWEEN clock_timestamp() - interval '5 seconds' AND clock_timestamp() + interval '5 seconds'",
            &[&alert["runs_out_at"].as_str().expect("a time")],
        )
        .unwrap()
        .get::<_, bool>(0);
    assert!(soon, "40 left at 60 per 1.2 s runs out within a second: {alert}");
}
