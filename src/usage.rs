//! The picture of usage: what an account had, was credited, spent and lost over time
//! (`statement`, `balance_at`), what it spent on (`usage`) and when it runs out at its
//! current pace (`runway`), read from the account's ledger entries through the
//! (account, created_at) index, without writing anything.
//!
//! Balances here are the ledger's, by business time: an entry counts at its `created_at`
//! (an expiry at the expiry it records), and an expiry that is due but not written yet
//! (the account's next writer or `expire_grants` writes it) counts as if it were, so
//! every figure is final whether or not the jobs ran. A grant counts from when it was
//! granted, even one that takes effect later.
//!
//! The balance at a point in time is read from the account's entries on the side of that
//! point that is shorter in time: since the account was opened, or until now (the stored
//! balance less what came after), so a recent statement of an old account reads only its
//! recent entries.

use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::input;
use crate::money::canonical;
use crate::plans::{Statement, INTERVAL, TEXT, TIMESTAMPTZ, TIMESTAMPTZ_ARRAY};
use pgrx::datetime::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::AnyNumeric;

/// How many periods one statement may have.
const MAX_PERIODS: i64 = 10_000;

/// The account's balance at `at` (its entries at or before it); NULL before the account
/// was opened.
#[pg_extern(security_definer, stable, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn balance_at(account: Option<&str>, at: Option<TimestampWithTimeZone>) -> Option<AnyNumeric> {
    unwrap_or_raise(balance_as_of(account, at))
}

/// Per period of `bucket` (NULL: one period) in time zone `tz`, from `from_ts` up to
/// `to_ts`: the opening balance, what was credited, debited and expired, and the closing
/// balance (opening + credited − debited − expired).
#[pg_extern(security_definer, stable, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn statement(
    account: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    bucket: default!(Option<&str>, "NULL"),
    tz: default!(Option<&str>, "'UTC'"),
) -> TableIterator<
    'static,
    (
        name!(period_start, TimestampWithTimeZone),
        name!(period_end, TimestampWithTimeZone),
        name!(opening, AnyNumeric),
        name!(credited, AnyNumeric),
        name!(debited, AnyNumeric),
        name!(expired, AnyNumeric),
        name!(closing, AnyNumeric),
    ),
> {
    TableIterator::new(unwrap_or_raise(periods(account, from_ts, to_ts, bucket, tz)))
}

/// What the account spent (charges and captures, less their refunds) from `from_ts` up to
/// `to_ts`, per `reason` or, with `group_by => 'metadata.KEY'`, per value of that metadata
/// key; the most spent first.
#[pg_extern(security_definer, stable, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn usage(
    account: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    group_by: default!(Option<&str>, "'reason'"),
) -> TableIterator<'static, (name!(key, Option<String>), name!(spent, AnyNumeric), name!(entries, i64))> {
    TableIterator::new(unwrap_or_raise(spending(account, from_ts, to_ts, group_by)))
}

/// What the account can spend now, what it spent over the last `lookback`, that as a rate
/// per day, and when the spendable balance runs out at that rate (NULL without spend).
#[pg_extern(security_definer, stable, parallel_restricted)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn runway(
    account: Option<&str>,
    lookback: default!(Option<Interval>, "'7 days'"),
) -> TableIterator<
    'static,
    (
        name!(spendable, AnyNumeric),
        name!(spent, AnyNumeric),
        name!(per_day, AnyNumeric),
        name!(runs_out_at, Option<TimestampWithTimeZone>),
    ),
> {
    TableIterator::once(unwrap_or_raise(pace(account, lookback)))
}

fn balance_as_of(account: Option<&str>, at: Option<TimestampWithTimeZone>) -> Result<Option<AnyNumeric>> {
    let account = input::account(account)?;
    let at = input::required("at", at)?;
    // At or before `at`: before the next microsecond, timestamptz's resolution.
    let before = input::timestamp(input::time(at) + 1);
    Spi::connect(|client| {
        let row = BALANCE_BEFORE
            .first_row(client, &[account.into(), input::timestamp(input::now()).into(), before.into()])
            .ok_or_else(|| crate::accounts::not_found(account))?;
        Ok(row.nullable_column::<AnyNumeric>(1).map(canonical))
    })
}

type Period = (
    TimestampWithTimeZone,
    TimestampWithTimeZone,
    AnyNumeric,
    AnyNumeric,
    AnyNumeric,
    AnyNumeric,
    AnyNumeric,
);

