//! Accounts: opening them, reading balances, and the settings a billing admin changes.
//!
//! Every function here touches exactly one account row, found by its primary key.

use crate::decide::Figures;
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::input;
use crate::plans::{OwnWrite, Row, Statement, INT8, JSONB, NUMERIC, TEXT, TIMESTAMPTZ};
use pgrx::datum::numeric::Sign;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};

/// Opens an account; `initial` is recorded in the ledger as its opening entry.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn create_account(
    account: Option<&str>,
    initial: default!(Option<AnyNumeric>, 0),
    min_balance: default!(Option<AnyNumeric>, 0),
    low_balance_threshold: default!(Option<AnyNumeric>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
) -> AnyNumeric {
    unwrap_or_raise(open(account, initial, min_balance, low_balance_threshold, metadata))
}

/// The account's balance; PT404 if there is no such account. Like `charge`, it pins
/// the search path per statement (see `plans`) rather than with `SET search_path`.
#[pg_extern(security_definer, stable, parallel_restricted)]
fn balance(account: Option<&str>) -> AnyNumeric {
    unwrap_or_raise(
        input::account(account)
            .and_then(|account| Spi::connect(|client| balance_of(client, account))),
    )
}

/// Whether `charge(account, cost)` would succeed now, without charging or raising PT402.
#[pg_extern(security_definer, stable, parallel_restricted)]
fn can_afford(account: Option<&str>, cost: Option<AnyNumeric>) -> bool {
    unwrap_or_raise(affordable(account, cost))
}

/// Replaces the account's metadata (a JSON object, or NULL).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn set_metadata(account: Option<&str>, metadata: Option<JsonB>) {
    unwrap_or_raise(replace_metadata(account, metadata))
}

/// An account row as the money path needs it. For a hot account `balance` is only the
/// part not spread over its slots.
#[derive(Clone)]
pub struct Account {
    pub balance: AnyNumeric,
    pub min_balance: AnyNumeric,
    pub slots: i32,
    pub low_balance_threshold: Option<AnyNumeric>,
    /// What active holds reserve (expired ones included until their expiry is written).
    pub held: AnyNumeric,
    /// The money is in credits.account_grants (see `pools`).
    pub has_grants: bool,
    /// One of its holds is past its expiry, whose entry is still to be written.
    pub holds_due: bool,
}

impl Account {
    /// The figures a decision starts from, for an account without grants.
    pub fn figures(&self) -> Figures<AnyNumeric> {
        Figures { balance: self.balance.clone(), held: self.held.clone(), min_balance: self.min_balance.clone() }
    }
}

/// The columns of an [`Account`], and whether one of its holds is past its expiry (looked
/// for only when it holds anything), for the row `a`.
macro_rules! account_columns {
    () => {
        "a.balance, a.min_balance, a.slots, a.low_balance_threshold, a.held, a.has_grants,
         a.held > 0 AND EXISTS (SELECT FROM credits.holds h WHERE h.account = a.account AND h.status = 'active'
                                   AND h.expires_at <= pg_catalog.clock_timestamp())"
    };
}

static LOCK: Statement = Statement {
    sql: concat!("SELECT ", account_columns!(), " FROM credits.accounts a WHERE a.account = $1 FOR UPDATE OF a"),
    args: &[TEXT],
    generic: false,
};

