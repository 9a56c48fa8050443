//! Holds: reserve now, settle later (`hold`, `capture`, `release`, `extend_hold`,
//! `expire_holds`).
//!
//! A hold is decided like a charge (the same draw over the same pools, in burn order) but
//! moves nothing out of the balance: what it draws is reserved (`held`) and counts
//! against every later charge, hold and direct write until it is captured, released or
//! expires. Expiry is decided under the account lock by `clock_timestamp()`, so a hold
//! past its time stops counting at once; its `expiry` entry is written by the account's
//! next writer or by `expire_holds`. A hold resolves once: a second capture or release is
//! PT409 (a replay by idempotency key excepted), one after expiry PT410.
//!
//! Hot accounts: a hold is decided on the locked account row, with money the row has or
//! moves to it from one slot no other transaction is charging (the slots are gathered
//! only when no single one has it); the held money stays on the row, so a capture takes
//! it from there without touching a slot. Their entries have no `balance_after` while
//! the slots hold money, as a slot charge's has none.

use crate::accounts::{self, Account};
use crate::decide::{self, Hold, HoldRefusal, HoldStatus, Overage};
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result, MAX_HOLD_TTL};
use crate::input::{self, Amount};
use crate::money::canonical;
use crate::plans::{OwnWrite, Statement, INT4, INT8, INT8_ARRAY, JSONB, NUMERIC, NUMERIC_ARRAY, TEXT, TIMESTAMPTZ};
use crate::pools::{self, GiveBack, Spend};
use crate::{direct, hot, notify};
use pgrx::datetime::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, IntoDatum, JsonB};

type Placed = (i64, AnyNumeric, Option<TimestampWithTimeZone>, AnyNumeric);
type Resolved = (i64, AnyNumeric, AnyNumeric, String, AnyNumeric);

/// Reserves `amount` of the account for `ttl` (NULL: until captured or released).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
fn hold(
    account: Option<&str>,
    amount: Option<AnyNumeric>,
    ttl: default!(Option<Interval>, "'15 minutes'"),
    idempotency_key: default!(Option<&str>, "NULL"),
    reason: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(hold_id, i64),
        name!(amount, AnyNumeric),
        name!(expires_at, Option<TimestampWithTimeZone>),
        name!(available, AnyNumeric),
    ),
> {
    TableIterator::once(unwrap_or_raise(place(account, amount, ttl, idempotency_key, reason, metadata)))
}

/// Captures `amount` of the hold (NULL: all it still reserves); with `final` the rest is
/// released in the same statement. More than it reserves is PT422, unless
/// `overage => 'charge'` charges the excess like a plain charge. Declared by hand: pgrx
/// would name the argument `r#final` (`final` is a Rust keyword).
#[pg_extern(sql = r#"
CREATE FUNCTION @extschema@."capture"(
    "hold_id" bigint,
    "amount" numeric DEFAULT NULL,
    "final" boolean DEFAULT true,
    "idempotency_key" text DEFAULT NULL,
    "reason" text DEFAULT NULL,
    "metadata" jsonb DEFAULT NULL,
    "overage" text DEFAULT 'refuse'
) RETURNS TABLE ("hold_id" bigint, "captured" numeric, "released" numeric, "status" text, "balance" numeric)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'capture_wrapper';
"#)]
fn capture(
    hold_id: Option<i64>,
    amount: default!(Option<AnyNumeric>, "NULL"),
    r#final: default!(Option<bool>, true),
    idempotency_key: default!(Option<&str>, "NULL"),
    reason: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
    overage: default!(Option<&str>, "'refuse'"),
) -> TableIterator<
    'static,
    (
        name!(hold_id, i64),
        name!(captured, AnyNumeric),
        name!(released, AnyNumeric),
        name!(status, String),
        name!(balance, AnyNumeric),
    ),
