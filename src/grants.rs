//! Credit grants: pools of credit with a priority, a category and a validity (`grant`,
//! `void_grant`, `set_grant_expiry`, `expire_grants`).
//!
//! An account's first grant moves its own balance into pool 0 of
//! `credits.account_grants` (`accounts.has_grants`); from then on every spend of the
//! account draws from its pools in burn order (see `decide`), one ledger entry per pool.
//! An account that never receives a grant has no pools and pays nothing for them.
//!
//! Expiry removes what a grant still has with an `expiry` entry dated at the expiry,
//! written by the account's next writer or by `expire_grants`; every decision and
//! `credits.balance` leave it out from the moment it expires. What holds reserve of a
//! grant stays with the holds; given back after the grant closed, it expires at once.
//!
//! Hot accounts do not take grants (and accounts with grants cannot be made hot): a slot
//! would have to remember which grant its money came from, and a charge from a slot could
//! then burn credit out of order. Both are refused with PT403.

use crate::accounts::{self, Account};
use crate::decide::{self, Category};
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::input;
use crate::money::canonical;
use crate::plans::{OwnWrite, Statement, INT4, INT8, JSONB, NUMERIC, TEXT, TIMESTAMPTZ};
use crate::pools;
use pgrx::datetime::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};

/// Grants `amount` of credit to the account (opening it if needed); returns the grant,
/// what it has left after repaying an overdraft, and the balance after.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "grant", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn grant_credits(
    account: Option<&str>,
    amount: Option<AnyNumeric>,
    category: default!(Option<&str>, "'paid'"),
    priority: default!(Option<i32>, 50),
    effective_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    idempotency_key: default!(Option<&str>, "NULL"),
    reason: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
) -> TableIterator<'static, (name!(grant_id, i64), name!(remaining, AnyNumeric), name!(balance, AnyNumeric))> {
    let terms = terms(category, priority, effective_at, expires_at);
    TableIterator::once(unwrap_or_raise(
        terms.and_then(|terms| give(account, amount, terms, idempotency_key, reason, metadata)),
    ))
}

/// Takes back what the grant has left (what holds reserve of it expires when they give it
/// back); returns what was voided and the balance after.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn void_grant(
    grant_id: Option<i64>,
    reason: default!(Option<&str>, "NULL"),
    idempotency_key: default!(Option<&str>, "NULL"),
) -> TableIterator<'static, (name!(grant_id, i64), name!(voided, AnyNumeric), name!(balance, AnyNumeric))> {
    TableIterator::once(unwrap_or_raise(void(grant_id, reason, idempotency_key)))
}

/// Moves the grant's expiry (NULL: never); one in the past expires it at once.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn set_grant_expiry(grant_id: Option<i64>, expires_at: Option<TimestampWithTimeZone>) {
    unwrap_or_raise(reexpire(grant_id, expires_at))
}

/// Writes the expiry of up to about `max_rows` grants past their time; returns how many.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn expire_grants(max_rows: default!(Option<i32>, 1000)) -> i32 {
    pools::expire_due(&DUE_ACCOUNTS, &DUE_OF, max_rows)
}

/// A grant's terms, checked.
pub struct Terms {
    pub category: Category,
    pub priority: i32,
    /// NULL: now.
    pub effective_at: Option<TimestampWithTimeZone>,
    pub expires_at: TimestampWithTimeZone,
}

