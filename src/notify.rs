//! Low-balance alerts: "set thresholds and alerts, don't wait for the 402".
//!
//! A change that takes the balance from at or above `low_balance_threshold` to below it
//! sends one NOTIFY on `credits_low_balance`, so each crossing notifies once. pg_credits'
//! own charges detect the crossing in the statement that moves the money; direct writes
//! are caught by the guard trigger. NOTIFY is transactional: a rolled-back change sends
//! nothing.

use crate::plans::{Statement, TEXT};
use pgrx::spi::SpiClient;
use pgrx::AnyNumeric;
use serde_json::json;

pub const CHANNEL: &str = "credits_low_balance";

static NOTIFY: Statement = Statement {
    sql: "SELECT pg_catalog.pg_notify($1, $2)",
    args: &[TEXT, TEXT],
};

/// Whether going from `before` to `after` crosses below the threshold.
pub fn crossed(before: &AnyNumeric, after: &AnyNumeric, threshold: Option<&AnyNumeric>) -> bool {
    threshold.is_some_and(|threshold| before >= threshold && after < threshold)
}

pub fn low_balance(client: &SpiClient<'_>, account: &str, balance: &AnyNumeric, threshold: &AnyNumeric) {
    let payload = json!({
        "account": account,
        "balance": balance.to_string(),
        "threshold": threshold.to_string(),
    })
    .to_string();
    NOTIFY.first_row(client, &[CHANNEL.into(), payload.as_str().into()]);
}