> {
    TableIterator::once(unwrap_or_raise(settle(hold_id, amount, r#final, idempotency_key, reason, metadata, overage)))
}

/// Releases all the hold still reserves.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
fn release(
    hold_id: Option<i64>,
    reason: default!(Option<&str>, "NULL"),
    idempotency_key: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(hold_id, i64),
        name!(captured, AnyNumeric),
        name!(released, AnyNumeric),
        name!(status, String),
        name!(balance, AnyNumeric),
    ),
> {
    let zero = Some(AnyNumeric::from(0));
    TableIterator::once(unwrap_or_raise(settle(hold_id, zero, Some(true), idempotency_key, reason, None, Some("refuse"))))
}

/// Gives an active hold a new expiry, `ttl` from now (NULL: none); returns it.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn extend_hold(hold_id: Option<i64>, ttl: Option<Interval>) -> Option<TimestampWithTimeZone> {
    unwrap_or_raise(extend(hold_id, ttl))
}

/// Writes the expiry of up to about `max_rows` holds past their time (for pg_cron or a
/// loop); returns how many expired.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn expire_holds(max_rows: default!(Option<i32>, 1000)) -> i32 {
    pools::expire_due(&DUE_ACCOUNTS, &DUE_OF, max_rows)
}

fn place(
    account: Option<&str>,
    amount: Option<AnyNumeric>,
    ttl: Option<Interval>,
    idempotency_key: Option<&str>,
    reason: Option<&str>,
    metadata: Option<JsonB>,
) -> Result<Placed> {
    let account = input::account(account)?;
    let amount = positive("amount", amount)?;
    let idempotency_key = input::idempotency_key(idempotency_key)?;
    let reason = input::reason(reason)?;
    let metadata = input::metadata(metadata)?;
    let now = input::now();
    let expires_at = expiry(now, ttl)?;
    let spend = Spend { account, reason, idempotency_key, metadata: metadata.as_ref(), hold_id: None };
    if hot::known_slots(account).is_none() && !pools::known_to_have_grants(account) {
        if let Some(placed) = direct::hold(&spend, &amount.value, expires_at) {
            return Ok(placed_row(&amount.value, placed));
        }
    }
    Spi::connect_mut(|client| {
        let row = accounts::lock(client, account).ok_or_else(|| not_found(account))?;
        place_locked(client, &spend, row, &amount.value, expires_at, now)
    })
}

fn place_locked(
    client: &SpiClient<'_>,
    spend: &Spend<'_>,
    row: Account,
    amount: &AnyNumeric,
    expires_at: TimestampWithTimeZone,
    now: decide::Time,
) -> Result<Placed> {
    let account = spend.account;
    if let Some(key) = spend.idempotency_key {
        if let Some(original) = pools::keyed(client, account, key) {
            original.same(account, key, "hold", amount.clone())?;
            let expires_at: Option<String> = original.field("expires_at");
            return Ok((
                original.field("hold_id").expect("a hold's outcome has its id"),
                amount.clone(),
                expires_at.and_then(|text| text.parse().ok()).filter(|at: &TimestampWithTimeZone| at.is_finite()),
                original.field("available").expect("a hold's outcome has what was available"),
            ));
        }
    }
    let (row, figures) = pools::settled(client, account, row, now);
    let (row, figures, share) = hot::for_hold(client, account, row, figures, amount, now);
    let placed = pools::hold(client, spend, &row, &figures, amount, expires_at, now, &share.outside());
    share.written(client, account, row.slots);
    Ok(placed_row(amount, placed?))
}

fn placed_row(amount: &AnyNumeric, placed: pools::Placed) -> Placed {
    (placed.hold_id, amount.clone(), Some(placed.expires_at).filter(|at| at.is_finite()), placed.available)
}

#[allow(clippy::too_many_arguments)]
fn settle(
    hold_id: Option<i64>,
    amount: Option<AnyNumeric>,
    last: Option<bool>,
    idempotency_key: Option<&str>,
    reason: Option<&str>,
    metadata: Option<JsonB>,
    overage: Option<&str>,
) -> Result<Resolved> {
    let hold_id = hold_id.ok_or_else(|| CreditsError::bad_input(BadInput::Null, "hold_id", "must not be NULL"))?;
    let amount = amount.map(|amount| input::amount("amount", Some(amount))).transpose()?;
    let last = last.ok_or_else(|| CreditsError::bad_input(BadInput::Null, "final", "must not be NULL"))?;
    let idempotency_key = input::idempotency_key(idempotency_key)?;
    let reason = input::reason(reason)?;
    let metadata = input::metadata(metadata)?;
    let overage = overage
        .and_then(Overage::parse)
        .ok_or_else(|| CreditsError::bad_input(BadInput::Invalid, "overage", "must be 'refuse' or 'charge'"))?;
    let now = input::now();
    let releasing = amount.as_ref().is_some_and(Amount::is_zero) && last;
    let request = direct::Capture {
        hold_id,
        amount: amount.as_ref().map(|amount| &amount.value),
        last,
        releasing,
        idempotency_key,
        reason,
        metadata: metadata.as_ref(),
        now,
    };
    if let Some(done) = direct::capture(&request) {
        if let Some(threshold) = &done.crossed_threshold {
            Spi::connect_mut(|client| notify::low_balance(client, &done.account, &done.balance, threshold));
        }
        return Ok((hold_id, done.captured, done.released, done.status.name().to_owned(), done.balance));
    }
    Spi::connect_mut(|client| {
        let (account, row) = accounts::lock_holding(client, hold_id).ok_or(CreditsError::HoldNotFound { hold_id })?;
        let account = account.as_str();
        let spend = Spend { account, reason, idempotency_key, metadata: metadata.as_ref(), hold_id: Some(hold_id) };
        settle_locked(client, &spend, row, amount.as_ref(), last, overage, now)
    })
}

fn settle_locked(
    client: &SpiClient<'_>,
    spend: &Spend<'_>,
    row: Account,
    amount: Option<&Amount>,
    last: bool,
    overage: Overage,
    now: decide::Time,
) -> Result<Resolved> {
    let account = spend.account;
    let hold_id = spend.hold_id.expect("a capture names its hold");
    let (row, figures) = pools::settled(client, account, row, now);
    let releasing = amount.is_some_and(Amount::is_zero) && last;
    let kind = if releasing { "release" } else { "capture" };
    if let Some(key) = spend.idempotency_key {
        if let Some(original) = pools::keyed(client, account, key) {
            // The same call again: the same kind, the same hold, and the amount it
            // captured (any, when it asked for all that remained).
            let same = original.kind == kind
                && original.field::<i64>("hold_id") == Some(hold_id)
                && amount.is_none_or(|amount| original.field::<AnyNumeric>("captured") == Some(amount.value.clone()));
            if !same {
                let asked = amount.map_or_else(|| AnyNumeric::from(0), |amount| -amount.value.clone());
                return Err(original.conflict(account, key, kind, asked));
            }
            return Ok((
                hold_id,
                original.field("captured").expect("captured"),
                original.field("released").expect("released"),
                original.field("status").expect("status"),
                original.field("balance").expect("balance"),
            ));
        }
    }
    let hold = read_hold(client, account, hold_id);
    let decided = hold
        .capture(amount.map(|amount| &amount.value), last, overage, now)
        .map_err(|refusal| refused(hold_id, refusal, amount.map(|amount| &amount.value)))?;
    let (row, figures, share) = hot::for_capture(client, account, row, figures, &decided.excess, now);
    let result = write_capture(client, spend, &row, &figures, &share, decided, releasing, now);
    share.written(client, account, row.slots);
    result
}

/// Writes a decided capture (or release) of the locked account `row`, whose `share` of
/// the balance it holds, and returns its outcome.
#[allow(clippy::too_many_arguments)]
fn write_capture(
    client: &SpiClient<'_>,
    spend: &Spend<'_>,
    row: &Account,
    figures: &decide::Figures<AnyNumeric>,
    share: &hot::RowShare,
    decided: decide::Captured<AnyNumeric>,
    releasing: bool,
    now: decide::Time,
) -> Result<Resolved> {
    let account = spend.account;
    let hold_id = spend.hold_id.expect("a capture names its hold");
    let kind = if releasing { "release" } else { "capture" };
    if decided.excess > AnyNumeric::from(0) {
        let excess_spend = Spend { idempotency_key: None, ..*spend };
        pools::charge(client, &excess_spend, row, figures, &decided.excess, now)?;
    }
    let captured = canonical(decided.captured());
    let released = canonical(decided.released_total());
    let pending = canonical(row.balance.clone() - figures.balance.clone());
    // A release's entry is the give-back's, with the key; a capture's are its own, the
    // first also releasing the rest of a final capture.
    if releasing {
        let keyed = pools::ReleaseKey {
            key: spend.idempotency_key,
            reason: spend.reason,
            outcome: serde_json::json!({
                "amount": 0, "hold_id": hold_id, "captured": 0, "released": crate::direct::json_number(&released), "status": decided.status.name(),
            }),
            pending: canonical(pending.clone() - share.outside()),
        };
        pools::give_back(client, account, hold_id, &decided.released, GiveBack::Release(keyed));
    } else if !decided.released.is_empty() {
        pools::give_back(client, account, hold_id, &decided.released, GiveBack::RestOfCapture);
    }
    let (still_pools, still_parts) = pools::columns(&decided.still_held);
    let (taken_pools, taken_parts) = pools::columns(&decided.taken);
    let _own = OwnWrite::begin(account);
    let written = RESOLVE
        .first_row(
            client,
            &[
                account.into(),
                hold_id.into(),
                taken_pools.into(),
                taken_parts.into(),
                captured.clone().into(),
                released.clone().into(),
                decided.status.name().into(),
                still_pools.into(),
                still_parts.into(),
                input::timestamp(now).into(),
                kind.into(),
                spend.reason.into(),
                spend.idempotency_key.into(),
                spend.metadata.map(|m| JsonB(m.0.clone())).into(),
                pending.clone().into(),
                share.outside().into(),
            ],
        )
        .expect("the locked hold");
    let stored: AnyNumeric = written.column(1);
    if let Some(threshold) = written.nullable_column::<AnyNumeric>(2) {
        notify::low_balance(client, account, &stored, &threshold);
    }
    Ok((hold_id, captured, released, decided.status.name().to_owned(), canonical(stored - pending)))
}

fn extend(hold_id: Option<i64>, ttl: Option<Interval>) -> Result<Option<TimestampWithTimeZone>> {
    let hold_id = hold_id.ok_or_else(|| CreditsError::bad_input(BadInput::Null, "hold_id", "must not be NULL"))?;
    let now = input::now();
    let expires_at = expiry(now, ttl)?;
    Spi::connect_mut(|client| {
        let (account, row) = accounts::lock_holding(client, hold_id).ok_or(CreditsError::HoldNotFound { hold_id })?;
        pools::settled(client, &account, row, now);
        read_hold(client, &account, hold_id).resolvable(now).map_err(|refusal| refused(hold_id, refusal, None))?;
        let _own = OwnWrite::begin(&account);
        EXTEND.first_row(client, &[account.as_str().into(), hold_id.into(), expires_at.into()]);
        Ok(Some(expires_at).filter(|at| at.is_finite()))
    })
}

/// The hold's state, read under its account's lock.
fn read_hold(client: &SpiClient<'_>, account: &str, hold_id: i64) -> Hold<AnyNumeric> {
    let row = READ_HOLD.first_row(client, &[account.into(), hold_id.into()]).expect("the hold of this account");
    let status: String = row.column(1);
    Hold {
        status: HoldStatus::parse(&status).expect("a known status"),
        expires_at: input::time(row.column(2)),
        parts: pools::parts_of(row.column(3), row.column(4)),
    }
}

/// The error of a refused capture (of `asked`), release or extension.
fn refused(hold_id: i64, refusal: HoldRefusal<AnyNumeric>, asked: Option<&AnyNumeric>) -> CreditsError {
    match refusal {
        HoldRefusal::Finalized(status) => CreditsError::HoldFinalized { hold_id, status: status.name() },
        HoldRefusal::Expired => CreditsError::HoldExpired { hold_id },
        HoldRefusal::Exceeds { remaining } => CreditsError::CaptureExceedsHold {
            hold_id,
            remaining: canonical(remaining),
            amount: asked.cloned().expect("only a capture of an amount exceeds its hold"),
        },
    }
}

/// When a hold made now with `ttl` expires: positive, at most `credits.max_hold_ttl`
/// (unless that is 0); NULL never.
fn expiry(now: decide::Time, ttl: Option<Interval>) -> Result<TimestampWithTimeZone> {
    let Some(ttl) = ttl else { return Ok(TimestampWithTimeZone::positive_infinity()) };
    let zero = Interval::from_micros(0);
    if interval_cmp(&ttl, &zero) <= 0 {
        return Err(CreditsError::bad_input(BadInput::Invalid, "ttl", "must be positive (NULL: no expiry)"));
    }
    let max = MAX_HOLD_TTL.get();
    if max > 0 && interval_cmp(&ttl, &Interval::from_seconds(f64::from(max))) > 0 {
        return Err(CreditsError::bad_input(
            BadInput::OutOfRange,
            "ttl",
            format!("must be at most credits.max_hold_ttl ({max} seconds)"),
        ));
    }
    // SAFETY: timestamptz + interval, PostgreSQL's own operator (months and days in the
    // session's time zone, as SQL would add them).
    let at: TimestampWithTimeZone = unsafe {
        pgrx::direct_function_call(pg_sys::timestamptz_pl_interval, &[input::timestamp(now).into_datum(), ttl.into_datum()])
    }
    .expect("a timestamp");
    Ok(at)
}

fn interval_cmp(a: &Interval, b: &Interval) -> i32 {
    // SAFETY: interval_cmp compares two intervals.
    unsafe { pgrx::direct_function_call(pg_sys::interval_cmp, &[(*a).into_datum(), (*b).into_datum()]) }
        .expect("a comparison")
}

fn positive(field: &'static str, value: Option<AnyNumeric>) -> Result<Amount> {
    let amount = input::amount(field, value)?;
    if amount.is_zero() {
        return Err(CreditsError::bad_input(BadInput::Invalid, field, "must be positive"));
    }
    Ok(amount)
}

fn not_found(account: &str) -> CreditsError {
    CreditsError::AccountNotFound { account: account.to_owned() }
}

static READ_HOLD: Statement = Statement {
    sql: "SELECT status, expires_at, pools, parts FROM credits.holds WHERE account = $1 AND hold_id = $2",
    args: &[TEXT, INT8],
    generic: true,
};

static DUE_OF: Statement = Statement {
    sql: "SELECT pg_catalog.count(*) FROM credits.holds WHERE account = $1 AND status = 'active' AND expires_at <= $2",
    args: &[TEXT, TIMESTAMPTZ],
    generic: true,
};

static DUE_ACCOUNTS: Statement = Statement {
    sql: "SELECT DISTINCT account FROM (
              SELECT account FROM credits.holds WHERE status = 'active' AND expires_at <= $1
               ORDER BY expires_at LIMIT $2) due",
    args: &[TIMESTAMPTZ, INT4],
    generic: true,
};