fn terms(
    category: Option<&str>,
    priority: Option<i32>,
    effective_at: Option<TimestampWithTimeZone>,
    expires_at: Option<TimestampWithTimeZone>,
) -> Result<Terms> {
    let category = category
        .and_then(Category::parse)
        .ok_or_else(|| CreditsError::bad_input(BadInput::Invalid, "category", "must be 'paid' or 'promotional'"))?;
    let priority = priority.ok_or_else(|| CreditsError::bad_input(BadInput::Null, "priority", "must not be NULL"))?;
    if !(0..=100).contains(&priority) {
        return Err(CreditsError::bad_input(BadInput::OutOfRange, "priority", "must be between 0 and 100"));
    }
    let expires_at = expires_at.unwrap_or_else(TimestampWithTimeZone::positive_infinity);
    if effective_at.is_some_and(|at| !at.is_finite()) {
        return Err(CreditsError::bad_input(BadInput::Invalid, "effective_at", "must be a finite time (NULL: now)"));
    }
    if expires_at.is_neg_infinity() || effective_at.is_some_and(|at| input::time(at) >= input::time(expires_at)) {
        return Err(CreditsError::bad_input(BadInput::Invalid, "expires_at", "must be after effective_at"));
    }
    Ok(Terms { category, priority, effective_at, expires_at })
}

fn give(
    account: Option<&str>,
    amount: Option<AnyNumeric>,
    terms: Terms,
    idempotency_key: Option<&str>,
    reason: Option<&str>,
    metadata: Option<JsonB>,
) -> Result<(i64, AnyNumeric, AnyNumeric)> {
    let account = input::account(account)?;
    let amount = input::amount("amount", amount)?;
    if amount.is_zero() {
        return Err(CreditsError::bad_input(BadInput::Invalid, "amount", "must be positive"));
    }
    let idempotency_key = input::idempotency_key(idempotency_key)?;
    let reason = input::reason(reason)?;
    let metadata = input::metadata(metadata)?;
    let now = input::now();
    if input::time(terms.expires_at) <= now {
        return Err(CreditsError::bad_input(BadInput::Invalid, "expires_at", "must be in the future"));
    }
    Spi::connect_mut(|client| {
        accounts::open_empty(client, account);
        let row = accounts::lock(client, account).expect("just opened");
        refuse_hot(&row)?;
        let (row, figures) = pools::settled(client, account, row, now);
        if let Some(key) = idempotency_key {
            if let Some(original) = pools::keyed(client, account, key) {
                original.same(account, key, "grant", amount.value.clone())?;
                return Ok((
                    original.field("grant_id").expect("a grant's outcome has its id"),
                    original.field("remaining").expect("remaining"),
                    original.field("balance").expect("balance"),
                ));
            }
        }
        if !input::fits(&(row.balance.clone() + amount.value.clone())) {
            return Err(CreditsError::bad_input(
                BadInput::OutOfRange,
                "amount",
                format!("would take the balance beyond {} digits", input::MAX_INTEGER_DIGITS),
            ));
        }
        let entry = GrantEntry { reason, idempotency_key, metadata: metadata.as_ref(), source: Source::Granted };
        Ok(add(client, account, &row, &figures, &amount.value, &terms, &entry, now))
    })
}

/// Who a new grant's entry is for.
pub struct GrantEntry<'a> {
    pub reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<&'a JsonB>,
    pub source: Source,
}

/// Where a new grant comes from.
pub enum Source {
    /// `credits.grant` (kind `grant`, with its outcome).
    Granted,
    /// The part of transfer `id` the account receives as a grant (kind `transfer_in`).
    Transfer(i64),
    /// The refund of entry `entry` to a closed grant, reissued (kind `refund`): the
    /// refund's own entry id, and its outcome when it has a key.
    Refund { entry: i64, id: i64, outcome: Option<serde_json::Value> },
}

