//! The error contract as a client sees it: SQLSTATE, message, every JSON field, hint.

use pg_credits_client_tests::*;
use serde_json::json;

const MESSAGE: &str = "Account balance not enough to run this query, please recharge.";

#[test]
fn insufficient_balance_is_pt402_with_the_full_json_payload() {
    let db = fresh_database("contract_402");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('acme', 1.50)", &[]).unwrap();

    let error = db_error(client.query_one("SELECT credits.charge('acme', 4.25)", &[]));
    assert_eq!(error.code().code(), "PT402");
    assert_eq!(error.message(), MESSAGE);
    let payload = payload(&error);
    for (field, expected) in [
        ("code", json!(402)),
        ("name", json!("InsufficientBalanceError")),
        ("status_code", json!(40203)),
        ("message", json!(MESSAGE)),
        ("account", json!("acme")),
        ("balance", json!("1.5")), // canonical: the 1.50 it was opened with, without trailing zeros
        ("min_balance", json!("0")),
        ("cost", json!("4.25")),
        ("shortfall", json!("2.75")),
    ] {
        assert_eq!(payload[field], expected, "field {field} of {payload}");
    }
    let readable = payload["readable_message"].as_str().expect("readable_message is text");
    for figure in ["'acme'", "1.5 ", "4.25", "2.75", "Recharge"] {
        assert!(readable.contains(figure), "readable_message mentions {figure}: {readable}");
    }
    assert!(error.hint().expect("a hint").contains("credits.recharge('acme'"));
    assert_eq!(balance(&mut client, "acme"), dec("1.50"), "a failed charge changes nothing");
}

#[test]
fn insufficient_balance_names_where_to_recharge_when_the_url_is_set() {
    let db = fresh_database("contract_recharge_url");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('acme corp/eu', 1)", &[]).unwrap();
    let unset = payload(&db_error(client.query_one("SELECT credits.charge('acme corp/eu', 2)", &[])));
    assert!(unset.get("recharge_url").is_none(), "no URL unless configured: {unset}");

    client.batch_execute("SET credits.recharge_url = 'https://example.com/billing?account={account}'").unwrap();
    let error = db_error(client.query_one("SELECT credits.charge('acme corp/eu', 2)", &[]));
    let charged = payload(&error);
    let url = "https://example.com/billing?account=acme%20corp%2Feu";
    assert_eq!(charged["recharge_url"], json!(url), "the account id URL-encoded: {charged}");
    assert!(charged["readable_message"].as_str().unwrap().contains(url), "{charged}");
    // A hold refuses with the same payload.
    let hold = payload(&db_error(client.query_one("SELECT * FROM credits.hold('acme corp/eu', 2)", &[])));
    assert_eq!(hold["recharge_url"], json!(url));
}

#[test]
fn overdraft_allowance_is_part_of_the_shortfall() {
    let db = fresh_database("contract_overdraft");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('o', 1, min_balance => -5)", &[]).unwrap();
    let error = db_error(client.query_one("SELECT credits.charge('o', 10)", &[]));
    let payload = payload(&error);
    assert_eq!((payload["min_balance"].as_str(), payload["shortfall"].as_str()), (Some("-5"), Some("4")));
}

#[test]
fn missing_account_is_pt404_for_charge_balance_and_can_afford() {
    let db = fresh_database("contract_404");
    let mut client = connect(&db);
    for sql in [
        "SELECT credits.charge('ghost', 1)",
        "SELECT credits.balance('ghost')",
        "SELECT credits.can_afford('ghost', 1)",
    ] {
        let error = db_error(client.query_one(sql, &[]));
        assert_eq!(error.code().code(), "PT404", "{sql}");
        assert_eq!(error.message(), "Account not found.");
        let payload = payload(&error);
        assert_eq!(payload["code"], json!(404));
        assert_eq!(payload["name"], json!("AccountNotFoundError"));
        assert_eq!(payload["account"], json!("ghost"));
    }
}

#[test]
fn idempotency_key_reused_for_another_operation_is_pt409() {
    let db = fresh_database("contract_409");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('k', 10)", &[]).unwrap();
    client.execute("SELECT credits.charge('k', 2, idempotency_key => 'req-1')", &[]).unwrap();
    for sql in [
        "SELECT credits.charge('k', 3, idempotency_key => 'req-1')",
        "SELECT credits.recharge('k', 2, idempotency_key => 'req-1')",
    ] {
        let error = db_error(client.query_one(sql, &[]));
        assert_eq!(error.code().code(), "PT409", "{sql}");
        let payload = payload(&error);
        assert_eq!(payload["name"], json!("IdempotencyConflictError"));
        assert_eq!(payload["original"], json!({"kind": "charge", "amount": "-2"}));
    }
    let error = db_error(client.query_one("SELECT credits.create_account('k')", &[]));
    assert_eq!(error.code().code(), "PT409");
    assert_eq!(payload(&error)["name"], json!("AccountExistsError"));
    assert_eq!(balance(&mut client, "k"), dec("8"));
}

#[test]
fn plpgsql_can_catch_pt402_and_read_the_payload() {
    let db = fresh_database("contract_plpgsql");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('p', 0)", &[]).unwrap();
    client
        .batch_execute(
            "CREATE TABLE caught (state text, detail jsonb);
             DO $$
             DECLARE s text; d text;
             BEGIN
                 PERFORM credits.charge('p', 1);
             EXCEPTION WHEN SQLSTATE 'PT402' THEN
                 GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, d = PG_EXCEPTION_DETAIL;
                 INSERT INTO caught VALUES (s, d::jsonb);
             END $$;",
        )
        .unwrap();
    let row = client.query_one("SELECT state, detail->>'shortfall' FROM caught", &[]).unwrap();
    assert_eq!((row.get::<_, String>(0), row.get::<_, String>(1)), ("PT402".into(), "1".into()));
}