/// The account row is written too: every change to a hold comes with one (see `direct`).
static EXTEND: Statement = Statement {
    sql: "WITH touched AS (UPDATE credits.accounts SET updated_at = pg_catalog.now() WHERE account = $1)
          UPDATE credits.holds SET expires_at = $3 WHERE account = $1 AND hold_id = $2 RETURNING expires_at",
    args: &[TEXT, INT8, TIMESTAMPTZ],
    generic: true,
};

/// The capture of a locked hold: $3/$4 the parts taken (in burn order), $5/$6 what this
/// call captured and released in all, $7 the hold's status after, $8/$9 what it still
/// reserves, $10 now, $11 the entry kind, $12-$14 reason, key and metadata, $15 grants
/// not in effect yet, $16 what a hot account's slots hold outside the row. A capture
/// writes one entry per part taken (one of 0 when none), the key, the outcome and the
/// release of the rest on the first; a release writes none here (its give-back entry is
/// its own). Written after the give-back and the excess, so the outcome's balance is the
/// final one.
static RESOLVE: Statement = Statement {
    sql: concat!("WITH d AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($3::bigint[]), pg_catalog.unnest($4::numeric[])) WITH ORDINALITY AS d(pool, amount, n)),
          parts AS (SELECT pool, amount, n FROM d
                    UNION ALL SELECT NULL, 0, 1 WHERE pg_catalog.cardinality($3) = 0 AND $11 = 'capture'),
          taken AS (
              UPDATE credits.account_grants g SET held = pg_catalog.trim_scale(g.held - d.amount),
                     closed = CASE WHEN g.closed IS NULL AND g.grant_id <> 0 AND g.remaining = 0 AND g.held = d.amount
                                   THEN 'depleted' ELSE g.closed END,
                     closed_at = CASE WHEN g.closed IS NULL AND g.grant_id <> 0 AND g.remaining = 0 AND g.held = d.amount
                                      THEN $10 ELSE g.closed_at END
                FROM d WHERE g.account = $1 AND g.grant_id = d.pool AND g.grant_id = ANY ($3)),
          total AS (SELECT coalesce(pg_catalog.sum(amount), 0) AS amount FROM d),
          moved AS (
              UPDATE credits.accounts a SET balance = pg_catalog.trim_scale(a.balance - total.amount),
                                            held = pg_catalog.trim_scale(a.held - total.amount),
                                            updated_at = pg_catalog.now()
                FROM total WHERE a.account = $1
           RETURNING a.balance + $16 AS balance, ", row_is_whole!(), " AS whole,
                     CASE WHEN a.balance + $16 < a.low_balance_threshold
                           AND a.balance + $16 + total.amount >= a.low_balance_threshold
                          THEN a.low_balance_threshold END AS crossed),
          resolved AS (
              UPDATE credits.holds h SET captured = pg_catalog.trim_scale(h.captured + $5),
                                         released = pg_catalog.trim_scale(h.released + $6),
                                         status = $7, pools = $8, parts = $9,
                                         resolved_at = CASE WHEN $7 <> 'active' THEN $10 END
               WHERE h.account = $1 AND h.hold_id = $2),
          entries AS (
              INSERT INTO credits.ledger (account, amount, balance_after, kind, reason, idempotency_key, metadata,
                                          grant_id, hold_id, held_amount, outcome)
              SELECT $1, -p.amount,
                     CASE WHEN moved.whole THEN pg_catalog.trim_scale(moved.balance + coalesce(pg_catalog.sum(p.amount)
                         OVER (ORDER BY p.n ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0)) END,
                     $11, $12, CASE WHEN p.n = 1 THEN $13 END, $14, NULLIF(p.pool, 0), $2,
                     pg_catalog.trim_scale(-p.amount - CASE WHEN p.n = 1 THEN $6 ELSE 0 END),
                     CASE WHEN p.n = 1 THEN pg_catalog.jsonb_build_object(
                         'amount', -$5, 'hold_id', $2, 'captured', $5, 'released', $6, 'status', $7,
                         'balance', pg_catalog.trim_scale(moved.balance - $15)) END
                FROM parts p, moved ORDER BY p.n)
          SELECT balance, crossed FROM moved"),
    args: &[TEXT, INT8, INT8_ARRAY, NUMERIC_ARRAY, NUMERIC, NUMERIC, TEXT, INT8_ARRAY, NUMERIC_ARRAY, TIMESTAMPTZ, TEXT, TEXT, TEXT,
            JSONB, NUMERIC, NUMERIC],
    generic: true,
};
