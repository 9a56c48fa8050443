//! Bank-style crash test: concurrent clients move credits while the postmaster is killed
//! with SIGKILL and restarted. After the last recovery every acknowledged operation is in
//! the ledger exactly once, no refused one is, every operation in flight at a kill is
//! settled exactly once by a retry with its idempotency key, and for every account
//! balance = sum(ledger) >= min_balance. Every tenth account is hot (four slots). Holds
//! are placed and then captured or released, promotional grants made, transfers sent and
//! charges refunded, all with keys: each applies once, every hold resolves at most once,
//! its held amount accounted for to the last cent, every transfer (keyed or not) nets to
//! zero between its two accounts, and no entry is refunded more than it took.
//!
//! It kills the cluster it runs on, so scripts/test.sh runs it alone: it needs
//! PG_CREDITS_DATA (the data directory) and PG_CREDITS_START (a command that starts the
//! cluster). CRASH_KILLS and CRASH_SECONDS_BETWEEN size the run (3 kills, 4 s by default;
//! scripts/crash-test.sh runs a longer one).

use pg_credits_client_tests::*;
use postgres::Client;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

const WORKERS: usize = 16;
const ACCOUNTS: u64 = 200;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Settled {
    /// The call returned its result: it committed.
    Committed,
    /// The server refused it (PT402 …): it must have left nothing.
    Refused,
}

/// One keyed operation and how it ended, as the client saw it.
struct Operation {
    account: String,
    key: String,
    settled: Settled,
    /// A connection was lost while it ran; a retry with the same key settled it.
    was_in_flight: bool,
}

#[derive(Default)]
struct Report {
    operations: Vec<Operation>,
    replays: usize,
    rolled_back_keys: Vec<(String, String)>,
}

/// A refusal by pg_credits itself; any other error (a lost connection, a FATAL from a
/// dying server, recovery in progress) leaves the call's outcome unknown.
fn is_refusal(error: &postgres::Error) -> bool {
    error.code().is_some_and(|c| c.code().starts_with("PT") || c.code().starts_with("22"))
}

