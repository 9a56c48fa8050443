//! pg_credits: prepaid credit balances enforced inside PostgreSQL.
//!
//! `credits.charge(account, cost)` runs in the caller's transaction; when the account
//! cannot pay, the statement fails with SQLSTATE PT402 and a JSON payload that any
//! application layer maps to HTTP 402. The README's "Layout" lists the modules from the
//! bottom up: the decision core (`decide`), the writers that carry its decisions out (SQL
//! in `ledger` and `pools`, direct in `direct`, slots in `hot`), and the SQL surface on
//! top; `error` is the one place every SQLSTATE and payload is built.

use pgrx::prelude::*;

/// SQL: whether the locked account row `a` holds the account's whole balance, as an
/// entry's `balance_after` needs. A plain account's does; a hot account's only while its
/// slots are empty, and empty in a snapshot taken under the row lock is empty for certain:
/// while the row is locked, charges take from the slots and nothing adds to them.
macro_rules! row_is_whole {
    () => {
        "(a.slots = 0 OR NOT EXISTS (SELECT FROM credits.account_slots s WHERE s.account = a.account AND s.available <> 0))"
    };
}

/// SQL: when, from `$now`, a balance runs out in `$days` days (a numeric; NULL: never
/// known), as `runway` and the low-balance alert say it: 'infinity' beyond a thousand
/// years, which an interval cannot hold.
macro_rules! runs_out_at {
    ($now:literal, $days:literal) => {
        concat!(
            "CASE WHEN ", $days, " > 365250 THEN 'infinity'::pg_catalog.timestamptz ELSE ", $now,
            " + pg_catalog.make_interval(secs => (", $days, " * 86400)::pg_catalog.float8) END"
        )
    };
}

mod accounts;
mod batch;
mod charge;
mod compat;
mod decide;
mod direct;
mod error;
mod grants;
mod guard;
mod holds;
mod hot;
mod input;
mod ledger;
mod limits;
mod money;
mod movement;
mod notify;
mod plans;
mod pools;
mod refunds;
mod transfers;
mod usage;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    error::register_settings();
    notify::register_callbacks();
}
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