/// Adds a grant of `amount` on `terms` to the locked, settled account `row` with
/// `figures` (its first grant moves its own balance into pool 0); credit in effect repays
/// an overdraft first. Returns the grant, what it has left and the balance after.
#[allow(clippy::too_many_arguments)]
pub fn add(
    client: &SpiClient<'_>,
    account: &str,
    row: &Account,
    figures: &decide::Figures<AnyNumeric>,
    amount: &AnyNumeric,
    terms: &Terms,
    entry: &GrantEntry<'_>,
    now: decide::Time,
) -> (i64, AnyNumeric, AnyNumeric) {
    let _own = OwnWrite::begin(account);
    if !row.has_grants {
        POOL_OWN_BALANCE.first_row(client, &[account.into()]);
    }
    let effective_at = terms.effective_at.unwrap_or_else(|| input::timestamp(now));
    // Only credit in effect repays an overdraft.
    let own: AnyNumeric = OWN_POOL.first_value(client, &[account.into()]).expect("the own pool");
    let granted = if input::time(effective_at) <= now {
        decide::grant(&own, amount)
    } else {
        decide::Granted { repaid: AnyNumeric::from(0), remaining: amount.clone() }
    };
    let pending = canonical(row.balance.clone() - figures.balance.clone());
    let added_pending = if input::time(effective_at) > now { amount.clone() } else { AnyNumeric::from(0) };
    let (kind, transfer_id, refund_of, entry_id, outcome) = match &entry.source {
        Source::Granted => ("grant", None, None, None, None),
        Source::Transfer(id) => ("transfer_in", Some(*id), None, None, None),
        Source::Refund { entry, id, outcome } => ("refund", None, Some(*entry), Some(*id), outcome.clone().map(JsonB)),
    };
    let written = GRANT
        .first_row(
            client,
            &[
                account.into(),
                amount.clone().into(),
                granted.repaid.clone().into(),
                terms.category.name().into(),
                terms.priority.into(),
                effective_at.into(),
                terms.expires_at.into(),
                entry.reason.into(),
                entry.idempotency_key.into(),
                entry.metadata.map(|m| JsonB(m.0.clone())).into(),
                canonical(pending + added_pending).into(),
                kind.into(),
                transfer_id.into(),
                refund_of.into(),
                outcome.into(),
                entry_id.into(),
            ],
        )
        .expect("the locked account");
    (written.column(1), canonical(granted.remaining), written.column(2))
}

fn void(grant_id: Option<i64>, reason: Option<&str>, idempotency_key: Option<&str>) -> Result<(i64, AnyNumeric, AnyNumeric)> {
    let grant_id = grant_id_of(grant_id)?;
    let reason = input::reason(reason)?;
    let idempotency_key = input::idempotency_key(idempotency_key)?;
    let now = input::now();
    Spi::connect_mut(|client| {
        let account = account_of(client, grant_id)?;
        let row = accounts::lock(client, &account).expect("a grant's account");
        let (row, figures) = pools::settled(client, &account, row, now);
        if let Some(key) = idempotency_key {
            if let Some(original) = pools::keyed(client, &account, key) {
                let same = original.kind == "void" && original.field::<i64>("grant_id") == Some(grant_id);
                if !same {
                    return Err(original.conflict(&account, key, "void", AnyNumeric::from(0)));
                }
                return Ok((grant_id, original.field("voided").expect("voided"), original.field("balance").expect("balance")));
            }
        }
        let pending = canonical(row.balance.clone() - figures.balance.clone());
        let _own = OwnWrite::begin(&account);
        let written = VOID
            .first_row(
                client,
                &[account.as_str().into(), grant_id.into(), input::timestamp(now).into(), reason.into(), idempotency_key.into(), pending.into()],
            )
            .ok_or_else(|| CreditsError::Refused {
                message: "This grant has expired, was voided or is used up.",
                hint: "See the grant's status in credits.grants.",
            })?;
        Ok((grant_id, written.column(1), written.column(2)))
    })
}

fn reexpire(grant_id: Option<i64>, expires_at: Option<TimestampWithTimeZone>) -> Result<()> {
    let grant_id = grant_id_of(grant_id)?;
    let expires_at = expires_at.unwrap_or_else(TimestampWithTimeZone::positive_infinity);
    let now = input::now();
    Spi::connect_mut(|client| {
        let account = account_of(client, grant_id)?;
        let row = accounts::lock(client, &account).expect("a grant's account");
        let (row, _) = pools::settled(client, &account, row, now);
        let _own = OwnWrite::begin(&account);
        SET_EXPIRY
            .first_row(client, &[account.as_str().into(), grant_id.into(), expires_at.into()])
            .ok_or(CreditsError::Refused {
                message: "This grant has expired, was voided or is used up, or the new expiry is not after its effective_at.",
                hint: "See the grant's status and effective_at in credits.grants.",
            })?;
        // An expiry in the past takes effect now.
        pools::settled(client, &account, row, now);
        Ok(())
    })
}

