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
    for sql in ["SELECT credits.balance('s')", "SELECT credits.charge('s', 1)", "SELECT * FROM credits.ledger"] {
        let outcome = as_role(&mut client, "sec_nobody", sql);
        assert_eq!(outcome, Err("42501".to_string()), "nobody must not: {sql}");
    }
    assert_eq!(balance(&mut client, "s"), dec("14"));
    assert_ledger_invariant(&mut client);
}