/// Runs a keyed call until the server answers it (its result, or a refusal), connecting
/// again whenever the connection is lost mid-call, when its outcome is unknown until a
/// retry with the same keys settles it. The answer, and whether the call was in flight at
/// a kill; `None` once the test stops.
fn until_settled<T>(
    client: &mut Client,
    db: &str,
    stop: &AtomicBool,
    mut call: impl FnMut(&mut Client) -> Result<T, postgres::Error>,
) -> Option<(Result<T, postgres::Error>, bool)> {
    let mut was_in_flight = false;
    loop {
        match call(client) {
            Err(error) if !is_refusal(&error) => {
                was_in_flight = true;
                *client = reconnect(db, stop)?;
            }
            answer => return Some((answer, was_in_flight)),
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn reconnect(db: &str, stop: &AtomicBool) -> Option<Client> {
    loop {
        if let Ok(client) = config(db).connect_timeout(Duration::from_secs(2)).connect(postgres::NoTls) {
            return Some(client);
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn worker(id: usize, db: String, stop: Arc<AtomicBool>) -> Report {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (id as u64 + 1));
    let mut report = Report::default();
    let mut client = reconnect(&db, &stop).expect("the cluster is up at start");
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let account = format!("bank-{}", rng.next() % ACCOUNTS);
        // Never zero: a zero amount writes no entry by design, so it has no key to check.
        let amount = format!("{}.{:02}", rng.next() % 15, 1 + rng.next() % 99);
        let key = format!("w{id}-{n}");
        match rng.next() % 10 {
            // A charge inside a savepoint that is rolled back, then one that commits.
            1 => {
                let outcome = (|| -> Result<(), postgres::Error> {
                    let mut tx = client.transaction()?;
                    let mut sp = tx.savepoint("undone")?;
                    let _ = sp.query_one("SELECT credits.charge($1, 0.01, 'undone', $2)", &[&account, &format!("{key}-undone")]);
                    sp.rollback()?;
                    tx.commit()
                })();
                if outcome.is_ok() {
                    report.rolled_back_keys.push((account, format!("{key}-undone")));
                } else if outcome.as_ref().is_err_and(|e| !is_refusal(e)) {
                    client = match reconnect(&db, &stop) { Some(c) => c, None => break };
                }
                continue;
            }
            // A charge without a key (a hot account's goes to a slot directly): its outcome
            // is not tracked, only the invariants below.
            3 => {
                let result = client.query_one("SELECT credits.charge($1, 0.01)", &[&account]);
                if result.as_ref().is_err_and(|e| !is_refusal(e)) {
                    client = match reconnect(&db, &stop) { Some(c) => c, None => break };
                }
                continue;
            }
            // A batch of keyed charges (plain accounts' written directly, hot ones' through
            // their slots): each item's key applies once if the call committed, else never.
            4 => {
                let accounts: Vec<String> = (0..3).map(|_| format!("bank-{}", rng.next() % ACCOUNTS)).collect();
                let costs: Vec<String> = (0..3).map(|_| format!("{}.{:02}", rng.next() % 15, 1 + rng.next() % 99)).collect();
                let keys: Vec<String> = (0..3).map(|j| format!("{key}-b{j}")).collect();
                let batch = |c: &mut Client| {
                    c.query(
                        "SELECT status FROM credits.charge_many($1, $2::text[]::numeric[], $3) ORDER BY item",
                        &[&accounts, &costs, &keys],
                    )
                };
                let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, batch) else { return report };
                // A batch refuses its items one by one, in their rows, never the call.
                let rows = answer.expect("charge_many answers with one row per item");
                for ((account, key), row) in accounts.into_iter().zip(keys).zip(rows) {
                    let settled = if row.get::<_, &str>(0) == "failed" { Settled::Refused } else { Settled::Committed };
                    report.operations.push(Operation { account, key, settled, was_in_flight });
                }
                continue;
            }
            // A hold, then its capture (all of it) or release, each with its own key.
            5 => {
                let hold_key = format!("{key}-h");
                let place = |c: &mut Client| {
                    c.query_one("SELECT hold_id FROM credits.hold($1, $2::text::numeric, '1 hour', $3)", &[&account, &amount, &hold_key])
                };
                let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, place) else { return report };
                let Ok(row) = answer else {
                    report.operations.push(Operation { account, key: hold_key, settled: Settled::Refused, was_in_flight });
                    continue;
                };
                report.operations.push(Operation { account: account.clone(), key: hold_key, settled: Settled::Committed, was_in_flight });
                let hold_id: i64 = row.get(0);
                let settle_key = format!("{key}-s");
                let sql = if rng.next() % 2 == 0 {
                    "SELECT status FROM credits.capture($1, NULL, true, $2)"
                } else {
                    "SELECT status FROM credits.release($1, 'crash test', $2)"
                };
                let settle = |c: &mut Client| c.query_one(sql, &[&hold_id, &settle_key]);
                let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, settle) else { return report };
                let settled = if answer.is_ok() { Settled::Committed } else { Settled::Refused };
                report.operations.push(Operation { account, key: settle_key, settled, was_in_flight });
                continue;
            }
            // A promotional grant (refused, PT403, for a hot account).
            6 => {
                let grant_key = format!("{key}-g");
                let give = |c: &mut Client| {
                    c.query_one(
                        "SELECT grant_id FROM credits.grant($1, $2::text::numeric, 'promotional', 40, NULL,
                                                            now() + interval '1 hour', $3)",
                        &[&account, &amount, &grant_key],
                    )
                };
                let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, give) else { return report };
                let settled = if answer.is_ok() { Settled::Committed } else { Settled::Refused };
                report.operations.push(Operation { account, key: grant_key, settled, was_in_flight });
                continue;
            }
            // A charge, then a keyed refund of part of it: each applies once.
            9 => {
                let charge_key = format!("{key}-c");
                let charge = |c: &mut Client| {
                    c.query_one("SELECT credits.charge($1, $2::text::numeric, 'refunded', $3)", &[&account, &amount, &charge_key])
                };
                let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, charge) else { return report };
                if answer.is_err() {
                    report.operations.push(Operation { account, key: charge_key, settled: Settled::Refused, was_in_flight });
                    continue;
                }
                report.operations.push(Operation { account: account.clone(), key: charge_key.clone(), settled: Settled::Committed, was_in_flight });
                let refund_key = format!("{key}-rf");
                let give_back = |c: &mut Client| {
                    c.query_one(
                        "SELECT refund_id FROM credits.refund(
                             (SELECT id FROM credits.ledger WHERE account = $1 AND idempotency_key = $2), 0.01, $3)",
                        &[&account, &charge_key, &refund_key],
                    )
                };
                let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, give_back) else { return report };
                let settled = if answer.is_ok() { Settled::Committed } else { Settled::Refused };
                report.operations.push(Operation { account, key: refund_key, settled, was_in_flight });
                continue;
            }
            // A keyed transfer to another account (its key is the source's), or one without
            // a key (between plain accounts, written directly): both must net to zero.
            7 | 8 => {
                let to = format!("bank-{}", rng.next() % ACCOUNTS);
                if to == account {
                    continue;
                }
                if rng.next() % 2 == 0 {
                    let result = client.query_one("SELECT transfer_id FROM credits.transfer($1, $2, 0.01)", &[&account, &to]);
                    if result.as_ref().is_err_and(|e| !is_refusal(e)) {
                        client = match reconnect(&db, &stop) { Some(c) => c, None => break };
                    }
                    continue;
                }
                let transfer_key = format!("{key}-t");
                let send = |c: &mut Client| {
                    c.query_one(
                        "SELECT transfer_id FROM credits.transfer($1, $2, $3::text::numeric, $4)",
                        &[&account, &to, &amount, &transfer_key],
                    )
                };
                let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, send) else { return report };
                let settled = if answer.is_ok() { Settled::Committed } else { Settled::Refused };
                report.operations.push(Operation { account, key: transfer_key, settled, was_in_flight });
                continue;
            }
            // A direct adjustment through raw SQL: the guard records it.
            2 => {
                let result = client.execute(
                    "UPDATE credits.accounts SET balance = balance + 1 WHERE account = $1", &[&account]);
                if result.as_ref().is_err_and(|e| !is_refusal(e)) {
                    client = match reconnect(&db, &stop) { Some(c) => c, None => break };
                }
                continue;
            }
            _ => {}
        }
        let (function, key) = if rng.next() % 3 == 0 { ("recharge", format!("{key}-r")) } else { ("charge", key) };
        let sql = format!("SELECT credits.{function}($1, $2::text::numeric, 'crash test', $3)");
        let call = |c: &mut Client| c.query_one(sql.as_str(), &[&account, &amount, &key]);
        let Some((answer, was_in_flight)) = until_settled(&mut client, &db, &stop, call) else { return report };
        let settled = if answer.is_ok() { Settled::Committed } else { Settled::Refused };
        // Retrying an acknowledged operation with its key returns without applying it.
        if settled == Settled::Committed && rng.next() % 4 == 0 {
            if client.query_one(sql.as_str(), &[&account, &amount, &key]).is_ok() {
                report.replays += 1;
            }
        }
        report.operations.push(Operation { account, key, settled, was_in_flight });
    }
    report
}