pub fn refuse_hot(row: &Account) -> Result<()> {
    if row.slots > 0 {
        return Err(CreditsError::Refused {
            message: "A hot account (credits.set_slots) cannot receive grants: set its slots to 0 first.",
            hint: "Its slots cannot tell which grant their money came from; give grants (and transfer credit that \
                   came from grants) to plain accounts.",
        });
    }
    Ok(())
}

fn grant_id_of(grant_id: Option<i64>) -> Result<i64> {
    match grant_id {
        None => Err(CreditsError::bad_input(BadInput::Null, "grant_id", "must not be NULL")),
        Some(id) if id <= 0 => Err(CreditsError::GrantNotFound { grant_id: id }),
        Some(id) => Ok(id),
    }
}

fn account_of(client: &SpiClient<'_>, grant_id: i64) -> Result<String> {
    GRANT_ACCOUNT.first_value(client, &[grant_id.into()]).ok_or(CreditsError::GrantNotFound { grant_id })
}

static GRANT_ACCOUNT: Statement = Statement {
    sql: "SELECT account FROM credits.account_grants WHERE grant_id = $1 AND grant_id <> 0",
    args: &[INT8],
    generic: true,
};

static OWN_POOL: Statement = Statement {
    sql: "SELECT remaining FROM credits.account_grants WHERE account = $1 AND grant_id = 0",
    args: &[TEXT],
    generic: true,
};

/// The account's first grant: its own balance (less what holds reserve of it) becomes
/// pool 0, a paid grant of priority 50 in effect since always that never expires.
static POOL_OWN_BALANCE: Statement = Statement {
    sql: "WITH own AS (
              INSERT INTO credits.account_grants
                     (account, grant_id, amount, remaining, held, category, priority, effective_at, expires_at, reason)
              OVERRIDING SYSTEM VALUE
              SELECT account, 0, 0, pg_catalog.trim_scale(balance - held), held, 'paid', 50, '-infinity', 'infinity',
                     'own balance'
                FROM credits.accounts WHERE account = $1)
          UPDATE credits.accounts SET has_grants = true WHERE account = $1 RETURNING has_grants",
    args: &[TEXT],
    generic: true,
};

/// $2 the amount, $3 what repays the overdraft, $11 the balance not yet in effect after,
/// $12 the entries' kind (grant, transfer_in, refund), $13 their transfer, $14 the entry
/// refunded, $15 a refund's outcome, $16 its entry id (NULL: the next). A grant's entry carries the key and the outcome; the
/// repayment is an entry of the own balance.
static GRANT: Statement = Statement {
    sql: "WITH granted AS (
              INSERT INTO credits.account_grants
                     (account, amount, remaining, category, priority, effective_at, expires_at, reason, metadata)
              VALUES ($1, $2, pg_catalog.trim_scale($2 - $3), $4, $5, $6, $7, $8, $10)
           RETURNING grant_id, remaining),
          repaid AS (
              UPDATE credits.account_grants SET remaining = pg_catalog.trim_scale(remaining + $3)
               WHERE account = $1 AND grant_id = 0 AND $3 <> 0),
          moved AS (
              UPDATE credits.accounts SET balance = pg_catalog.trim_scale(balance + $2), updated_at = pg_catalog.now()
               WHERE account = $1 RETURNING balance),
          entries AS (
              INSERT INTO credits.ledger (id, account, amount, balance_after, kind, reason, idempotency_key, metadata,
                                          grant_id, outcome, transfer_id, refund_of)
              OVERRIDING SYSTEM VALUE
              SELECT coalesce($16, pg_catalog.nextval('credits.ledger_id_seq')), $1, granted.remaining, pg_catalog.trim_scale(moved.balance - $3), $12, $8, $9, $10, granted.grant_id,
                     CASE WHEN $12 = 'grant' THEN pg_catalog.jsonb_build_object(
                         'amount', $2, 'grant_id', granted.grant_id, 'remaining', granted.remaining,
                         'balance', pg_catalog.trim_scale(moved.balance - $11)) ELSE $15 END,
                     $13, $14
                FROM granted, moved
              UNION ALL
              SELECT pg_catalog.nextval('credits.ledger_id_seq'), $1, $3, moved.balance, $12, 'repays the overdraft',
                     NULL, NULL, NULL, NULL, $13, $14
                FROM moved WHERE $3 <> 0)
          SELECT granted.grant_id, pg_catalog.trim_scale(moved.balance - $11) FROM granted, moved",
    args: &[TEXT, NUMERIC, NUMERIC, TEXT, INT4, TIMESTAMPTZ, TIMESTAMPTZ, TEXT, TEXT, JSONB, NUMERIC, TEXT, INT8, INT8, JSONB, INT8],
    generic: true,
};