fn periods(
    account: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    bucket: Option<&str>,
    tz: Option<&str>,
) -> Result<Vec<Period>> {
    let account = input::account(account)?;
    let (from, to) = period(from_ts, to_ts)?;
    let tz = input::required("tz", tz)?;
    if !known_time_zone(tz) {
        return Err(CreditsError::bad_input(BadInput::Invalid, "tz", "must be a time zone name, such as 'Europe/Paris'"));
    }
    let bucket = bucket.map(Bucket::parse).transpose()?;
    if let Some(bucket) = bucket {
        let periods = (input::time(to) - input::time(from)) / bucket.shortest_micros() + 2;
        if periods > MAX_PERIODS {
            return Err(CreditsError::bad_input(
                BadInput::OutOfRange,
                "bucket",
                format!("gives more than {MAX_PERIODS} periods: choose a longer bucket or a shorter span"),
            ));
        }
    }
    Spi::connect(|client| {
        let bounds: Vec<TimestampWithTimeZone> = match bucket {
            None => vec![from, to],
            Some(bucket) => BOUNDS
                .first_value(client, &[from.into(), to.into(), bucket.name().into(), tz.into()])
                .expect("an array"),
        };
        let now = input::timestamp(input::now());
        let rows = STATEMENT.all_rows(client, &[account.into(), now.into(), from.into(), to.into(), bounds.into()]);
        let periods: Vec<Period> = rows
            .map(|row| {
                let number = |i: usize| canonical(row.get::<AnyNumeric>(i).unwrap().expect("NOT NULL"));
                (
                    row.get(1).unwrap().expect("a bound"),
                    row.get(2).unwrap().expect("a bound"),
                    number(3),
                    number(4),
                    number(5),
                    number(6),
                    number(7),
                )
            })
            .collect();
        // Every account has at least one period: none means no account.
        if periods.is_empty() {
            return Err(crate::accounts::not_found(account));
        }
        Ok(periods)
    })
}

fn spending(
    account: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    group_by: Option<&str>,
) -> Result<Vec<(Option<String>, AnyNumeric, i64)>> {
    let account = input::account(account)?;
    let (from, to) = period(from_ts, to_ts)?;
    let metadata_key = match input::required("group_by", group_by)? {
        "reason" => None,
        other => match other.strip_prefix("metadata.").filter(|key| !key.is_empty()) {
            Some(key) => Some(key),
            None => {
                return Err(CreditsError::bad_input(BadInput::Invalid, "group_by", "must be 'reason' or 'metadata.<key>'"));
            }
        },
    };
    Spi::connect(|client| {
        crate::accounts::slots(client, account).ok_or_else(|| crate::accounts::not_found(account))?;
        let rows = SPENT_BY.all_rows(client, &[account.into(), from.into(), to.into(), metadata_key.into()]);
        Ok(rows
            .map(|row| {
                (
                    row.get(1).unwrap(),
                    canonical(row.get::<AnyNumeric>(2).unwrap().expect("a sum")),
                    row.get(3).unwrap().expect("a count"),
                )
            })
            .collect())
    })
}

fn pace(
    account: Option<&str>,
    lookback: Option<Interval>,
) -> Result<(AnyNumeric, AnyNumeric, AnyNumeric, Option<TimestampWithTimeZone>)> {
    let account = input::account(account)?;
    let lookback = input::required("lookback", lookback)?;
    if lookback.as_micros() <= 0 {
        return Err(CreditsError::bad_input(BadInput::Invalid, "lookback", "must be positive"));
    }
    Spi::connect(|client| {
        let figures = crate::accounts::figures_now(client, account)?;
        let spendable = canonical(figures.available());
        let now = input::timestamp(input::now());
        let row = PACE
            .first_row(client, &[account.into(), now.into(), lookback.into(), spendable.clone().into()])
            .expect("one row");
        Ok((spendable, canonical(row.column(1)), canonical(row.column(2)), row.nullable_column(3)))
    })
}

/// `from_ts` and `to_ts`, both given, the first before the second.
fn period(
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
) -> Result<(TimestampWithTimeZone, TimestampWithTimeZone)> {
    let (from, to) = (input::required("from_ts", from_ts)?, input::required("to_ts", to_ts)?);
    if !from.is_finite() || !to.is_finite() || input::time(from) >= input::time(to) {
        return Err(CreditsError::bad_input(BadInput::Invalid, "to_ts", "must be after from_ts (both finite)"));
    }
    Ok((from, to))
}

/// Whether PostgreSQL knows the time zone (AT TIME ZONE would otherwise fail inside SPI).
fn known_time_zone(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else { return false };
    // SAFETY: pg_tzset reads the name and returns a cached zone or NULL; it never errors.
    unsafe { !pg_sys::pg_tzset(name.as_ptr()).is_null() }
}

#[derive(Clone, Copy)]
enum Bucket {
    Hour,
    Day,
    Week,
    Month,
}