/// The account of hold $1, locked. A hold never changes account, so reading it in the
/// statement that takes the lock is safe; the hold itself is read after.
static LOCK_HOLDING: Statement = Statement {
    sql: concat!("SELECT ", account_columns!(), ", a.account::pg_catalog.text FROM credits.accounts a
                  WHERE a.account = (SELECT account FROM credits.holds WHERE hold_id = $1) FOR UPDATE OF a"),
    args: &[INT8],
    generic: false,
};

static SLOTS: Statement = Statement {
    sql: "SELECT slots FROM credits.accounts WHERE account = $1",
    args: &[TEXT],
    generic: false,
};

/// The figures of account $1 in effect at $2, as of the statement's snapshot, without
/// writing anything: the whole balance (a hot account's slots included) less grants not in
/// effect, what expired grants still have and what lapsed holds held of them; the holds
/// that have not lapsed; the floor. In canonical form (slots carry 18 decimal places after
/// a spread, and 98 must not read 98.0). Writers settle the same lapses instead (`pools`).
static FIGURES_NOW: Statement = Statement {
    sql: "WITH a AS (SELECT balance, held, min_balance, slots, has_grants FROM credits.accounts WHERE account = $1),
          lapsed AS (
              SELECT p.pool, p.part FROM a, credits.holds h, ROWS FROM (pg_catalog.unnest(h.pools), pg_catalog.unnest(h.parts)) AS p(pool, part)
               WHERE a.held <> 0 AND h.account = $1 AND h.status = 'active' AND h.expires_at <= $2)
          SELECT pg_catalog.trim_scale(a.balance
                 + CASE WHEN a.slots > 0
                        THEN (SELECT coalesce(pg_catalog.sum(available), 0) FROM credits.account_slots WHERE account = $1)
                        ELSE 0 END
                 - CASE WHEN a.has_grants THEN
                        (SELECT coalesce(pg_catalog.sum(g.remaining), 0) FROM credits.account_grants g
                          WHERE g.account = $1 AND g.closed IS NULL AND g.expires_at <= $2)
                      + (SELECT coalesce(pg_catalog.sum(g.remaining + g.held), 0) FROM credits.account_grants g
                          WHERE g.account = $1 AND g.closed IS NULL AND g.effective_at > $2)
                      + (SELECT coalesce(pg_catalog.sum(l.part), 0) FROM lapsed l
                           JOIN credits.account_grants g ON g.account = $1 AND g.grant_id = l.pool
                          WHERE g.closed IS NOT NULL OR g.expires_at <= $2)
                        ELSE 0 END),
                 pg_catalog.trim_scale(a.held - (SELECT coalesce(pg_catalog.sum(part), 0) FROM lapsed)),
                 a.min_balance
            FROM a",
    args: &[TEXT, TIMESTAMPTZ],
    generic: false,
};

static OPEN_EMPTY: Statement = Statement {
    sql: "INSERT INTO credits.accounts (account, balance) VALUES ($1, 0)
          ON CONFLICT (account) DO NOTHING RETURNING balance",
    args: &[TEXT],
    generic: false,
};

/// Opens at balance 0: the initial balance then moves in with its ledger entry, like any
/// other movement, so nothing is left for the INSERT reconciliation to record.
static OPEN: Statement = Statement {
    sql: "INSERT INTO credits.accounts
                 (account, balance, min_balance, low_balance_threshold, metadata)
          VALUES ($1, 0, $2, $3, $4)
          ON CONFLICT (account) DO NOTHING RETURNING balance",
    args: &[TEXT, NUMERIC, NUMERIC, JSONB],
    generic: false,
};

static OPENING_ENTRY: Statement = Statement {
    sql: "WITH moved AS (
              UPDATE credits.accounts SET balance = balance + $2
               WHERE account = $1
           RETURNING account, balance)
          INSERT INTO credits.ledger (account, amount, balance_after, kind, reason)
          SELECT account, $2, balance, 'opening', 'initial balance' FROM moved
          RETURNING balance_after",
    args: &[TEXT, NUMERIC],
    generic: false,
};

static SET_METADATA: Statement = Statement {
    sql: "UPDATE credits.accounts SET metadata = $2, updated_at = pg_catalog.now()
           WHERE account = $1 RETURNING account",
    args: &[TEXT, JSONB],
    generic: false,
};

/// Locks the account row until the end of the transaction.
pub fn lock(client: &SpiClient<'_>, account: &str) -> Option<Account> {
    LOCK.first_row(client, &[account.into()]).map(|row| Account::from(&row))
}

/// Locks the account of hold `hold_id`; its id and row, or None when there is no such hold.
pub fn lock_holding(client: &SpiClient<'_>, hold_id: i64) -> Option<(String, Account)> {
    LOCK_HOLDING.first_row(client, &[hold_id.into()]).map(|row| (row.column(8), Account::from(&row)))
}

