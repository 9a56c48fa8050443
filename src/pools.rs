//! The SQL writer of the decision core's decisions for accounts with holds or grants:
//! reading an account's figures and pools under its row lock, writing what has lapsed,
//! and carrying out draws, holds and give-backs, each as one statement that updates the
//! pools, the account row and the ledger together.
//!
//! Every function here expects the account row locked by the caller (`accounts::lock`),
//! so the figures it reads cannot move before the decision is written. What has lapsed
//! (holds and grants past their expiry, by `clock_timestamp()`) is written first by
//! [`settle_lapsed`], with the expiry as the entry's business time; readers that cannot
//! write (`balance`, `available`) leave it out the same way (see `accounts`).
//!
//! Ledger attribution: an entry's `grant_id` is the pool it moved (NULL: the own balance),
//! so for every grant remaining + held = Σ its entries, and for every account
//! held = Σ held_amount.

use crate::accounts::{self, Account};
use crate::decide::{self, Draw, Figures, Pool, Time};
use crate::error::{CreditsError, Result};
use crate::notify;
use crate::input::{self, timestamp};
use crate::money::canonical;
use crate::plans::{OwnWrite, Statement, INT8, INT8_ARRAY, JSONB, NUMERIC, NUMERIC_ARRAY, TEXT, TIMESTAMPTZ};
use pgrx::datetime::TimestampWithTimeZone;
use pgrx::spi::SpiClient;
use pgrx::spi::Spi;
use pgrx::{AnyNumeric, JsonB};
use std::cell::RefCell;
use std::collections::HashSet;

/// How many pools a spend reads in burn order, in turn, until they cover it: most charges
/// are paid by the first pool, and an account may have thousands.
const READS: [i64; 3] = [2, 64, i64::MAX];

/// How many accounts with grants a backend remembers (see [`known_to_have_grants`]).
const REMEMBERED: usize = 10_000;