fn kill_postmaster(data: &str) {
    let pid_file = std::fs::read_to_string(format!("{data}/postmaster.pid")).expect("postmaster.pid");
    let pid = pid_file.lines().next().expect("pid line").trim().to_string();
    let status = std::process::Command::new("kill").args(["-KILL", &pid]).status().expect("kill");
    assert!(status.success(), "SIGKILL postmaster {pid}");
}

/// Starts the cluster again and waits until it accepts connections; orphaned backends
/// keep the old shared memory until they notice the postmaster is gone, so retry.
fn restart_cluster(start: &str, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let _ = std::process::Command::new("bash").args(["-c", start]).status();
        if config(db).connect_timeout(Duration::from_secs(2)).connect(postgres::NoTls).is_ok() {
            return;
        }
        assert!(Instant::now() < deadline, "the cluster did not restart");
        thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn bank_survives_postmaster_kills() {
    let (Ok(data), Ok(start)) = (std::env::var("PG_CREDITS_DATA"), std::env::var("PG_CREDITS_START")) else {
        panic!("PG_CREDITS_DATA and PG_CREDITS_START are required: run it through scripts/test.sh");
    };
    let kills = env_number("CRASH_KILLS", 3);
    let between = Duration::from_secs(env_number("CRASH_SECONDS_BETWEEN", 4));
    let db = fresh_database("crash");
    let mut setup = connect(&db);
    setup
        .batch_execute(&format!(
            "SELECT credits.create_account('bank-' || i, 100, min_balance => (i % 3) * -10)
               FROM generate_series(0, {}) i;
             -- Every tenth account is hot.
             SELECT credits.set_slots('bank-' || i, 4) FROM generate_series(0, {}, 10) i;",
            ACCOUNTS - 1,
            ACCOUNTS - 1
        ))
        .unwrap();
    drop(setup);

    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|id| {
            let (db, stop) = (db.clone(), stop.clone());
            thread::spawn(move || worker(id, db, stop))
        })
        .collect();
    for _ in 0..kills {
        thread::sleep(between);
        kill_postmaster(&data);
        restart_cluster(&start, &db);
    }
    thread::sleep(between);
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<Report> = workers.into_iter().map(|w| w.join().expect("worker")).collect();

    let mut client = connect(&db);
    let counts: HashMap<(String, String), i64> = client
        .query("SELECT account, idempotency_key, count(*) FROM credits.ledger
                 WHERE idempotency_key IS NOT NULL GROUP BY 1, 2", &[])
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    let count = |account: &str, key: &str| *counts.get(&(account.to_string(), key.to_string())).unwrap_or(&0);
    let mut violations = Vec::new();
    let (mut committed, mut refused, mut in_flight, mut replays, mut undone) = (0, 0, 0, 0, 0);
    for report in &reports {
        replays += report.replays;
        for op in &report.operations {
            let expected = if op.settled == Settled::Committed { 1 } else { 0 };
            match op.settled {
                Settled::Committed => committed += 1,
                Settled::Refused => refused += 1,
            }
            in_flight += op.was_in_flight as usize;
            if count(&op.account, &op.key) != expected {
                violations.push(format!("{} {} {:?}: {} entries", op.account, op.key, op.settled, count(&op.account, &op.key)));
            }
        }
        for (account, key) in &report.rolled_back_keys {
            undone += 1;
            if count(account, key) != 0 {
                violations.push(format!("{account} {key}: a rolled-back savepoint left an entry"));
            }
        }
    }
    let broken: i64 = client
        .query_one(
            "SELECT count(*) FROM credits.accounts a
              WHERE credits.balance(a.account) <> (SELECT coalesce(sum(amount), 0) FROM credits.ledger l WHERE l.account = a.account)
                 OR a.balance < a.min_balance",
            &[],
        )
        .unwrap()
        .get(0);
    if broken > 0 {
        violations.push(format!("{broken} accounts break balance = sum(ledger) >= min_balance"));
    }
    // No entry was refunded more than it took.
    let over_refunded: i64 = client
        .query_one(
            "SELECT count(*) FROM credits.ledger c
              WHERE c.kind IN ('charge', 'capture')
                AND (SELECT coalesce(sum(r.amount), 0) FROM credits.ledger r
                      WHERE r.account = c.account AND r.refund_of = c.id AND r.kind = 'refund') > -c.amount",
            &[],
        )
        .unwrap()
        .get(0);
    if over_refunded > 0 {
        violations.push(format!("{over_refunded} entries refunded more than they took"));
    }
    // Every transfer moved between two accounts and netted to zero.
    let unbalanced: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT transfer_id FROM credits.ledger WHERE transfer_id IS NOT NULL GROUP BY 1
                                    HAVING sum(amount) <> 0 OR count(DISTINCT account) <> 2) t",
            &[],
        )
        .unwrap()
        .get(0);
    if unbalanced > 0 {
        violations.push(format!("{unbalanced} transfers that do not net to zero between two accounts"));
    }
    // Every hold: what its entries took off held is exactly what it no longer reserves
    // (resolved once: a second capture or release would take more), and its captured and
    // released parts add up to at most its amount.
    let unresolved: i64 = client
        .query_one(
            "SELECT count(*) FROM credits.holds h
              WHERE (SELECT sum(held_amount) FROM credits.ledger l WHERE l.account = h.account AND l.hold_id = h.hold_id)
                    <> CASE WHEN h.status = 'active' THEN (SELECT coalesce(sum(p), 0) FROM unnest(h.parts) p) ELSE 0 END
                 OR h.captured + h.released > h.amount
                 OR (h.status IN ('captured', 'released') AND h.captured + h.released <> h.amount)",
            &[],
        )
        .unwrap()
        .get(0);
    if unresolved > 0 {
        violations.push(format!("{unresolved} holds whose entries disagree with what they reserve"));
    }
    assert_ledger_invariant(&mut client);
    client.query_one("SELECT credits.recharge('bank-0', 1)", &[]).expect("the server accepts new work");
    eprintln!(
        "crash test: {} operations ({committed} committed, {refused} refused, {in_flight} in flight at a kill \
         and settled by retry), {replays} replays, {undone} savepoints rolled back, {kills} crashes survived, \
         {} violations",
        committed + refused,
        violations.len()
    );
    assert!(violations.is_empty(), "violations: {violations:#?}");
    assert!(committed > 100 && refused > 0, "the workload ran: {committed} committed, {refused} refused");
}
