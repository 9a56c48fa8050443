//! pg_credits: prepaid credit balances enforced inside PostgreSQL.
//!
//! `credits.charge(account, cost)` runs in the caller's transaction; when the account
//! cannot pay, the statement fails with SQLSTATE PT402 and a JSON payload that any
//! application layer maps to HTTP 402. Layers, from the SQL surface down:
//! `ledger` (charge, recharge) and `accounts` (opening, balances, settings) are the
//! functions; `guard` and `notify` are the triggers that hold the rules for every
//! writer; `input` and `error` are the contract for arguments and failures; `plans`
//! keeps prepared SQL across calls.

use pgrx::prelude::*;

mod accounts;
mod error;
mod guard;
mod input;
mod ledger;
mod notify;
mod plans;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

::pgrx::pg_module_magic!();

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    error::register_settings();
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
