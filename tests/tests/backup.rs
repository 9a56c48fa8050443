//! pg_dump and pg_restore keep every row of every table pg_credits has (accounts, ledger,
//! the slots of hot accounts, events, grants, holds), as they were, restored the documented ways: a
//! custom-format dump with `pg_restore --single-transaction`, a plain one with `psql -1`.

use pg_credits_client_tests::*;
use std::process::Command;

fn pg_tool(name: &str) -> Command {
    let bin = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    Command::new(format!("{bin}/{name}"))
}

/// Every row of every table pg_credits has, as text, in a stable order; the list of tables
/// is read from the extension's dump configuration, so a table added later is included.
fn snapshot(database: &str) -> Vec<String> {
    let mut client = connect(database);
    let tables: Vec<String> = client
        .query(
            "SELECT c.oid::regclass::text FROM pg_extension e, unnest(e.extconfig) t(oid)
               JOIN pg_class c ON c.oid = t.oid
              WHERE e.extname = 'pg_credits' AND c.relkind = 'r' ORDER BY c.oid::regclass::text COLLATE \"C\"",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tables,
        ["credits.account_grants", "credits.account_slots", "credits.accounts", "credits.events", "credits.holds", "credits.ledger"]
    );
    tables
        .iter()
        .flat_map(|table| {
            let sql = format!("SELECT '{table} ' || t::text FROM {table} t ORDER BY t::text COLLATE \"C\"");
            client.query(&sql, &[]).unwrap().iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>()
        })
        .collect()
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
             DELETE FROM credits.accounts WHERE account = 'closed';
             SELECT credits.create_account('overdraft', 5, min_balance => -20, low_balance_threshold => 0);
             SELECT credits.charge('overdraft', 12);
             SELECT credits.create_account('big', 1000, min_balance => -50, low_balance_threshold => 900);
             SELECT credits.set_slots('big', 4);
             SELECT credits.charge('big', 7, idempotency_key => 'hot-1');
             SELECT credits.charge('big', 200);
             SELECT credits.hold('big', 50, ttl => NULL);
             SELECT credits.recharge('g', 20);
             SELECT credits.grant('g', 10, 'promotional', priority => 10, expires_at => now() + interval '30 days');
             SELECT credits.grant('g', 30, effective_at => now() + interval '1 day');
             SELECT credits.grant('g', 5, idempotency_key => 'void-me');
             SELECT credits.void_grant(3);
             SELECT credits.hold('g', 12, ttl => '1 day', idempotency_key => 'h-g');
             SELECT credits.capture((SELECT hold_id FROM credits.hold('g', 1)), 1);
             SELECT credits.charge('g', 2);",
        )
        .unwrap();
    assert_ledger_invariant(&mut client);
    let events: i64 = client.query_one("SELECT count(*) FROM credits.events", &[]).unwrap().get(0);
    assert_eq!(events, 2, "the overdraft and the hot account crossed their thresholds");
    let before = snapshot(&source);

    let dump = std::env::temp_dir().join(format!("pg_credits_backup_{}", std::process::id()));
    for (format, restore) in [("-Fc", "pg_restore --single-transaction"), ("-Fp", "psql -1")] {
        let status = pg_tool("pg_dump").args([format, "-d", &source, "-f"]).arg(&dump).status().unwrap();
        assert!(status.success(), "pg_dump {format}");
        let target = "t_backup_target";
        let mut admin = connect("postgres");
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {target} WITH (FORCE)")).unwrap();
        create_database(&mut admin, target);
        let status = match restore {
            "psql -1" => pg_tool("psql").args(["-X", "-q", "-1", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null", "-d", target, "-f"]).arg(&dump).status(),
            _ => pg_tool("pg_restore").args(["--single-transaction", "--exit-on-error", "-d", target]).arg(&dump).status(),
        }
        .unwrap();
        assert!(status.success(), "{restore}");
        assert_eq!(snapshot(target), before, "{restore}: every row of every table comes back unchanged");
        still_works(target);
    }
    std::fs::remove_file(&dump).ok();
}

/// The restored database keeps working: the hot account charges and gathers, new entries
/// continue the ledger's ids, and idempotency keys used before the dump still replay.
fn still_works(target: &str) {
    let mut restored = connect(target);
    assert_ledger_invariant(&mut restored);
    assert_eq!(balance(&mut restored, "big"), dec("793"));
    // The holds and grants: the open hold still reserves, and captures once; the grants
    // keep their order and validity.
    assert_eq!((balance(&mut restored, "g"), available(&mut restored, "g")), (dec("27"), dec("15")));
    let hold: i64 = restored.query_one("SELECT hold_id FROM credits.hold('g', 12, ttl => '1 day', idempotency_key => 'h-g')", &[]).unwrap().get(0);
    restored.query_one("SELECT * FROM credits.capture($1, 12)", &[&hold]).unwrap();
    assert_eq!(db_error(restored.query_one("SELECT * FROM credits.capture($1, 1)", &[&hold])).code().code(), "PT409");
    assert_eq!((balance(&mut restored, "g"), available(&mut restored, "g")), (dec("15"), dec("15")));
    let statuses: Vec<String> = restored
        .query("SELECT status FROM credits.grants WHERE account = 'g' ORDER BY grant_id", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(statuses, ["depleted", "pending", "voided"]);
    let big_hold: i64 = restored.query_one("SELECT hold_id FROM credits.active_holds WHERE account = 'big'", &[]).unwrap().get(0);
    restored.query_one("SELECT * FROM credits.release($1)", &[&big_hold]).unwrap();
    assert_eq!(balance(&mut restored, "overdraft"), dec("-7"));
    let replayed: rust_decimal::Decimal =
        restored.query_one("SELECT credits.charge('big', 7, idempotency_key => 'hot-1')", &[]).unwrap().get(0);
    assert_eq!(replayed, dec("793"));
    restored.query_one("SELECT credits.charge('big', 800)", &[]).unwrap();
    assert_eq!(balance(&mut restored, "big"), dec("-7"));
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
    restored.query_one("SELECT credits.charge('a', 4)", &[]).unwrap();
    let fresh_event_is_new: bool = restored
        .query_one("SELECT count(*) = 3 AND count(DISTINCT id) = 3 FROM credits.events", &[])
        .unwrap()
        .get(0);
    assert!(fresh_event_is_new, "a's crossing is a new event with a new id");
    assert_ledger_invariant(&mut restored);
}
