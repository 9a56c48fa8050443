//! Low-balance alerts: "set thresholds and alerts, don't wait for the 402".
//!
//! The trigger's WHEN clause fires it only for an UPDATE that takes the balance from at
//! or above `low_balance_threshold` to below it, so each crossing notifies once. NOTIFY
//! is transactional: a rolled-back change sends nothing.

use pgrx::heap_tuple::PgHeapTuple;
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, AnyNumeric};
use serde_json::json;
use std::convert::Infallible;

pub const CHANNEL: &str = "credits_low_balance";

/// AFTER UPDATE of credits.accounts, when the balance crosses below the threshold.
#[pg_trigger]
fn notify_low_balance<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, Infallible> {
    let new = trigger.new().expect("an AFTER UPDATE row trigger has NEW");
    let text = |name: &str| -> String {
        new.get_by_name::<AnyNumeric>(name)
            .expect("credits.accounts has this column")
            .map(|amount| amount.to_string())
            .unwrap_or_default()
    };
    let account: String = new
        .get_by_name("account")
        .expect("credits.accounts has this column")
        .expect("account is NOT NULL");
    let payload = json!({
        "account": account,
        "balance": text("balance"),
        "threshold": text("low_balance_threshold"),
    })
    .to_string();
    Spi::run_with_args("SELECT pg_catalog.pg_notify($1, $2)", &[CHANNEL.into(), payload.into()])
        .expect("pg_notify accepts a payload under 8000 bytes");
    Ok(None)
}