impl From<&Row<'_>> for Account {
    fn from(row: &Row<'_>) -> Account {
        Account {
            balance: row.column(1),
            min_balance: row.column(2),
            slots: row.column(3),
            low_balance_threshold: row.nullable_column(4),
            held: row.column(5),
            has_grants: row.column(6),
            holds_due: row.column(7),
        }
    }
}

/// How many slots the account has (0: a plain account), without locking it.
pub fn slots(client: &SpiClient<'_>, account: &str) -> Option<i32> {
    SLOTS.first_value(client, &[account.into()])
}

pub fn balance_of(client: &SpiClient<'_>, account: &str) -> Result<AnyNumeric> {
    figures_now(client, account).map(|figures| figures.balance)
}

/// The account's figures in effect now (see FIGURES_NOW).
pub fn figures_now(client: &SpiClient<'_>, account: &str) -> Result<Figures<AnyNumeric>> {
    let row = FIGURES_NOW
        .first_row(client, &[account.into(), input::timestamp(input::now()).into()])
        .ok_or_else(|| not_found(account))?;
    Ok(Figures { balance: row.column(1), held: row.column(2), min_balance: row.column(3) })
}

/// What the account can spend now: balance − active holds − floor.
#[pg_extern(security_definer, stable, parallel_restricted)]
fn available(account: Option<&str>) -> AnyNumeric {
    unwrap_or_raise(
        input::account(account)
            .and_then(|account| Spi::connect(|client| figures_now(client, account)))
            .map(|figures| crate::money::canonical(figures.available())),
    )
}

/// Opens a missing account with nothing on it; a no-op when it exists.
pub fn open_empty(client: &SpiClient<'_>, account: &str) {
    OPEN_EMPTY.first_row(client, &[account.into()]);
}

pub fn not_found(account: &str) -> CreditsError {
    CreditsError::AccountNotFound { account: account.to_owned() }
}

fn open(
    account: Option<&str>,
    initial: Option<AnyNumeric>,
    min_balance: Option<AnyNumeric>,
    low_balance_threshold: Option<AnyNumeric>,
    metadata: Option<JsonB>,
) -> Result<AnyNumeric> {
    let account = input::account(account)?;
    let initial = input::signed_amount("initial", initial)?;
    let min_balance = input::signed_amount("min_balance", min_balance)?;
    let low_balance_threshold =
        input::optional_signed_amount("low_balance_threshold", low_balance_threshold)?;
    let metadata = input::metadata(metadata)?;
    if initial < min_balance {
        return Err(CreditsError::bad_input(
            BadInput::Invalid,
            "initial",
            "must not be below min_balance",
        ));
    }
    Spi::connect_mut(|client| {
        let _own = OwnWrite::begin(account);
        let opened: Option<AnyNumeric> = OPEN.first_value(
            client,
            &[account.into(), min_balance.into(), low_balance_threshold.into(), metadata.into()],
        );
        let Some(balance) = opened else {
            return Err(CreditsError::AccountExists { account: account.to_owned() });
        };
        if initial.sign() == Sign::Zero {
            return Ok(balance);
        }
        Ok(OPENING_ENTRY
            .first_value(client, &[account.into(), initial.into()])
            .expect("the account was just opened"))
    })
}

fn affordable(account: Option<&str>, cost: Option<AnyNumeric>) -> Result<bool> {
    let account = input::account(account)?;
    let cost = input::amount("cost", cost)?;
    Spi::connect(|client| figures_now(client, account)).map(|figures| figures.can_pay(&cost.value))
}

fn replace_metadata(account: Option<&str>, metadata: Option<JsonB>) -> Result<()> {
    let account = input::account(account)?;
    let metadata = input::metadata(metadata)?;
    Spi::connect_mut(|client| {
        SET_METADATA
            .first_row(client, &[account.into(), metadata.into()])
            .map(drop)
            .ok_or_else(|| not_found(account))
    })
}
