//! Low-balance alerts: "set thresholds and alerts, don't wait for the 402".
//!
//! A change that takes the balance from at or above `low_balance_threshold` to below it
//! raises one alert, so each crossing alerts once. pg_credits' own charges detect the
//! crossing in the statement that moves the money; direct writes are caught by the guard
//! trigger. An alert is two things:
//! - a row of `credits.events`, written in the caller's transaction: durable, and what
//!   consumers that must not miss an alert read (with a cursor, see the README);
//! - a `NOTIFY credits_low_balance`, for listeners that want it at once.
//!
//! Both say what the account spends per day and when, at that pace, it reaches its floor,
//! from its last 1,000 charges at most: a bounded read in the transaction that crossed.
//!
//! The NOTIFY is not sent where the alert is found but queued here and sent just before
//! the transaction commits: PostgreSQL refuses to PREPARE a transaction that has executed
//! NOTIFY, and a charge must not make two-phase commit fail. A transaction that is
//! prepared sends no NOTIFY (its events row is its alert); an aborted transaction or
//! subtransaction sends none of what it queued, as NOTIFY itself would.

use crate::plans::{Statement, JSONB, NUMERIC, TEXT, TIMESTAMPTZ};
use pgrx::datetime::{TimestampWithTimeZone, ToIsoString};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};
use serde_json::json;
use std::cell::RefCell;
use std::ffi::c_void;

pub const CHANNEL: &str = "credits_low_balance";

/// The pace of account $1 as of $2, from its last 1,000 charges and captures at most (a
/// bounded read, inside the transaction that crossed): spent per day, and when its balance
/// $3 reaches its floor at that pace; NULL unless they span a second at least (a burst of
/// charges says nothing of a pace), 'infinity' beyond a thousand years.
static PACE: Statement = Statement {
    sql: concat!("WITH recent AS (
              SELECT amount, created_at FROM credits.ledger
               WHERE account = $1 AND kind IN ('charge', 'capture') ORDER BY created_at DESC LIMIT 1000),
          pace AS (
              SELECT -pg_catalog.sum(amount) AS spent,
                     CASE WHEN pg_catalog.max(created_at) - pg_catalog.min(created_at) >= '1 second'::pg_catalog.interval
                          THEN pg_catalog.date_part('epoch', $2 - pg_catalog.min(created_at))::pg_catalog.numeric END
                         AS seconds
                FROM recent),
          left_days AS (
              SELECT CASE WHEN pace.spent > 0 AND pace.seconds > 0
                          THEN GREATEST($3 - a.min_balance, 0) / (pace.spent / pace.seconds) / 86400 END AS days,
                     CASE WHEN pace.seconds > 0 THEN pace.spent / pace.seconds * 86400 END AS per_day
                FROM pace, credits.accounts a WHERE a.account = $1)
          SELECT pg_catalog.trim_scale(pg_catalog.round(per_day, 6)), ", runs_out_at!("$2", "days"), "
            FROM left_days"),
    args: &[TEXT, TIMESTAMPTZ, NUMERIC],
    generic: true,
};

static RECORD: Statement = Statement {
    sql: "INSERT INTO credits.events (kind, account, payload) VALUES ('low_balance', $1, $2) RETURNING id",
    args: &[TEXT, JSONB],
    generic: false,
};

thread_local! {
    /// The NOTIFY payloads this transaction will send at commit, each with the nesting
    /// level of the subtransaction that queued it.
    static QUEUED: RefCell<Vec<(i32, String)>> = const { RefCell::new(Vec::new()) };
}

/// Whether going from `before` to `after` crosses below the threshold.
pub fn crossed(before: &AnyNumeric, after: &AnyNumeric, threshold: Option<&AnyNumeric>) -> bool {
    threshold.is_some_and(|threshold| before >= threshold && after < threshold)
}

pub fn low_balance(client: &SpiClient<'_>, account: &str, balance: &AnyNumeric, threshold: &AnyNumeric) {
    let now = crate::input::timestamp(crate::input::now());
    let pace = PACE.first_row(client, &[account.into(), now.into(), balance.clone().into()]).expect("one row");
    let per_day: Option<AnyNumeric> = pace.nullable_column(1);
    let runs_out_at: Option<TimestampWithTimeZone> = pace.nullable_column(2);
    let mut payload = json!({
        "account": account,
        "balance": balance.to_string(),
        "threshold": threshold.to_string(),
        "spent_per_day": per_day.map(|rate| rate.to_string()),
        "runs_out_at": runs_out_at.map(|at| at.to_iso_string()),
    });
    let event: i64 = RECORD
        .first_value(client, &[account.into(), JsonB(payload.clone()).into()])
        .expect("INSERT … RETURNING returns the id");
    payload["event_id"] = event.into();
    // SAFETY: a plain read of this backend's transaction state.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    QUEUED.with_borrow_mut(|queued| queued.push((level, payload.to_string())));
}

/// Installs the transaction callbacks that send (or drop) the queued NOTIFYs.
pub fn register_callbacks() {
    // SAFETY: called once, from _PG_init; the callbacks live as long as the library.
    unsafe {
        pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    let queued = QUEUED.with_borrow_mut(std::mem::take);
    // PRE_COMMIT runs before PostgreSQL moves the transaction's NOTIFYs into the queue,
    // so these are delivered with it. Every other end (prepare, abort) drops them.
    if event == pg_sys::XactEvent::XACT_EVENT_PRE_COMMIT {
        for (_, payload) in queued {
            pgrx::direct_function_call_as_datum(
                pg_sys::pg_notify,
                &[CHANNEL.into_datum(), payload.into_datum()],
            );
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _subtransaction: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    // Called while the ending subtransaction is still the current one.
    let level = pg_sys::GetCurrentTransactionNestLevel();
    QUEUED.with_borrow_mut(|queued| match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => queued.retain(|(queued_at, _)| *queued_at < level),
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            for (queued_at, _) in queued.iter_mut().filter(|(queued_at, _)| *queued_at >= level) {
                *queued_at = level - 1;
            }
        }
        _ => {}
    });
}
