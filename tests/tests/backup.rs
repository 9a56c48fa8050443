//! pg_dump and pg_restore keep every balance and every ledger entry, as they were.

use pg_credits_client_tests::*;
use std::process::Command;

fn pg_tool(name: &str) -> Command {
    let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Command::new(format!("{bin}/{name}"))
}

/// Every row of both tables, as text, in a stable order.
fn snapshot(database: &str) -> (Vec<String>, Vec<String>) {
    let mut client = connect(database);
    let rows = |client: &mut postgres::Client, sql: &str| -> Vec<String> {
        client.query(sql, &[]).unwrap().iter().map(|r| r.get::<_, String>(0)).collect()
    };
    (
        rows(&mut client, "SELECT a::text FROM credits.accounts a ORDER BY account"),
        rows(&mut client, "SELECT l::text FROM credits.ledger l ORDER BY account, id"),
    )
}

#[test]
fn dump_and_restore_keep_balances_and_ledger() {
    let source = fresh_database("backup_source");
    let mut client = connect(&source);
    client
        .batch_execute(
            "SELECT credits.create_account('a', 10, low_balance_threshold => 2, metadata => '{\"plan\": \"pro\"}');
             SELECT credits.charge('a', 3.25, 'GET /x', 'k1', '{\"n\": 1}');
             SELECT credits.recharge('b', 5);
             UPDATE credits.accounts SET balance = 7 WHERE account = 'b';
             INSERT INTO credits.accounts (account, balance, min_balance) VALUES ('raw', 4, -1);
             SELECT credits.create_account('closed');
             SELECT credits.recharge('closed', 1);
             SELECT credits.charge('closed', 1);
             DELETE FROM credits.accounts WHERE account = 'closed';",
        )
        .unwrap();
    assert_ledger_invariant(&mut client);
    let before = snapshot(&source);

    let dump = std::env::temp_dir().join(format!("pg_credits_backup_{}.dump", std::process::id()));
    let status = pg_tool("pg_dump").args(["-Fc", "-d", &source, "-f"]).arg(&dump).status().unwrap();
    assert!(status.success(), "pg_dump");
    let target = "t_backup_target";
    let mut admin = connect("postgres");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {target} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {target} {CREATE_DATABASE_OPTIONS}")).unwrap();
    let status = pg_tool("pg_restore")
        .args(["--single-transaction", "--exit-on-error", "-d", target])
        .arg(&dump)
        .status()
        .unwrap();
    std::fs::remove_file(&dump).ok();
    assert!(status.success(), "pg_restore");

    assert_eq!(snapshot(target), before, "every account and ledger row comes back unchanged");
    let mut restored = connect(target);
    assert_ledger_invariant(&mut restored);
    // The restored database keeps working: new entries continue the ledger's ids, and an
    // idempotency key used before the dump still replays.
    let after: rust_decimal::Decimal =
        restored.query_one("SELECT credits.charge('a', 3.25, 'GET /x', 'k1')", &[]).unwrap().get(0);
    assert_eq!(after, dec("6.75"));
    restored.query_one("SELECT credits.charge('a', 1)", &[]).unwrap();
    let fresh_id_is_new: bool = restored
        .query_one("SELECT max(id) = (SELECT max(id) FROM credits.ledger WHERE kind = 'charge' AND amount = -1)
                      FROM credits.ledger", &[])
        .unwrap()
        .get(0);
    assert!(fresh_id_is_new);
    assert_ledger_invariant(&mut restored);
}