thread_local! {
    static WITH_GRANTS: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

/// Whether this backend has seen the account with grants, so that its charges go straight
/// to the locked path instead of first trying the direct and fast paths, which would step
/// aside. An account keeps `has_grants` once it has it, so the hint can only be stale for
/// an account deleted and opened again, which the locked path corrects.
pub fn known_to_have_grants(account: &str) -> bool {
    WITH_GRANTS.with_borrow(|known| known.contains(account))
}

pub fn remember(account: &str, has_grants: bool) {
    WITH_GRANTS.with_borrow_mut(|known| {
        if !has_grants {
            known.remove(account);
        } else if !known.contains(account) {
            if known.len() >= REMEMBERED {
                known.clear();
            }
            known.insert(account.to_owned());
        }
    });
}

/// The locked account `row` (a hot one gathered) once what has lapsed is written, and its
/// decision figures: its balance less grants not in effect yet.
pub fn settled(client: &SpiClient<'_>, account: &str, row: Account, now: Time) -> (Account, Figures<AnyNumeric>) {
    remember(account, row.has_grants);
    let (pending, grants_due) = if row.has_grants {
        let state = GRANT_STATE.first_row(client, &[account.into(), timestamp(now).into()]).expect("one row");
        (state.column(1), state.column(2))
    } else {
        (AnyNumeric::from(0), false)
    };
    let row = if settle_lapsed(client, account, &row, now, grants_due) {
        accounts::lock(client, account).expect("the account is locked")
    } else {
        row
    };
    let figures = Figures {
        balance: canonical(row.balance.clone() - pending),
        held: row.held.clone(),
        min_balance: row.min_balance.clone(),
    };
    (row, figures)
}

/// Writes the expiry of every hold and grant of the locked account whose time has come;
/// returns whether anything lapsed (the row's figures then changed). Holds are looked for
/// only when the account holds anything, grants only when one is due.
fn settle_lapsed(client: &SpiClient<'_>, account: &str, row: &Account, now: Time, grants_due: bool) -> bool {
    let _own = OwnWrite::begin(account);
    let mut lapsed = false;
    if row.holds_due {
        let due = LAPSED_HOLDS.all_rows(client, &[account.into(), timestamp(now).into()]);
        let due: Vec<(i64, Vec<i64>, Vec<AnyNumeric>, TimestampWithTimeZone)> = due
            .map(|row| {
                (
                    row.get(1).unwrap().expect("hold_id"),
                    row.get(2).unwrap().expect("pools"),
                    row.get(3).unwrap().expect("parts"),
                    row.get(4).unwrap().expect("expires_at"),
                )
            })
            .collect();
        for (hold_id, pools, parts, expires_at) in due {
            let parts = parts_of(pools, parts);
            give_back(client, account, hold_id, &parts, GiveBack::Expiry(expires_at));
            lapsed = true;
        }
    }
    if grants_due {
        let expired: i64 = EXPIRE_GRANTS.first_value(client, &[account.into(), timestamp(now).into()]).expect("a count");
        lapsed |= expired > 0;
    }
    lapsed
}

/// `expire_holds` and `expire_grants`: settles the accounts `due_accounts` ($1 now, $2 at
/// most how many items) names, one lock at a time, and returns how many items expired
/// (`due_of` counts an account's, $1 the account, $2 now).
pub fn expire_due(due_accounts: &'static Statement, due_of: &'static Statement, max_rows: Option<i32>) -> i32 {
    let max_rows = max_rows.unwrap_or(1000).max(0);
    let now = input::now();
    Spi::connect_mut(|client| {
        let due: Vec<String> = due_accounts
            .all_rows(client, &[timestamp(now).into(), max_rows.into()])
            .map(|row| row.get(1).unwrap().expect("account"))
            .collect();
        let mut expired = 0;
        for account in due {
            let Some(row) = accounts::lock(client, &account) else { continue };
            let count: i64 = due_of.first_value(client, &[account.as_str().into(), timestamp(now).into()]).expect("a count");
            settled(client, &account, row, now);
            expired += count as i32;
        }
        expired
    })
}

/// The pools a spend of `cost` draws from, in burn order: enough to cover it, or all.
pub fn pools(client: &SpiClient<'_>, account: &str, row: &Account, cost: &AnyNumeric, now: Time) -> Vec<Pool<AnyNumeric>> {
    if !row.has_grants {
        return vec![Pool::own_balance(canonical(row.balance.clone() - row.held.clone()))];
    }
    // The prefix of the burn order read (the own balance among them when it has money),
    // and the own balance wherever it stands: a draw may take an overdraft from it.
    let read = |limit: i64| -> (Vec<Pool<AnyNumeric>>, Option<Pool<AnyNumeric>>, bool) {
        let mut prefix = Vec::new();
        let mut own = None;
        for row in POOLS_IN_BURN_ORDER.all_rows(client, &[account.into(), limit.into()]) {
            let in_order: bool = row.get(7).unwrap().expect("which part");
            let id: i64 = row.get(1).unwrap().expect("grant_id");
            let remaining: AnyNumeric = row.get(2).unwrap().expect("remaining");
            if id == decide::OWN_BALANCE {
                let pool = Pool::own_balance(remaining);
                if in_order {
                    prefix.push(pool);
                } else {
                    own = Some(pool);
                }
                continue;
            }
            prefix.push(Pool {
                id,
                remaining,
                priority: row.get(3).unwrap().expect("priority"),
                category: decide::Category::parse(&row.get::<String>(4).unwrap().expect("category")).expect("a known category"),
                effective_at: input::time(row.get(5).unwrap().expect("effective_at")),
                expires_at: input::time(row.get(6).unwrap().expect("expires_at")),
            });
        }
        let all = (prefix.len() as i64) < limit;
        (prefix, own, all)
    };
    for limit in READS {
        let (mut pools, own, all) = read(limit);
        // Only the prefix counts towards the cost: a pool not read may come before the
        // own balance in burn order.
        if all || decide::covers(cost, &pools, now) {
            if !pools.iter().any(|pool| pool.id == decide::OWN_BALANCE) {
                pools.extend(own);
            }
            return pools;
        }
    }
    unreachable!("the last read reads every pool")
}

/// Who the entries of a spend are for.
pub struct Spend<'a> {
    pub account: &'a str,
    pub reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<&'a JsonB>,
    /// The hold a capture's excess is charged for.
    pub hold_id: Option<i64>,
}

