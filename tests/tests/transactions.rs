//! A charge lives and dies with the caller's transaction.

use pg_credits_client_tests::*;

#[test]
fn rolled_back_charge_leaves_no_trace() {
    let db = fresh_database("tx_rollback");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 10)", &[]).unwrap();
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT credits.charge('a', 3)", &[]).unwrap();
    tx.rollback().unwrap();
    assert_eq!(balance(&mut client, "a"), dec("10"));
    let charges: i64 =
        client.query_one("SELECT count(*) FROM credits.ledger WHERE kind = 'charge'", &[]).unwrap().get(0);
    assert_eq!(charges, 0);
}

#[test]
fn savepoint_rollback_undoes_only_its_charge() {
    let db = fresh_database("tx_savepoint");
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('a', 10)", &[]).unwrap();
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT credits.charge('a', 1)", &[]).unwrap();
    {
        let mut savepoint = tx.savepoint("retry_point").unwrap();
        savepoint.query_one("SELECT credits.charge('a', 5)", &[]).unwrap();
        savepoint.rollback().unwrap();
    }
    {
        // A failed charge inside a savepoint leaves the outer transaction usable.
        let mut savepoint = tx.savepoint("failing").unwrap();
        let error = db_error(savepoint.query_one("SELECT credits.charge('a', 1000)", &[]));
        assert_eq!(error.code().code(), "PT402");
        savepoint.rollback().unwrap();
    }
    tx.query_one("SELECT credits.charge('a', 2)", &[]).unwrap();
    tx.commit().unwrap();
    assert_eq!(balance(&mut client, "a"), dec("7"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn failed_charge_keeps_the_costly_work_from_committing() {
    let db = fresh_database("tx_work");
    let mut client = connect(&db);
    client.batch_execute("CREATE TABLE work (id int); SELECT credits.create_account('a', 1);").unwrap();
    let mut tx = client.transaction().unwrap();
    tx.execute("INSERT INTO work VALUES (1)", &[]).unwrap();
    let error = db_error(tx.query_one("SELECT credits.charge('a', 2)", &[]));
    assert_eq!(error.code().code(), "PT402");
    // The transaction is aborted: COMMIT turns into ROLLBACK.
    let _ = tx.commit();
    let rows: i64 = client.query_one("SELECT count(*) FROM work", &[]).unwrap().get(0);
    assert_eq!(rows, 0);
}
