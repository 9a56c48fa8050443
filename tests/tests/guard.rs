//! Raw SQL on the tables meets the same rules as the functions.

use pg_credits_client_tests::*;
use serde_json::json;

#[test]
fn raw_update_below_the_floor_is_pt402_with_payload() {
    let db = fresh_database("guard_floor");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('g', 10)", &[]).unwrap();
    let error = db_error(client.execute("UPDATE credits.accounts SET balance = balance - 12 WHERE account = 'g'", &[]));
    assert_eq!(error.code().code(), "PT402");
    let payload = payload(&error);
    assert_eq!(
        (&payload["balance"], &payload["cost"], &payload["shortfall"]),
        (&json!("10"), &json!("12"), &json!("2"))
    );
    for sql in [
        "UPDATE credits.accounts SET min_balance = 11 WHERE account = 'g'",
        "INSERT INTO credits.accounts (account, balance, min_balance) VALUES ('h', 1, 2)",
        "INSERT INTO credits.accounts (account, balance) VALUES ('h', -1)",
    ] {
        assert_eq!(db_error(client.execute(sql, &[])).code().code(), "PT402", "{sql}");
    }
    assert_eq!(balance(&mut client, "g"), dec("10"));
}

#[test]
fn allowed_raw_writes_are_recorded_as_adjustments() {
    let db = fresh_database("guard_adjust");
    let mut client = connect(&db);
    client
        .batch_execute(
            "SELECT credits.create_account('g', 10);
             UPDATE credits.accounts SET balance = 4 WHERE account = 'g';
             INSERT INTO credits.accounts (account, balance) VALUES ('raw', 50);
             INSERT INTO credits.accounts (account, balance) VALUES ('raw', 80)
                 ON CONFLICT (account) DO UPDATE SET balance = EXCLUDED.balance;
             UPDATE credits.accounts SET metadata = '{\"plan\": \"pro\"}';",
        )
        .unwrap();
    let rows = client
        .query("SELECT account, amount::text, balance_after::text FROM credits.ledger WHERE kind = 'adjustment' ORDER BY id", &[])
        .unwrap();
    let adjustments: Vec<(String, String, String)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(
        adjustments,
        // One implicit transaction: the INSERT's adjustment is reconciled at its commit.
        [("g", "-6", "4"), ("raw", "30", "80"), ("raw", "50", "80")]
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    );
    assert_ledger_invariant(&mut client);
}

#[test]
fn ledger_is_append_only_and_accounts_keep_their_history() {
    let db = fresh_database("guard_append_only");
    let mut client = connect(&db);
    client.batch_execute("SELECT credits.create_account('g', 10); SELECT credits.create_account('empty');").unwrap();
    for sql in [
        "UPDATE credits.ledger SET amount = 0",
        "DELETE FROM credits.ledger",
        "TRUNCATE credits.ledger",
        "TRUNCATE credits.accounts",
        "DELETE FROM credits.accounts WHERE account = 'g'",
        "UPDATE credits.accounts SET account = 'renamed' WHERE account = 'g'",
    ] {
        let error = db_error(client.execute(sql, &[]));
        assert_eq!(error.code().code(), "PT403", "{sql}");
        assert_eq!(payload(&error)["name"], json!("ForbiddenWriteError"));
    }
    client.execute("DELETE FROM credits.accounts WHERE account = 'empty'", &[]).unwrap();
    assert_eq!(balance(&mut client, "g"), dec("10"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn non_finite_values_cannot_be_written_directly() {
    let db = fresh_database("guard_finite");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('g', 10)", &[]).unwrap();
    for sql in [
        "UPDATE credits.accounts SET balance = 'NaN' WHERE account = 'g'",
        "UPDATE credits.accounts SET balance = 'Infinity' WHERE account = 'g'",
        "UPDATE credits.accounts SET min_balance = '-Infinity' WHERE account = 'g'",
    ] {
        assert_eq!(db_error(client.execute(sql, &[])).code().code(), "23514", "{sql}");
    }
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_raw_insert_made_hot_in_its_transaction_reconciles_its_whole_balance() {
    let db = fresh_database("guard_insert_then_hot");
    let mut client = connect(&db);
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO credits.accounts (account, balance) VALUES ('raw', 100);
             SELECT credits.set_slots('raw', 4);
             COMMIT;",
        )
        .unwrap();
    let adjustment: rust_decimal::Decimal = client
        .query_one("SELECT amount FROM credits.ledger WHERE account = 'raw' AND kind = 'adjustment'", &[])
        .unwrap()
        .get(0);
    assert_eq!(adjustment, dec("100"), "the inserted balance, though most of it is in the slots by commit");
    assert_eq!(balance(&mut client, "raw"), dec("100"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn inserted_slots_must_be_exactly_the_accounts_slots_at_commit() {
    let db = fresh_database("guard_inserted_slots");
    let mut client = connect(&db);
    client.batch_execute("SELECT credits.create_account('h', 100); SELECT credits.set_slots('h', 2);").unwrap();
    for sql in [
        // One slot too many, a slot of an account that has none, a hot account without its slots.
        "INSERT INTO credits.account_slots VALUES ('h', 2, 10)",
        "INSERT INTO credits.account_slots VALUES ('nobody', 0, 10)",
        "INSERT INTO credits.accounts (account, balance, slots) VALUES ('hot-raw', 5, 3)",
    ] {
        let error = db_error(client.execute(sql, &[]));
        assert_eq!(error.code().code(), "PT403", "{sql}");
        assert_eq!(payload(&error)["name"], "ForbiddenWriteError");
    }
    // What a restore does: an account row with slots, and its slots, in one transaction.
    client
        .batch_execute(
            "BEGIN;
             INSERT INTO credits.account_slots VALUES ('restored', 0, 30), ('restored', 1, 30);
             INSERT INTO credits.accounts (account, balance, slots) VALUES ('restored', 1, 2);
             COMMIT;",
        )
        .unwrap();
    assert_eq!(balance(&mut client, "restored"), dec("61"));
    let adjusted: rust_decimal::Decimal = client
        .query_one("SELECT sum(amount) FROM credits.ledger WHERE account = 'restored'", &[])
        .unwrap()
        .get(0);
    assert_eq!(adjusted, dec("61"), "with no ledger restored, the whole balance is one adjustment");
    client.query_one("SELECT credits.charge('restored', 50)", &[]).unwrap();
    assert_eq!(balance(&mut client, "restored"), dec("11"));
    assert_ledger_invariant(&mut client);
}