/// What the locked account's pools give for `amount` (a charge, a transfer, or what a hold
/// reserves), in burn order, and the pools read (a drawn pool's terms among them); PT402
/// when they cannot.
pub fn draws(
    client: &SpiClient<'_>,
    account: &str,
    row: &Account,
    figures: &Figures<AnyNumeric>,
    amount: &AnyNumeric,
    now: Time,
) -> Result<(Vec<Draw<AnyNumeric>>, Vec<Pool<AnyNumeric>>)> {
    let pools = pools(client, account, row, amount, now);
    let draws =
        decide::draw(figures, amount, &pools, now).map_err(|_| CreditsError::insufficient(account, figures, amount))?;
    Ok((draws, pools))
}

/// Charges `cost` to the locked account `row` with `figures` (see [`settled`]): draws it
/// from the pools and writes one entry per pool, the key and the outcome on the first,
/// and sends the low-balance alert if it crossed the threshold. Returns the balance after
/// as stored (grants not in effect included).
pub fn charge(
    client: &SpiClient<'_>,
    spend: &Spend<'_>,
    row: &Account,
    figures: &Figures<AnyNumeric>,
    cost: &AnyNumeric,
    now: Time,
) -> Result<AnyNumeric> {
    let (draws, _) = draws(client, spend.account, row, figures, cost, now)?;
    Ok(write_draws(client, spend, &draws, cost, Spent::Charge))
}

/// What the entries of a spend are.
pub enum Spent {
    Charge,
    /// Transfer `id` out of the account; the outcome its key replays, if it has one.
    TransferOut { id: i64, outcome: Option<serde_json::Value> },
}

/// Writes `draws` (what the locked account's pools give for `cost`, decided) as a charge
/// or a transfer out: one entry per pool, the key on the first, and the low-balance
/// alert if it crossed the threshold. Returns the balance after as stored.
pub fn write_draws(client: &SpiClient<'_>, spend: &Spend<'_>, draws: &[Draw<AnyNumeric>], cost: &AnyNumeric, spent: Spent) -> AnyNumeric {
    let _own = OwnWrite::begin(spend.account);
    let (pools, amounts) = columns(draws);
    let (kind, transfer_id, outcome) = match spent {
        Spent::Charge => ("charge", None, None),
        Spent::TransferOut { id, outcome } => ("transfer_out", Some(id), outcome.map(JsonB)),
    };
    let row = CHARGE
        .first_row(
            client,
            &[
                spend.account.into(),
                pools.into(),
                amounts.into(),
                cost.clone().into(),
                spend.reason.into(),
                spend.idempotency_key.into(),
                spend.metadata.map(|m| JsonB(m.0.clone())).into(),
                spend.hold_id.into(),
                kind.into(),
                transfer_id.into(),
                outcome.into(),
            ],
        )
        .expect("the locked account");
    let balance: AnyNumeric = row.column(1);
    if let Some(threshold) = row.nullable_column::<AnyNumeric>(2) {
        notify::low_balance(client, spend.account, &balance, &threshold);
    }
    balance
}

/// A new hold's id, its expiry and what the account has available after it.
pub struct Placed {
    pub hold_id: i64,
    pub expires_at: TimestampWithTimeZone,
    pub available: AnyNumeric,
}

/// Places a hold of `amount` on the locked account, drawn like a charge, expiring at
/// `expires_at`; PT402 when the pools cannot cover it. `outside`: what the figures lack of
/// the account's (a hot account's slots, when the hold is decided on its row).
#[allow(clippy::too_many_arguments)]
pub fn hold(
    client: &SpiClient<'_>,
    spend: &Spend<'_>,
    row: &Account,
    figures: &Figures<AnyNumeric>,
    amount: &AnyNumeric,
    expires_at: TimestampWithTimeZone,
    now: Time,
    outside: &AnyNumeric,
) -> Result<Placed> {
    let (draws, _) = draws(client, spend.account, row, figures, amount, now)?;
    let available = canonical(figures.available() - amount.clone() + outside.clone());
    let _own = OwnWrite::begin(spend.account);
    let (pools, amounts) = columns(&draws);
    let row = HOLD
        .first_row(
            client,
            &[
                spend.account.into(),
                pools.into(),
                amounts.into(),
                amount.clone().into(),
                expires_at.into(),
                spend.reason.into(),
                spend.idempotency_key.into(),
                spend.metadata.map(|m| JsonB(m.0.clone())).into(),
                available.clone().into(),
            ],
        )
        .expect("the locked account");
    Ok(Placed { hold_id: row.column(1), expires_at: row.column(2), available })
}

