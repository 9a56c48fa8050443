//! Hot accounts (credits.set_slots): the same contract as a plain account.

use pg_credits_client_tests::*;

fn hot_account(test: &str, initial: &str, slots: i32) -> (String, postgres::Client) {
    let db = fresh_database(test);
    let mut client = connect(&db);
    client.execute("SELECT credits.create_account('h', $1::text::numeric)", &[&initial]).unwrap();
    client.execute("SELECT credits.set_slots('h', $1)", &[&slots]).unwrap();
    (db, client)
}

/// Opens a transaction that charges 1 to 'h', and so holds one of its slots until it ends.
fn holding_a_slot(client: &mut postgres::Client) -> postgres::Transaction<'_> {
    let mut holding = client.transaction().unwrap();
    holding.query_one("SELECT credits.charge('h', 1)", &[]).unwrap();
    holding
}

/// What the slots of 'h' hold, smallest first.
fn sorted_slots(client: &mut postgres::Client) -> Vec<rust_decimal::Decimal> {
    let mut available = slots(client);
    available.sort();
    available
}

fn slots(client: &mut postgres::Client) -> Vec<rust_decimal::Decimal> {
    client
        .query("SELECT available FROM credits.account_slots WHERE account = 'h' ORDER BY slot", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[test]
fn set_slots_spreads_the_spendable_part_and_keeps_the_balance() {
    let (_db, mut client) = hot_account("hot_spread", "100", 3);
    client.execute("SELECT credits.set_limits('h', 10)", &[]).unwrap();
    // 90 spendable over 3 slots; the floor stays on the account row.
    assert_eq!(slots(&mut client), vec![dec("30"), dec("30"), dec("30")]);
    let row_balance: rust_decimal::Decimal =
        client.query_one("SELECT balance FROM credits.accounts WHERE account = 'h'", &[]).unwrap().get(0);
    assert_eq!(row_balance, dec("10"));
    assert_eq!(balance(&mut client, "h"), dec("100"));
    client.execute("SELECT credits.set_slots('h', 0)", &[]).unwrap();
    assert!(slots(&mut client).is_empty());
    assert_eq!(balance(&mut client, "h"), dec("100"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_charge_no_slot_can_cover_is_served_from_the_total() {
    let (_db, mut client) = hot_account("hot_gather", "100", 4);
    // 25 per slot; 60 fits no slot but the total.
    let after: rust_decimal::Decimal = client.query_one("SELECT credits.charge('h', 60)", &[]).unwrap().get(0);
    assert_eq!(after, dec("40"));
    let entry: Option<rust_decimal::Decimal> = client
        .query_one("SELECT balance_after FROM credits.ledger WHERE kind = 'charge'", &[])
        .unwrap()
        .get(0);
    assert_eq!(entry, Some(dec("40")), "a gathered charge knows the exact balance after");
    assert_eq!(slots(&mut client), vec![dec("10"); 4]);
    let error = db_error(client.query_one("SELECT credits.charge('h', 40.01)", &[]));
    assert_eq!(error.code().code(), "PT402");
    let payload = payload(&error);
    assert_eq!(payload["balance"], "40");
    assert_eq!(payload["shortfall"], "0.01");
    assert_eq!(balance(&mut client, "h"), dec("40"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn slot_charges_recharges_and_keys_keep_the_ledger_exact() {
    let (_db, mut client) = hot_account("hot_ledger", "10", 2);
    for i in 0..8 {
        client.query_one("SELECT credits.charge('h', 1, idempotency_key => $1)", &[&format!("k{i}")]).unwrap();
    }
    let replayed: rust_decimal::Decimal =
        client.query_one("SELECT credits.charge('h', 1, idempotency_key => 'k0')", &[]).unwrap().get(0);
    assert!(replayed >= dec("2"), "a replay charges nothing");
    let conflict = db_error(client.query_one("SELECT credits.charge('h', 2, idempotency_key => 'k0')", &[]));
    assert_eq!(conflict.code().code(), "PT409");
    assert_eq!(balance(&mut client, "h"), dec("2"));
    client.query_one("SELECT credits.recharge('h', 5)", &[]).unwrap();
    assert_eq!(balance(&mut client, "h"), dec("7"));
    let refused = db_error(client.query_one("SELECT credits.charge('h', 8)", &[]));
    assert_eq!(refused.code().code(), "PT402");
    let affordable: bool = client.query_one("SELECT credits.can_afford('h', 7)", &[]).unwrap().get(0);
    assert!(affordable);
    assert_ledger_invariant(&mut client);
}

#[test]
fn slots_are_written_only_by_pg_credits() {
    let (_db, mut client) = hot_account("hot_guard", "100", 2);
    for sql in [
        "UPDATE credits.account_slots SET available = available + 1",
        "DELETE FROM credits.account_slots",
        "INSERT INTO credits.account_slots VALUES ('h', 9, 1)",
        "TRUNCATE credits.account_slots",
        "UPDATE credits.accounts SET slots = 0",
        "DELETE FROM credits.accounts WHERE account = 'h'",
    ] {
        let error = db_error(client.batch_execute(sql));
        assert_eq!(error.code().code(), "PT403", "{sql}");
    }
    let negative = db_error(client.batch_execute("SET session_replication_role = replica; UPDATE credits.account_slots SET available = -1"));
    assert_eq!(negative.code().code(), "23514", "no slot below zero, even with triggers off");
    let bad = db_error(client.query_one("SELECT credits.set_slots('h', 65)", &[]));
    assert_eq!(bad.code().code(), "22003");
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_charge_takes_a_free_slot_instead_of_waiting_for_a_busy_one() {
    let (db, mut holder) = hot_account("hot_busy_slot", "100", 2);
    let holding = holding_a_slot(&mut holder);
    // The open transaction holds one of the two slots. Each charge below (with a key or
    // without) would hash to it half the time; none may wait for it while the other slot
    // can pay.
    let mut other = connect(&db);
    other.batch_execute("SET statement_timeout = '5s'").unwrap();
    for i in 0..20 {
        let key = (i % 2 == 0).then(|| format!("usage-{i}"));
        other.query_one("SELECT credits.charge('h', 1, idempotency_key => $1)", &[&key]).unwrap();
    }
    holding.commit().unwrap();
    assert_eq!(balance(&mut other, "h"), dec("79"));
    assert_ledger_invariant(&mut other);
}

#[test]
fn a_transaction_keeps_to_the_slot_it_took_from() {
    let (db, mut client) = hot_account("hot_same_slot", "100", 4);
    let mut other = connect(&db);
    let holding = holding_a_slot(&mut other);
    // While another transaction holds a slot, three charges in one transaction: one slot
    // pays them all, and it is not the held one (nor does any charge wait for it).
    client.batch_execute("SET statement_timeout = '5s'").unwrap();
    let mut tx = client.transaction().unwrap();
    for _ in 0..3 {
        tx.query_one("SELECT credits.charge('h', 1)", &[]).unwrap();
    }
    tx.commit().unwrap();
    holding.commit().unwrap();
    assert_eq!(sorted_slots(&mut client), vec![dec("22"), dec("24"), dec("25"), dec("25")]);
    assert_ledger_invariant(&mut client);
}

#[test]
fn gathering_takes_the_free_slots_when_they_can_pay() {
    let (db, mut client) = hot_account("hot_gather_free", "400", 4);
    let mut holder = connect(&db);
    let holding = holding_a_slot(&mut holder);
    // No slot can pay 150: the charge gathers, from the three slots nobody is charging
    // (300), without waiting for the held one.
    client.batch_execute("SET statement_timeout = '5s'").unwrap();
    let after: rust_decimal::Decimal = client.query_one("SELECT credits.charge('h', 150)", &[]).unwrap().get(0);
    assert_eq!(after, dec("250"), "the balance as of the charge's snapshot: the held slot's 100 counts");
    holding.commit().unwrap();
    assert_eq!(sorted_slots(&mut client), vec![dec("50"), dec("50"), dec("50"), dec("99")], "spread over the gathered slots");
    assert_eq!(balance(&mut client, "h"), dec("249"));
    let recorded: Option<rust_decimal::Decimal> = client
        .query_one("SELECT balance_after FROM credits.ledger WHERE kind = 'charge' AND amount = -150", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, None, "no exact balance after while a slot was busy");
    assert_ledger_invariant(&mut client);
}

#[test]
fn two_transactions_that_each_gather_do_not_deadlock_when_free_slots_can_pay() {
    let (db, mut client) = hot_account("hot_gather_both", "400", 4);
    let sessions = || {
        let mut c = connect(&db);
        c.batch_execute("SET statement_timeout = '10s'").unwrap();
        c
    };
    let (mut first, mut second) = (sessions(), sessions());
    let mut one = holding_a_slot(&mut first);
    let (took, go) = std::sync::mpsc::channel();
    let other = std::thread::spawn(move || -> Result<(), postgres::Error> {
        let mut two = holding_a_slot(&mut second);
        took.send(()).unwrap();
        // Gathers while the first transaction holds its slot (or waits for the account
        // row the first one's gathering locked).
        two.query_one("SELECT credits.charge('h', 150)", &[])?;
        two.commit()
    });
    go.recv().unwrap();
    let result = one.query_one("SELECT credits.charge('h', 150)", &[]).map(|_| ());
    let committed = result.and_then(|()| one.commit());
    let other = other.join().unwrap();
    assert!(committed.is_ok() && other.is_ok(), "first: {committed:?}, second: {other:?}");
    assert_eq!(balance(&mut client, "h"), dec("98"));
    assert_ledger_invariant(&mut client);
}

#[test]
fn a_keyed_charge_holds_its_keys_lock_to_the_end_of_its_transaction() {
    let (db, mut client) = hot_account("hot_key_lock", "100", 4);
    let mut other = connect(&db);
    // The documented form: an advisory lock in pg_credits' own space (objsubid 20547),
    // keyed by the hashes of the account and the key.
    let held = |c: &mut postgres::Client| -> i64 {
        c.query_one(
            "SELECT count(*) FROM pg_locks
              WHERE locktype = 'advisory' AND objsubid = 20547 AND mode = 'ExclusiveLock' AND granted
                AND classid::int = hashtext('h') AND objid::int = hashtext('usage-1')",
            &[],
        )
        .unwrap()
        .get(0)
    };
    let mut tx = client.transaction().unwrap();
    tx.query_one("SELECT credits.charge('h', 1, idempotency_key => 'usage-1')", &[]).unwrap();
    assert_eq!(held(&mut other), 1, "held while the charge's transaction is open");
    tx.commit().unwrap();
    assert_eq!(held(&mut other), 0, "released at its end");
}

#[test]
fn no_role_can_hold_up_a_hot_accounts_keyed_charges_with_an_advisory_lock() {
    let (db, mut client) = hot_account("hot_key_lock_squat", "100", 4);
    let mut squatter = connect(&db);
    // Every lock SQL can take on the names: the old documented form and the int8 one.
    squatter
        .batch_execute(
            "SELECT pg_advisory_lock(hashtext('h'), hashtext('usage-1'));
             SELECT pg_advisory_lock(hashtext('h')::bigint << 32 | (hashtext('usage-1')::bigint & 4294967295));",
        )
        .unwrap();
    client.batch_execute("SET lock_timeout = '2s'").unwrap();
    let after: rust_decimal::Decimal =
        client.query_one("SELECT credits.charge('h', 1, idempotency_key => 'usage-1')", &[]).unwrap().get(0);
    assert_eq!(after, dec("99"), "charged without waiting for the squatter's locks");
    let replayed: rust_decimal::Decimal =
        client.query_one("SELECT credits.charge('h', 1, idempotency_key => 'usage-1')", &[]).unwrap().get(0);
    assert_eq!(replayed, dec("99"));
    assert_ledger_invariant(&mut client);
}
