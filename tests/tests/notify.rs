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

#[test]
fn crossing_below_the_threshold_notifies_once_and_only_on_commit() {
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

    client.query_one("SELECT credits.charge('n', 15)", &[]).unwrap();
    assert_eq!(received(&mut listener), [json!({"account": "n", "balance": "15", "threshold": "20"})]);

    client.query_one("SELECT credits.charge('n', 5)", &[]).unwrap();
    assert!(received(&mut listener).is_empty(), "already below: no second alert");

    client.query_one("SELECT credits.recharge('n', 30)", &[]).unwrap();
    client.execute("UPDATE credits.accounts SET balance = 1 WHERE account = 'n'", &[]).unwrap();
    assert_eq!(received(&mut listener), [json!({"account": "n", "balance": "1", "threshold": "20"})]);
}