/// Why parts of a hold go back to their pools.
pub enum GiveBack<'a> {
    /// A release: its entry has the key and the outcome.
    Release(ReleaseKey<'a>),
    /// The rest of a final capture, whose own entry records it: no entry.
    RestOfCapture,
    /// The hold expired at this time.
    Expiry(TimestampWithTimeZone),
}

/// The key and reason of a release and the outcome it replays; the outcome gains
/// `balance`, the stored balance after less `pending` (grants not in effect, less a hot
/// account's slots when the row holds only its part).
pub struct ReleaseKey<'a> {
    pub key: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub outcome: serde_json::Value,
    pub pending: AnyNumeric,
}

/// Gives `parts` of hold `hold_id` back to their pools (a part of a closed grant expires
/// at once) and takes them off the account's held; writes the release or expiry entry,
/// with the release's key and outcome on it. Returns the balance after.
pub fn give_back(client: &SpiClient<'_>, account: &str, hold_id: i64, parts: &[Draw<AnyNumeric>], why: GiveBack<'_>) -> AnyNumeric {
    let _own = OwnWrite::begin(account);
    let (pools, amounts) = columns(parts);
    let none = (None, None, None, AnyNumeric::from(0));
    let (kind, at, (key, reason, outcome, pending)) = match why {
        GiveBack::Release(keyed) => {
            (Some("release"), None, (keyed.key, keyed.reason, Some(JsonB(keyed.outcome)), keyed.pending))
        }
        GiveBack::RestOfCapture => (None, None, none),
        GiveBack::Expiry(at) => (Some("expiry"), Some(at), none),
    };
    GIVE_BACK
        .first_value(
            client,
            &[
                account.into(),
                pools.into(),
                amounts.into(),
                kind.into(),
                hold_id.into(),
                at.into(),
                key.into(),
                outcome.into(),
                pending.into(),
                reason.into(),
            ],
        )
        .expect("the locked account")
}

/// A hold's parts from its two columns.
pub fn parts_of(pools: Vec<i64>, parts: Vec<AnyNumeric>) -> Vec<Draw<AnyNumeric>> {
    pools.into_iter().zip(parts).map(|(pool, amount)| Draw { pool, amount }).collect()
}

pub fn columns(draws: &[Draw<AnyNumeric>]) -> (Vec<i64>, Vec<AnyNumeric>) {
    draws.iter().map(|draw| (draw.pool, draw.amount.clone())).unzip()
}

/// What grants not in effect yet at $2 hold, and whether a grant is due to expire (the
/// own balance never is). The soonest expiry, not "any expired": that reads one entry of
/// the expiry index, where a filter on expires_at let the planner walk the account's
/// whole burn order.
static GRANT_STATE: Statement = Statement {
    sql: "SELECT (SELECT coalesce(pg_catalog.sum(remaining + held), 0) FROM credits.account_grants
                   WHERE account = $1 AND closed IS NULL AND effective_at > $2),
                 (SELECT pg_catalog.min(expires_at) FROM credits.account_grants
                   WHERE account = $1 AND closed IS NULL) <= $2",
    args: &[TEXT, TIMESTAMPTZ],
    generic: true,
};

/// The first $2 open pools with money in burn order (the last column true), then the own
/// balance, whatever it holds (false).
static POOLS_IN_BURN_ORDER: Statement = Statement {
    sql: "(SELECT grant_id, remaining, priority, category, effective_at, expires_at, true FROM credits.account_grants
            WHERE account = $1 AND closed IS NULL AND remaining > 0
            ORDER BY priority, expires_at, (category = 'paid'), effective_at, grant_id
            LIMIT $2)
          UNION ALL
          SELECT grant_id, remaining, priority, category, effective_at, expires_at, false FROM credits.account_grants
           WHERE account = $1 AND grant_id = 0",
    args: &[TEXT, INT8],
    generic: true,
};