impl Bucket {
    fn parse(name: &str) -> Result<Bucket> {
        Ok(match name {
            "hour" => Bucket::Hour,
            "day" => Bucket::Day,
            "week" => Bucket::Week,
            "month" => Bucket::Month,
            _ => {
                return Err(CreditsError::bad_input(
                    BadInput::Invalid,
                    "bucket",
                    "must be 'hour', 'day', 'week', 'month' or NULL (one period)",
                ))
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }

    /// Its shortest length (a day across a change to summer time has 23 hours).
    fn shortest_micros(self) -> i64 {
        const HOUR: i64 = 3_600_000_000;
        match self {
            Bucket::Hour => HOUR,
            Bucket::Day => 23 * HOUR,
            Bucket::Week => 7 * 24 * HOUR - HOUR,
            Bucket::Month => 28 * 24 * HOUR - HOUR,
        }
    }
}

/// $1 the account, $2 now: the account row `a`, and `unwritten`, the expiries due by $2
/// that no writer has written yet, dated as the writer will date them (the remainder of
/// a grant past its expiry, with what lapsed holds give back to it, at the grant's
/// expiry; what a lapsed hold held of a grant already closed, at the hold's expiry), as
/// `accounts`' figures leave them out.
macro_rules! with_unwritten_expiries {
    () => {
        "WITH a AS (SELECT balance, slots, held, has_grants, created_at FROM credits.accounts WHERE account = $1),
              lapsed AS (
                  SELECT p.pool, p.part, h.expires_at
                    FROM a, credits.holds h, ROWS FROM (pg_catalog.unnest(h.pools), pg_catalog.unnest(h.parts)) AS p(pool, part)
                   WHERE a.held <> 0 AND h.account = $1 AND h.status = 'active' AND h.expires_at <= $2),
              unwritten AS (
                  SELECT g.expires_at AS at,
                         -(g.remaining + coalesce((SELECT pg_catalog.sum(l.part) FROM lapsed l WHERE l.pool = g.grant_id), 0)) AS amount
                    FROM a, credits.account_grants g
                   WHERE a.has_grants AND g.account = $1 AND g.closed IS NULL AND g.grant_id <> 0 AND g.expires_at <= $2
                  UNION ALL
                  SELECT l.expires_at, -l.part
                    FROM lapsed l JOIN credits.account_grants g ON g.account = $1 AND g.grant_id = l.pool
                   WHERE g.closed IS NOT NULL),"
    };
}

/// The balance before $3 (NULL when the account was opened later), with
/// [`with_unwritten_expiries`]: the entries before $3 when the account was opened closer
/// to $3 than now is, else the stored balance (its row and slots, which add up to all its
/// entries) less the entries from $3 on.
macro_rules! balance_before {
    () => {
        "opening AS (
             SELECT CASE WHEN a.created_at < $3 THEN
                        CASE WHEN $3 - a.created_at <= $2 - $3
                             THEN (SELECT coalesce(pg_catalog.sum(l.amount), 0) FROM credits.ledger l
                                    WHERE l.account = $1 AND l.created_at < $3)
                             ELSE a.balance
                                  + CASE WHEN a.slots > 0
                                         THEN (SELECT coalesce(pg_catalog.sum(s.available), 0) FROM credits.account_slots s
                                                WHERE s.account = $1)
                                         ELSE 0 END
                                  - (SELECT coalesce(pg_catalog.sum(l.amount), 0) FROM credits.ledger l
                                      WHERE l.account = $1 AND l.created_at >= $3) END
                        + (SELECT coalesce(pg_catalog.sum(u.amount), 0) FROM unwritten u WHERE u.at < $3)
                    END AS balance
               FROM a)"
    };
}

static BALANCE_BEFORE: Statement = Statement {
    sql: concat!(with_unwritten_expiries!(), balance_before!(), " SELECT balance FROM opening"),
    args: &[TEXT, TIMESTAMPTZ, TIMESTAMPTZ],
    generic: false,
};

/// $3/$4 the span, $5 its bounds ($3, each bucket's start in between, $4). Entries are
/// debited (charges, captures, transfers out), expired, or else credited with their sign
/// (recharges, grants, transfers in, refunds, and voids and adjustments, which may be
/// negative).
static STATEMENT: Statement = Statement {
    sql: concat!(
        with_unwritten_expiries!(),
        balance_before!(),
        ",
         moves AS (
             SELECT l.created_at AS at, l.kind::text AS kind, l.amount FROM credits.ledger l
              WHERE l.account = $1 AND l.created_at >= $3 AND l.created_at < $4
             UNION ALL
             SELECT u.at, 'expiry', u.amount FROM unwritten u WHERE u.at >= $3 AND u.at < $4),
         per AS (
             SELECT pg_catalog.width_bucket(m.at, $5) AS n,
                    pg_catalog.sum(m.amount) FILTER (WHERE m.kind NOT IN ('charge', 'capture', 'transfer_out', 'expiry')) AS credited,
                    -pg_catalog.sum(m.amount) FILTER (WHERE m.kind IN ('charge', 'capture', 'transfer_out')) AS debited,
                    -pg_catalog.sum(m.amount) FILTER (WHERE m.kind = 'expiry') AS expired,
                    pg_catalog.sum(m.amount) AS net
               FROM moves m GROUP BY 1),
         periods AS (
             SELECT n, coalesce(p.credited, 0) AS credited, coalesce(p.debited, 0) AS debited,
                    coalesce(p.expired, 0) AS expired,
                    coalesce(o.balance, 0) + coalesce(pg_catalog.sum(p.net) OVER (ORDER BY n ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                        AS opening
               FROM opening o, pg_catalog.generate_series(1, pg_catalog.cardinality($5) - 1) n LEFT JOIN per p USING (n))
         SELECT $5[n], $5[n + 1], opening, credited, debited, expired, opening + credited - debited - expired
           FROM periods ORDER BY n"
    ),
    args: &[TEXT, TIMESTAMPTZ, TIMESTAMPTZ, TIMESTAMPTZ, TIMESTAMPTZ_ARRAY],
    generic: false,
};

/// $1 to $2 cut at the start of every $3 in time zone $4: local time steps over a change
/// of the clocks, so a day there has 23 or 25 hours.
static BOUNDS: Statement = Statement {
    sql: "SELECT ARRAY(
              SELECT b FROM (
                  SELECT $1 AS b UNION SELECT $2
                  UNION SELECT pg_catalog.timezone($4, t) FROM pg_catalog.generate_series(
                      pg_catalog.date_trunc($3, pg_catalog.timezone($4, $1)), pg_catalog.timezone($4, $2),
                      pg_catalog.concat('1 ', $3)::pg_catalog.interval) t) bounds
               WHERE b >= $1 AND b <= $2 ORDER BY b)",
    args: &[TIMESTAMPTZ, TIMESTAMPTZ, TEXT, TEXT],
    generic: false,
};

/// $4 NULL: per reason; else per value of metadata key $4. A refund in the span counts
/// against the spend of the entry it refunds, under that entry's reason or metadata.
static SPENT_BY: Statement = Statement {
    sql: "SELECT CASE WHEN $4::text IS NULL THEN CASE WHEN l.kind = 'refund' THEN o.reason ELSE l.reason END
                      ELSE CASE WHEN l.kind = 'refund' THEN o.metadata ELSE l.metadata END OPERATOR(pg_catalog.->>) $4
                 END AS key,
                 pg_catalog.trim_scale(-pg_catalog.sum(l.amount)), pg_catalog.count(*) FILTER (WHERE l.kind <> 'refund')
            FROM credits.ledger l
            LEFT JOIN credits.ledger o ON l.kind = 'refund' AND o.account = $1 AND o.id = l.refund_of
           WHERE l.account = $1 AND l.created_at >= $2 AND l.created_at < $3 AND l.kind IN ('charge', 'capture', 'refund')
           GROUP BY 1 ORDER BY 2 DESC, 1",
    args: &[TEXT, TIMESTAMPTZ, TIMESTAMPTZ, TEXT],
    generic: false,
};

/// What account $1 spent in the $3 before $2, per day, and when $4 (its spendable
/// balance) runs out at that pace: 'infinity' beyond a thousand years.
static PACE: Statement = Statement {
    sql: concat!("WITH spent AS (
              SELECT coalesce(-pg_catalog.sum(l.amount), 0) AS amount FROM credits.ledger l
               WHERE l.account = $1 AND l.created_at >= $2 - $3 AND l.created_at < $2 AND l.kind IN ('charge', 'capture')),
          span AS (SELECT pg_catalog.date_part('epoch', $2 - ($2 - $3))::pg_catalog.numeric / 86400 AS days),
          left_days AS (
              SELECT CASE WHEN spent.amount > 0 THEN GREATEST($4, 0) / spent.amount * span.days END AS days
                FROM spent, span)
          SELECT spent.amount, pg_catalog.round(spent.amount / span.days, 18), ", runs_out_at!("$2", "left_days.days"), "
            FROM spent, span, left_days"),
    args: &[TEXT, TIMESTAMPTZ, INTERVAL, crate::plans::NUMERIC],
    generic: false,
};