/// Closes an open grant of the locked account; $6 the balance not in effect before (after:
/// less the grant, if it was not in effect itself).
static VOID: Statement = Statement {
    sql: "WITH open AS (
              SELECT grant_id, remaining,
                     $6 - CASE WHEN effective_at > $3 THEN remaining ELSE 0 END AS pending_after
                FROM credits.account_grants
               WHERE account = $1 AND grant_id = $2 AND closed IS NULL),
          closed AS (
              UPDATE credits.account_grants g SET closed = 'voided', closed_at = $3, remaining = 0
                FROM open WHERE g.account = $1 AND g.grant_id = open.grant_id),
          moved AS (
              UPDATE credits.accounts a SET balance = pg_catalog.trim_scale(a.balance - open.remaining), updated_at = pg_catalog.now()
                FROM open WHERE a.account = $1
           RETURNING a.balance, open.remaining, open.pending_after),
          entry AS (
              INSERT INTO credits.ledger (account, amount, balance_after, kind, reason, idempotency_key, grant_id, outcome)
              SELECT $1, -moved.remaining, moved.balance, 'void', $4, $5, $2,
                     pg_catalog.jsonb_build_object('amount', -moved.remaining, 'grant_id', $2, 'voided', moved.remaining,
                                                   'balance', pg_catalog.trim_scale(moved.balance - moved.pending_after))
                FROM moved)
          SELECT remaining, pg_catalog.trim_scale(balance - pending_after) FROM moved",
    args: &[TEXT, INT8, TIMESTAMPTZ, TEXT, TEXT, NUMERIC],
    generic: true,
};

/// The account row is written too: every change to a pool comes with one (see `direct`).
static SET_EXPIRY: Statement = Statement {
    sql: "WITH changed AS (
              UPDATE credits.account_grants SET expires_at = $3
               WHERE account = $1 AND grant_id = $2 AND closed IS NULL AND $3 > effective_at RETURNING grant_id),
          touched AS (
              UPDATE credits.accounts SET updated_at = pg_catalog.now() WHERE account = $1 AND EXISTS (SELECT FROM changed))
          SELECT grant_id FROM changed",
    args: &[TEXT, INT8, TIMESTAMPTZ],
    generic: true,
};

static DUE_ACCOUNTS: Statement = Statement {
    sql: "SELECT DISTINCT account FROM (
              SELECT account FROM credits.account_grants WHERE closed IS NULL AND expires_at <= $1
               ORDER BY expires_at LIMIT $2) due",
    args: &[TIMESTAMPTZ, INT4],
    generic: true,
};

static DUE_OF: Statement = Statement {
    sql: "SELECT pg_catalog.count(*) FROM credits.account_grants
           WHERE account = $1 AND closed IS NULL AND expires_at <= $2 AND grant_id <> 0",
    args: &[TEXT, TIMESTAMPTZ],
    generic: true,
};
