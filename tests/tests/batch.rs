//! credits.charge_many: per-item results, item order, keys, and all-or-nothing.

use pg_credits_client_tests::*;
use serde_json::Value;

type Item = (i32, String, String, Option<rust_decimal::Decimal>, Option<Value>);

fn charge_many(client: &mut postgres::Client, sql_args: &str) -> Vec<Item> {
    client
        .query(&format!("SELECT item, account, status, balance, error FROM credits.charge_many({sql_args})"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn statuses(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.2.as_str()).collect()
}

fn charge_entries(client: &mut postgres::Client) -> i64 {
    client.query_one("SELECT count(*) FROM credits.ledger WHERE kind = 'charge'", &[]).unwrap().get(0)
}

fn setup(test: &str) -> postgres::Client {
    let db = fresh_database(test);
    let mut client = connect(&db);
    client
        .batch_execute(
            "SELECT credits.create_account('a', 100);
             SELECT credits.create_account('b', 5);
             SELECT credits.create_account('h', 50); SELECT credits.set_slots('h', 4);",
        )
        .unwrap();
    client
}

#[test]
fn each_item_is_decided_in_order_and_reported() {
    let mut client = setup("batch_items");
    let items = charge_many(
        &mut client,
        "ARRAY['a', 'b', 'b', 'nobody', 'a', 'h'], ARRAY[10, 3, 3, 1, 0, 20]::numeric[]",
    );
    assert_eq!(statuses(&items), ["charged", "charged", "failed", "failed", "charged", "charged"]);
    assert_eq!(items.iter().map(|i| i.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(items[0].3, Some(dec("90")));
    assert_eq!(items[1].3, Some(dec("2")), "the second charge of b sees the first");
    let refused = items[2].4.as_ref().unwrap();
    assert_eq!(refused["name"], "InsufficientBalanceError");
    assert_eq!(refused["status_code"], 40203);
    assert_eq!(refused["balance"], "2");
    assert_eq!(refused["shortfall"], "1");
    assert_eq!(items[3].4.as_ref().unwrap()["name"], "AccountNotFoundError");
    assert_eq!(items[5].3, Some(dec("30")));
    assert_eq!(balance(&mut client, "a"), dec("90"));
    assert_eq!(balance(&mut client, "b"), dec("2"));
    assert_eq!(balance(&mut client, "h"), dec("30"));
    assert_eq!(charge_entries(&mut client), 3, "failed and zero-cost items write nothing");
    assert_ledger_invariant(&mut client);
}

#[test]
fn keys_replay_within_a_batch_and_across_calls() {
    let mut client = setup("batch_keys");
    // A plain account, and a hot one (whose slot entries record no balance: a replay
    // reports the current one).
    for (account, after) in [("a", "90"), ("h", "40")] {
        let args = format!("ARRAY['{account}', '{account}', '{account}'], ARRAY[10, 10, 20]::numeric[], ARRAY['k1', 'k1', 'k1']");
        let first = charge_many(&mut client, &args);
        assert_eq!(statuses(&first), ["charged", "replayed", "failed"], "{account}");
        assert_eq!(first[1].3, Some(dec(after)), "{account}");
        assert_eq!(first[2].4.as_ref().unwrap()["name"], "IdempotencyConflictError");
        let again = charge_many(&mut client, &args);
        assert_eq!(statuses(&again), ["replayed", "replayed", "failed"], "{account}");
        assert_eq!(balance(&mut client, account), dec(after));
    }
    assert_eq!(charge_entries(&mut client), 2, "one entry per key and account");
    assert_ledger_invariant(&mut client);
}

#[test]
fn all_or_nothing_raises_the_first_failure_and_charges_nothing() {
    let mut client = setup("batch_atomic");
    let error = db_error(client.query(
        "SELECT * FROM credits.charge_many(ARRAY['a', 'h', 'b'], ARRAY[10, 5, 6]::numeric[], all_or_nothing => true)",
        &[],
    ));
    assert_eq!(error.code().code(), "PT402");
    assert_eq!(error.message(), "Account balance not enough to run this query, please recharge.");
    let payload = payload(&error);
    assert_eq!(payload["account"], "b");
    assert_eq!(balance(&mut client, "a"), dec("100"));
    assert_eq!(balance(&mut client, "h"), dec("50"));
    let ok = charge_many(&mut client, "ARRAY['a', 'b'], ARRAY[10, 5]::numeric[], all_or_nothing => true");
    assert!(ok.iter().all(|i| i.2 == "charged"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn bad_arguments_fail_the_whole_call() {
    let mut client = setup("batch_inputs");
    for (args, sqlstate) in [
        ("NULL, ARRAY[1]::numeric[]", "22004"),
        ("ARRAY['a'], ARRAY[1, 2]::numeric[]", "22023"),
        ("ARRAY['a'], ARRAY[1]::numeric[], ARRAY['x', 'y']", "22023"),
        ("ARRAY['a', NULL], ARRAY[1, 1]::numeric[]", "22004"),
        ("ARRAY['a'], ARRAY[-1]::numeric[]", "22023"),
        ("ARRAY['a'], ARRAY['NaN']::numeric[]", "22023"),
        ("ARRAY['a'], ARRAY[1e30]::numeric[]", "22003"),
    ] {
        let error = db_error(client.query(&format!("SELECT * FROM credits.charge_many({args})"), &[]));
        assert_eq!(error.code().code(), sqlstate, "{args}");
    }
    assert_eq!(balance(&mut client, "a"), dec("100"));
    let empty = charge_many(&mut client, "ARRAY[]::text[], ARRAY[]::numeric[]");
    assert!(empty.is_empty());
}
