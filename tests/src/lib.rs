//! Harness for the client-side tests: each test gets a fresh database with the extension,
//! on the cluster the scripts started (PGHOST, PGPORT, PGUSER from the environment).

use postgres::error::DbError;
use postgres::{Client, Config, NoTls};
use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;

pub fn config(database: &str) -> Config {
    let mut config = Config::new();
    config
        .host(&std::env::var("PGHOST").unwrap_or_else(|_| "127.0.0.1".into()))
        .port(std::env::var("PGPORT").ok().and_then(|p| p.parse().ok()).unwrap_or(28815))
        .user(&std::env::var("PGUSER").unwrap_or_else(|_| "postgres".into()))
        .dbname(database);
    config
}

/// How every test database is made: with a linguistic collation as its default, the kind
/// users' databases have, so nothing passes only because text compares byte by byte. ICU
/// en-US where the server has ICU (Debian's 15); the relocatable 16-18 builds have none,
/// and get glibc's en_US.UTF-8 (which the scripts generate), linguistic all the same.
const CREATE_DATABASE_OPTIONS: &str = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'";
const CREATE_DATABASE_WITHOUT_ICU: &str = "TEMPLATE template0 LOCALE_PROVIDER libc LOCALE 'en_US.UTF-8'";

/// `CREATE DATABASE name` with a linguistic default collation (see CREATE_DATABASE_OPTIONS).
pub fn create_database(admin: &mut Client, name: &str) {
    if let Err(error) = admin.batch_execute(&format!("CREATE DATABASE {name} {CREATE_DATABASE_OPTIONS}")) {
        let no_icu = error.as_db_error().is_some_and(|e| e.code().code() == "0A000");
        assert!(no_icu, "CREATE DATABASE {name}: {error}");
        admin.batch_execute(&format!("CREATE DATABASE {name} {CREATE_DATABASE_WITHOUT_ICU}")).unwrap();
    }
}

/// A database of its own for one test, with pg_credits installed; returns its name.
pub fn fresh_database(test: &str) -> String {
    let name = format!("t_{test}");
    let mut admin = config("postgres").connect(NoTls).expect("the test cluster is running");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    create_database(&mut admin, &name);
    connect(&name).batch_execute("CREATE EXTENSION pg_credits").unwrap();
    name
}

pub fn connect(database: &str) -> Client {
    config(database).connect(NoTls).expect("connects to the test cluster")
}

pub fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal literal")
}

/// The server's error from a failed statement; panics if it succeeded.
pub fn db_error<T: std::fmt::Debug>(result: Result<T, postgres::Error>) -> DbError {
    result.expect_err("the statement must fail").as_db_error().expect("a server error").clone()
}

/// The error's DETAIL parsed as JSON; panics unless it is exactly one JSON object.
pub fn payload(error: &DbError) -> Value {
    let detail = error.detail().expect("the error has a DETAIL");
    let value: Value = serde_json::from_str(detail).expect("DETAIL is valid JSON");
    assert!(value.is_object(), "DETAIL is a JSON object: {detail}");
    value
}

/// For every account: balance = sum(ledger.amount), held = sum(ledger.held_amount) = what
/// its active holds still reserve, and balance - held >= min_balance, a hot account's
/// slots included (the account row itself never goes below the floor either); an account
/// without grants has credits.balance() = its whole balance; one with grants has its
/// pools add up to its balance, and each grant remaining + held = the sum of its entries.
pub fn assert_ledger_invariant(client: &mut Client) {
    let broken: Vec<String> = client
        .query(
            "WITH whole AS (
                 SELECT a.account, a.balance AS row_balance, a.min_balance, a.held, a.has_grants,
                        a.balance + coalesce((SELECT sum(s.available) FROM credits.account_slots s
                                               WHERE s.account = a.account), 0) AS balance
                   FROM credits.accounts a)
             SELECT w.account FROM whole w
              WHERE w.balance <> coalesce((SELECT sum(l.amount) FROM credits.ledger l
                                            WHERE l.account = w.account), 0)
                 OR w.held <> coalesce((SELECT sum(l.held_amount) FROM credits.ledger l
                                         WHERE l.account = w.account), 0)
                 OR w.held <> coalesce((SELECT sum(p) FROM credits.holds h, unnest(h.parts) p
                                         WHERE h.account = w.account AND h.status = 'active'), 0)
                 OR w.balance - w.held < w.min_balance OR w.row_balance - w.held < w.min_balance
                 OR (NOT w.has_grants AND w.balance <> credits.balance(w.account))
                 OR (w.has_grants AND w.balance <> (SELECT sum(g.remaining + g.held) FROM credits.account_grants g
                                                     WHERE g.account = w.account))
                 OR EXISTS (SELECT FROM credits.account_grants g
                             WHERE g.account = w.account AND g.grant_id <> 0
                               AND (g.remaining < 0 OR g.held < 0
                                    OR g.remaining + g.held <> coalesce((SELECT sum(l.amount) FROM credits.ledger l
                                                                         WHERE l.account = g.account
                                                                           AND l.grant_id = g.grant_id), 0)))",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(broken.is_empty(), "accounts whose balance, holds or grants disagree with the ledger or the floor: {broken:?}");
}

pub fn balance(client: &mut Client, account: &str) -> Decimal {
    client.query_one("SELECT credits.balance($1)", &[&account]).unwrap().get(0)
}

pub fn available(client: &mut Client, account: &str) -> Decimal {
    client.query_one("SELECT credits.available($1)", &[&account]).unwrap().get(0)
}
