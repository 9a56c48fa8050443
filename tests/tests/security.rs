//! Roles: the README's grants give an application role charge/balance/can_afford and a
//! billing-admin role recharge/create_account/settings, and nothing more.

use pg_credits_client_tests::*;

fn as_role(client: &mut postgres::Client, role: &str, sql: &str) -> Result<(), String> {
    let mut tx = client.transaction().unwrap();
    tx.batch_execute(&format!("SET LOCAL ROLE {role}")).unwrap();
    let outcome = tx.batch_execute(sql).map_err(|e| e.code().map(|c| c.code().to_string()).unwrap_or_default());
    if outcome.is_ok() {
        tx.commit().unwrap();
    }
    outcome
}

#[test]
fn application_and_billing_roles_get_exactly_their_grants() {
    let db = fresh_database("security");
    let mut client = connect(&db);
    client
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS sec_app; DROP ROLE IF EXISTS sec_billing; DROP ROLE IF EXISTS sec_nobody;
             CREATE ROLE sec_app; CREATE ROLE sec_billing; CREATE ROLE sec_nobody;
             {}",
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/grants.sql"))
                .unwrap()
                .replace("app_role", "sec_app")
                .replace("billing_role", "sec_billing")
        ))
        .unwrap();
    client.execute("SELECT credits.create_account('s', 10)", &[]).unwrap();

    for sql in [
        "SELECT credits.charge('s', 1)",
        "SELECT credits.balance('s')",
        "SELECT credits.can_afford('s', 1)",
        "SELECT * FROM credits.statement('s', now() - interval '1 day', now() + interval '1 day', 'hour')",
        "SELECT * FROM credits.usage('s', now() - interval '1 day', now() + interval '1 day')",
        "SELECT credits.balance_at('s', now())",
        "SELECT * FROM credits.runway('s')",
    ] {
        assert_eq!(as_role(&mut client, "sec_app", sql), Ok(()), "app: {sql}");
    }
    for sql in [
        "SELECT credits.recharge('s', 100)",
        "SELECT credits.create_account('mine', 100)",
        "SELECT credits.set_limits('s', -1000)",
        "UPDATE credits.accounts SET balance = 1000",
        "INSERT INTO credits.ledger (account, amount, balance_after, kind) VALUES ('s', 1, 1, 'recharge')",
        "ALTER TABLE credits.accounts DISABLE TRIGGER guard_update",
    ] {
        let outcome = as_role(&mut client, "sec_app", sql);
        assert_eq!(outcome, Err("42501".to_string()), "app must not: {sql}");
    }
    for sql in [
        "SELECT credits.recharge('s', 5)",
        "SELECT credits.create_account('b', 1)",
        "SELECT credits.set_limits('s', -5, 3)",
        "SELECT credits.set_metadata('s', '{\"tier\": \"gold\"}')",
    ] {
        assert_eq!(as_role(&mut client, "sec_billing", sql), Ok(()), "billing: {sql}");
    }
    for sql in [
        "SELECT credits.balance('s')",
        "SELECT credits.charge('s', 1)",
        "SELECT * FROM credits.ledger",
        "SELECT * FROM credits.statement('s', now() - interval '1 day', now())",
    ] {
        let outcome = as_role(&mut client, "sec_nobody", sql);
        assert_eq!(outcome, Err("42501".to_string()), "nobody must not: {sql}");
    }
    assert_eq!(balance(&mut client, "s"), dec("14"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_hostile_schema_first_in_search_path_changes_nothing() {
    let db = fresh_database("security_search_path");
    let mut client = connect(&db);
    client
        .batch_execute(
            "CREATE SCHEMA evil;
             CREATE TABLE evil.calls (what text);
             CREATE TABLE evil.accounts (account text, balance numeric, min_balance numeric);
             CREATE TABLE evil.ledger (account text, amount numeric);
             CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE sql AS
                 $$ INSERT INTO evil.calls VALUES ('now') RETURNING '2000-01-01'::timestamptz $$;
             CREATE FUNCTION evil.minus(numeric, numeric) RETURNS numeric LANGUAGE sql AS
                 $$ INSERT INTO evil.calls VALUES ('-') RETURNING 1000000::numeric $$;
             CREATE FUNCTION evil.at_least(numeric, numeric) RETURNS boolean LANGUAGE sql AS
                 $$ INSERT INTO evil.calls VALUES ('>=') RETURNING true $$;
             CREATE FUNCTION evil.pg_notify(text, text) RETURNS void LANGUAGE sql AS
                 $$ INSERT INTO evil.calls VALUES ('pg_notify') $$;
             CREATE OPERATOR evil.- (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = evil.minus);
             CREATE OPERATOR evil.>= (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = evil.at_least);
             SET search_path = evil, public, pg_catalog;",
        )
        .unwrap();
    client.execute("SELECT credits.create_account('victim', 5, low_balance_threshold => 3)", &[]).unwrap();
    client.execute("SELECT credits.charge('victim', 3)", &[]).unwrap();
    let error = db_error(client.query_one("SELECT credits.charge('victim', 3)", &[]));
    assert_eq!(error.code().code(), "PT402");
    client.execute("SELECT credits.recharge('victim', 1, idempotency_key => 'k')", &[]).unwrap();
    client.execute("SELECT credits.set_limits('victim', -1)", &[]).unwrap();
    // Raw SQL is the caller's own: literals, so that only the triggers' SQL is under test.
    client.execute("UPDATE credits.accounts SET balance = 2 WHERE account = 'victim'", &[]).unwrap();
    assert_eq!(db_error(client.execute("UPDATE credits.accounts SET balance = -2", &[])).code().code(), "PT402");
    let can: bool = client.query_one("SELECT credits.can_afford('victim', 3)", &[]).unwrap().get(0);
    assert!(can, "balance 2 with floor -1 affords 3");
    assert_eq!(balance(&mut client, "victim"), dec("2"));

    let calls: i64 = client.query_one("SELECT count(*) FROM evil.calls", &[]).unwrap().get(0);
    let shadow: i64 = client
        .query_one("SELECT (SELECT count(*) FROM evil.accounts) + (SELECT count(*) FROM evil.ledger)", &[])
        .unwrap()
        .get(0);
    assert_eq!((calls, shadow), (0, 0), "no hostile function ran and no hostile table was written");
    client.batch_execute("RESET search_path").unwrap();
    assert_ledger_invariant(&mut client);
}