/// Marks the account's holds past their expiry expired and returns them; their parts go
/// back through GIVE_BACK.
static LAPSED_HOLDS: Statement = Statement {
    sql: "UPDATE credits.holds SET status = 'expired', resolved_at = $2
           WHERE account = $1 AND status = 'active' AND expires_at <= $2
       RETURNING hold_id, pools, parts, expires_at",
    args: &[TEXT, TIMESTAMPTZ],
    generic: true,
};

/// Closes the account's grants past their expiry: what remains leaves the balance with an
/// `expiry` entry dated at the expiry; what holds reserve of them stays with the holds.
/// The account row is written even when nothing remained: every change to a pool comes
/// with one (see `direct`).
static EXPIRE_GRANTS: Statement = Statement {
    sql: "WITH due AS (
              SELECT grant_id, remaining, expires_at FROM credits.account_grants
               WHERE account = $1 AND closed IS NULL AND expires_at <= $2 AND grant_id <> 0
               ORDER BY expires_at, grant_id),
          closed AS (
              UPDATE credits.account_grants g SET closed = 'expired', closed_at = $2, remaining = 0
                FROM due WHERE g.account = $1 AND g.grant_id = due.grant_id),
          total AS (SELECT coalesce(pg_catalog.sum(remaining), 0) AS amount, pg_catalog.count(*) AS n FROM due),
          moved AS (
              UPDATE credits.accounts a SET balance = pg_catalog.trim_scale(a.balance - total.amount), updated_at = pg_catalog.now()
                FROM total WHERE a.account = $1 AND total.n > 0
             RETURNING a.balance),
          entries AS (
              INSERT INTO credits.ledger (account, amount, kind, reason, grant_id, created_at)
              SELECT $1, -due.remaining, 'expiry', 'grant expired', due.grant_id, due.expires_at
                FROM due WHERE due.remaining <> 0 ORDER BY due.expires_at, due.grant_id)
          SELECT n FROM total",
    args: &[TEXT, TIMESTAMPTZ],
    generic: true,
};

/// $2/$3: the pools drawn and the amounts, in burn order; $4 the cost; $9 the entries'
/// kind, $10 their transfer, $11 the outcome the key replays (NULL: the charge's own,
/// when it has several entries). Every update of
/// pools here also says `grant_id = ANY (…)` of the pools it joins: the generic plan
/// guesses ten of them and otherwise hash-joins them with every grant of the account.
static CHARGE: Statement = Statement {
    sql: "WITH d AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::numeric[])) WITH ORDINALITY AS d(pool, amount, n)),
          drawn AS (
              UPDATE credits.account_grants g SET remaining = pg_catalog.trim_scale(g.remaining - d.amount),
                     closed = CASE WHEN g.grant_id <> 0 AND g.remaining = d.amount AND g.held = 0 THEN 'depleted' END,
                     closed_at = CASE WHEN g.grant_id <> 0 AND g.remaining = d.amount AND g.held = 0 THEN pg_catalog.now() END
                FROM d WHERE g.account = $1 AND g.grant_id = d.pool AND g.grant_id = ANY ($2)),
          moved AS (
              UPDATE credits.accounts SET balance = pg_catalog.trim_scale(balance - $4), updated_at = pg_catalog.now()
               WHERE account = $1
           RETURNING balance, CASE WHEN balance < low_balance_threshold AND balance + $4 >= low_balance_threshold
                                   THEN low_balance_threshold END AS crossed),
          entries AS (
              INSERT INTO credits.ledger (account, amount, balance_after, kind, reason, idempotency_key, metadata,
                                          grant_id, hold_id, outcome, transfer_id)
              SELECT $1, -d.amount,
                     pg_catalog.trim_scale(moved.balance + coalesce(pg_catalog.sum(d.amount)
                         OVER (ORDER BY d.n ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING), 0)),
                     $9, $5, CASE WHEN d.n = 1 THEN $6 END, $7, NULLIF(d.pool, 0), $8,
                     CASE WHEN d.n = 1 THEN coalesce($11,
                         CASE WHEN $6 IS NOT NULL AND pg_catalog.cardinality($2) > 1
                              THEN pg_catalog.jsonb_build_object('amount', -$4, 'balance_after', moved.balance) END) END,
                     $10
                FROM d, moved ORDER BY d.n)
          SELECT balance, crossed FROM moved",
    args: &[TEXT, INT8_ARRAY, NUMERIC_ARRAY, NUMERIC, TEXT, TEXT, JSONB, INT8, TEXT, INT8, JSONB],
    generic: true,
};

