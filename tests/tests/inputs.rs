//! Bad input gets a clear error with a documented SQLSTATE and changes nothing.

use pg_credits_client_tests::*;

#[test]
fn every_bad_argument_is_refused_with_its_sqlstate() {
    let db = fresh_database("inputs");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('ok', 100)", &[]).unwrap();
    let long = "x".repeat(257);
    let cases: &[(&str, &str)] = &[
        ("SELECT credits.charge(NULL, 1)", "22004"),
        ("SELECT credits.charge('ok', NULL)", "22004"),
        ("SELECT credits.recharge('ok', NULL)", "22004"),
        ("SELECT credits.create_account(NULL)", "22004"),
        ("SELECT credits.create_account('n', NULL)", "22004"),
        ("SELECT credits.balance(NULL)", "22004"),
        ("SELECT credits.can_afford('ok', NULL)", "22004"),
        ("SELECT credits.set_limits('ok', NULL)", "22004"),
        ("SELECT credits.charge('ok', -1)", "22023"),
        ("SELECT credits.recharge('ok', -0.01)", "22023"),
        ("SELECT credits.charge('ok', 'NaN')", "22023"),
        ("SELECT credits.recharge('ok', 'NaN')", "22023"),
        ("SELECT credits.charge('ok', 'Infinity')", "22003"),
        ("SELECT credits.recharge('ok', '-Infinity')", "22003"),
        ("SELECT credits.recharge('ok', 1e20)", "22003"),
        ("SELECT credits.charge('ok', 0.0000000000000000001)", "22003"),
        ("SELECT credits.charge('', 1)", "22023"),
        ("SELECT credits.recharge(E'a\\nb', 1)", "22023"),
        ("SELECT credits.charge('ok', 1, idempotency_key => '')", "22023"),
        ("SELECT credits.charge('ok', 1, metadata => '[1, 2]')", "22023"),
        ("SELECT credits.charge('ok', 1, metadata => '{bad json')", "22P02"),
        ("SELECT credits.create_account('m', 1, min_balance => 5)", "22023"),
        ("SELECT credits.create_account('m', low_balance_threshold => 'NaN')", "22023"),
    ];
    let long_cases = [
        (format!("SELECT credits.recharge('{long}', 1)"), "22001"),
        (format!("SELECT credits.charge('ok', 1, reason => '{}')", "r".repeat(1025)), "22001"),
        (format!("SELECT credits.charge('ok', 1, idempotency_key => '{}')", "k".repeat(257)), "22001"),
        (
            format!("SELECT credits.charge('ok', 1, metadata => jsonb_build_object('a', '{}'))", "m".repeat(9000)),
            "22001",
        ),
    ];
    let all = cases.iter().map(|(sql, code)| (sql.to_string(), *code)).chain(long_cases);
    for (sql, code) in all {
        let error = db_error(client.query_one(sql.as_str(), &[]));
        assert_eq!(error.code().code(), code, "{sql}: {}", error.message());
        if code.starts_with("22") && code != "22P02" {
            assert_eq!(payload(&error)["name"], "InvalidInputError", "{sql}");
        }
    }
    assert_eq!(balance(&mut client, "ok"), dec("100"));
    let accounts: i64 = client.query_one("SELECT count(*) FROM credits.accounts", &[]).unwrap().get(0);
    let entries: i64 = client.query_one("SELECT count(*) FROM credits.ledger", &[]).unwrap().get(0);
    assert_eq!((accounts, entries), (1, 1), "only the setup wrote anything");
}

#[test]
fn zero_cost_is_allowed_and_charges_nothing() {
    let db = fresh_database("inputs_zero");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('z', 0)", &[]).unwrap();
    let after: rust_decimal::Decimal =
        client.query_one("SELECT credits.charge('z', 0)", &[]).unwrap().get(0);
    assert_eq!(after, dec("0"));
    assert_ledger_invariant(&mut client);
}
