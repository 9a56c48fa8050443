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