/// $2/$3 the draws, $4 the amount, $5 the expiry, $9 what is available after.
static HOLD: Statement = Statement {
    sql: concat!("WITH d AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::numeric[])) AS d(pool, amount)),
          drawn AS (
              UPDATE credits.account_grants g SET remaining = pg_catalog.trim_scale(g.remaining - d.amount),
                                                  held = pg_catalog.trim_scale(g.held + d.amount)
                FROM d WHERE g.account = $1 AND g.grant_id = d.pool AND g.grant_id = ANY ($2)),
          placed AS (
              INSERT INTO credits.holds (account, amount, pools, parts, expires_at, reason, metadata)
              VALUES ($1, $4, $2, $3, $5, $6, $8) RETURNING hold_id, expires_at),
          moved AS (
              UPDATE credits.accounts a SET held = pg_catalog.trim_scale(a.held + $4), updated_at = pg_catalog.now()
               WHERE a.account = $1 RETURNING a.balance, ", row_is_whole!(), " AS whole),
          entry AS (
              INSERT INTO credits.ledger (account, amount, balance_after, kind, reason, idempotency_key, metadata,
                                          hold_id, held_amount, outcome)
              SELECT $1, 0, CASE WHEN moved.whole THEN moved.balance END, 'hold', $6, $7, $8, placed.hold_id, $4,
                     pg_catalog.jsonb_build_object('amount', $4, 'hold_id', placed.hold_id,
                                                   'expires_at', placed.expires_at, 'available', $9)
                FROM placed, moved)
          SELECT hold_id, expires_at FROM placed"),
    args: &[TEXT, INT8_ARRAY, NUMERIC_ARRAY, NUMERIC, TIMESTAMPTZ, TEXT, TEXT, JSONB, NUMERIC],
    generic: true,
};

/// $2/$3 the parts given back, $4 the entry kind (release, expiry; NULL: none), $5 the hold, $6 the
/// business time of an expiry (NULL: now), $7/$8 the key and outcome of a release, $9 its
/// `pending` (see [`ReleaseKey`]), $10 the release's reason.
static GIVE_BACK: Statement = Statement {
    sql: concat!("WITH p AS (SELECT * FROM ROWS FROM (pg_catalog.unnest($2::bigint[]), pg_catalog.unnest($3::numeric[])) AS p(pool, part)),
          returned AS (
              UPDATE credits.account_grants g
                 SET held = pg_catalog.trim_scale(g.held - p.part),
                     remaining = CASE WHEN g.closed IS NULL THEN pg_catalog.trim_scale(g.remaining + p.part) ELSE g.remaining END
                FROM p WHERE g.account = $1 AND g.grant_id = p.pool AND g.grant_id = ANY ($2)
           RETURNING g.grant_id, p.part, g.closed IS NOT NULL AS closed),
          lost AS (SELECT coalesce(pg_catalog.sum(part) FILTER (WHERE closed), 0) AS amount FROM returned),
          total AS (SELECT coalesce(pg_catalog.sum(part), 0) AS held FROM p),
          moved AS (
              UPDATE credits.accounts a SET held = pg_catalog.trim_scale(a.held - total.held),
                                            balance = pg_catalog.trim_scale(a.balance - lost.amount),
                                            updated_at = pg_catalog.now()
                FROM total, lost WHERE a.account = $1
           RETURNING a.balance, total.held, ", row_is_whole!(), " AS whole),
          entry AS (
              INSERT INTO credits.ledger (account, amount, balance_after, kind, reason, idempotency_key, hold_id,
                                          held_amount, outcome, created_at)
              SELECT $1, 0, CASE WHEN moved.whole THEN moved.balance + lost.amount END, $4, CASE $4 WHEN 'expiry' THEN 'hold expired' ELSE $10 END, $7, $5,
                     -moved.held, $8 || pg_catalog.jsonb_build_object('balance', pg_catalog.trim_scale(moved.balance - $9)),
                     coalesce($6, pg_catalog.now())
                FROM moved, lost WHERE $4 IS NOT NULL),
          expired AS (
              INSERT INTO credits.ledger (account, amount, kind, reason, grant_id, hold_id, created_at)
              SELECT $1, -r.part, 'expiry', 'grant expired', r.grant_id, $5, coalesce($6, pg_catalog.now())
                FROM returned r WHERE r.closed ORDER BY r.grant_id)
          SELECT balance FROM moved"),
    args: &[TEXT, INT8_ARRAY, NUMERIC_ARRAY, TEXT, INT8, TIMESTAMPTZ, TEXT, JSONB, NUMERIC, TEXT],
    generic: true,
};

/// What an idempotency key recorded: its entry's kind, the movement's signed amount (the
/// whole of it when it wrote several entries), its balance after and its outcome.
pub struct Keyed {
    pub kind: String,
    pub amount: AnyNumeric,
    pub balance_after: Option<AnyNumeric>,
    pub outcome: Option<serde_json::Value>,
}

impl Keyed {
    /// The conflict, unless the key recorded this same movement (kind and signed amount).
    pub fn same(&self, account: &str, key: &str, kind: &'static str, amount: AnyNumeric) -> Result<()> {
        if self.kind == kind && self.amount == amount {
            return Ok(());
        }
        Err(self.conflict(account, key, kind, amount))
    }

    /// PT409: the key recorded this, and is used again for a `kind` of `amount`.
    pub fn conflict(&self, account: &str, key: &str, kind: &'static str, amount: AnyNumeric) -> CreditsError {
        CreditsError::IdempotencyConflict {
            account: account.to_owned(),
            idempotency_key: key.to_owned(),
            original_kind: self.kind.clone(),
            original_amount: self.amount.clone(),
            kind,
            amount,
        }
    }

    /// A field of the outcome the keyed operation recorded.
    pub fn field<T: std::str::FromStr>(&self, name: &str) -> Option<T> {
        let value = self.outcome.as_ref()?.get(name)?;
        match value {
            serde_json::Value::String(text) => text.parse().ok(),
            other => other.to_string().parse().ok(),
        }
    }
}

pub fn keyed(client: &SpiClient<'_>, account: &str, key: &str) -> Option<Keyed> {
    KEYED.first_row(client, &[account.into(), key.into()]).map(|row| Keyed {
        kind: row.column(1),
        amount: row.column(2),
        balance_after: row.nullable_column(3),
        outcome: row.nullable_column::<JsonB>(4).map(|outcome| outcome.0),
    })
}

/// Moves the own balance pool of a locked account with grants by `amount` (a recharge,
/// or a direct write's adjustment, which may be negative); the entry, written by the
/// caller, has no grant_id: the own balance.
pub fn adjust_own_balance(client: &SpiClient<'_>, account: &str, amount: &AnyNumeric) {
    let _own = OwnWrite::begin(account);
    OWN_RECHARGE.first_row(client, &[account.into(), amount.clone().into()]);
}

/// What an account with grants has in grants not in effect yet at `now`.
pub fn pending(client: &SpiClient<'_>, account: &str, now: Time) -> AnyNumeric {
    GRANT_STATE.first_value(client, &[account.into(), timestamp(now).into()]).expect("a sum")
}

static KEYED: Statement = Statement {
    sql: "SELECT kind, coalesce((outcome ->> 'amount')::pg_catalog.numeric, amount),
                 coalesce((outcome ->> 'balance_after')::pg_catalog.numeric, balance_after), outcome
            FROM credits.ledger WHERE account = $1 AND idempotency_key = $2",
    args: &[TEXT, TEXT],
    generic: true,
};

static OWN_RECHARGE: Statement = Statement {
    sql: "UPDATE credits.account_grants SET remaining = pg_catalog.trim_scale(remaining + $2)
           WHERE account = $1 AND grant_id = 0 RETURNING remaining",
    args: &[TEXT, NUMERIC],
    generic: true,
};
