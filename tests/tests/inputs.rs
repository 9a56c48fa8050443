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

/// One canonical form for every amount stored or returned: no trailing zeros after the
/// point (so never more than the 18 places the limits allow), whatever the caller wrote
/// and whichever path (direct, SQL, hot slot, batch, guard) did the writing.
#[test]
fn amounts_are_stored_and_returned_in_one_canonical_form() {
    let db = fresh_database("inputs_canonical");
    let mut client = connect(&db);
    let padded = format!("1.{}", "0".repeat(48));
    let returned: Vec<String> = [
        "SELECT credits.create_account('p', 100.000)::text",
        "SELECT credits.charge('p', $1::text::numeric)::text",
        "SELECT credits.charge('p', 1.50)::text",
        "SELECT credits.charge('p', 0.50, idempotency_key => 'k')::text",
        "SELECT credits.charge('p', 0.50, idempotency_key => 'k')::text",
        "SELECT credits.recharge('p', 2.000)::text",
        "SELECT balance::text FROM credits.charge_many(ARRAY['p'], ARRAY[0.500]::numeric[])",
        "SELECT credits.create_account('h', 100)::text",
        "SELECT 'hot' FROM (SELECT credits.set_slots('h', 3)) made",
        "SELECT credits.charge('h', 3.00)::text",
        "SELECT credits.charge('h', 90.0)::text",
        "SELECT credits.balance('h')::text",
    ]
    .iter()
    .map(|sql| {
        let args: Vec<&(dyn postgres::types::ToSql + Sync)> = if sql.contains("$1") { vec![&padded] } else { vec![] };
        client.query_one(*sql, &args).unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    })
    .collect();
    assert_eq!(returned, ["100", "99", "97.5", "97", "97", "99", "98.5", "100", "hot", "97", "7", "7"]);
    client.execute("UPDATE credits.accounts SET balance = 50.00 WHERE account = 'p'", &[]).unwrap();
    let read: String = client.query_one("SELECT credits.balance('p')::text", &[]).unwrap().get(0);
    assert_eq!(read, "50", "a direct write's 50.00 reads as 50");
    let untrimmed: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM credits.ledger
                      WHERE scale(amount) <> min_scale(amount)
                         OR scale(balance_after) <> min_scale(balance_after))
                  + (SELECT count(*) FROM credits.account_slots WHERE scale(available) <> min_scale(available))
                  + (SELECT count(*) FROM credits.accounts
                      WHERE account <> 'p' AND (scale(balance) <> min_scale(balance)
                                                OR scale(min_balance) <> min_scale(min_balance)))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(untrimmed, 0, "every amount pg_credits wrote is canonical");
    assert_ledger_invariant(&mut client);
}

#[test]
fn set_limits_keeps_the_threshold_unless_it_is_given() {
    let db = fresh_database("inputs_set_limits");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 100, low_balance_threshold => 10)", &[]).unwrap();
    let threshold = |client: &mut postgres::Client| -> Option<rust_decimal::Decimal> {
        client.query_one("SELECT low_balance_threshold FROM credits.accounts", &[]).unwrap().get(0)
    };
    client.execute("SELECT credits.set_limits('a', -5)", &[]).unwrap();
    client.execute("SELECT credits.set_limits('a', min_balance => -6)", &[]).unwrap();
    assert_eq!(threshold(&mut client), Some(dec("10")), "not given: kept");
    client.execute("SELECT credits.set_limits('a', -5, 20)", &[]).unwrap();
    assert_eq!(threshold(&mut client), Some(dec("20")));
    client.execute("SELECT credits.set_limits('a', -5, NULL)", &[]).unwrap();
    assert_eq!(threshold(&mut client), None, "given as NULL: cleared");
    let floor: rust_decimal::Decimal =
        client.query_one("SELECT min_balance FROM credits.accounts", &[]).unwrap().get(0);
    assert_eq!(floor, dec("-5"));
}

#[test]
fn a_misspelt_error_style_is_refused_once_pg_credits_is_loaded() {
    let db = fresh_database("inputs_error_style");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 1)", &[]).unwrap();
    for sql in [
        "SET credits.error_style = 'postgrset'".to_owned(),
        "ALTER ROLE CURRENT_USER SET credits.error_style = 'postgrset'".to_owned(),
        format!("ALTER DATABASE {db} SET credits.error_style = 'postgrset'"),
    ] {
        assert_eq!(db_error(client.batch_execute(&sql)).code().code(), "22023", "{sql}");
    }
    // A misspelt name is not taken as a new placeholder either (42602 invalid_name).
    assert_eq!(db_error(client.batch_execute("SET credits.error_stlye = 'postgrest'")).code().code(), "42602");
    client.batch_execute("SET credits.error_style = 'postgrest'").unwrap();
    assert_eq!(db_error(client.query_one("SELECT credits.charge('a', 5)", &[])).code().code(), "PGRST");
}
