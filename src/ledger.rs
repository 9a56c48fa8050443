//! The money path: `credits.charge` and `credits.recharge`.
//!
//! A movement is one prepared statement that updates the account row (taking its row
//! lock, and for a charge only if the floor allows it) and appends the ledger entry from
//! the updated row, so balance and ledger can never disagree. Nothing reads the ledger
//! unless an idempotency key is given, and then only through its unique index.
//!
//! With an idempotency key the account row is locked first and the key looked up after:
//! under READ COMMITTED the lookup's fresh snapshot then sees whatever a racing call with
//! the same key committed while we waited, so the key applies exactly once.

use crate::accounts::{self, Account};
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::input;
use crate::plans::{OwnWrite, Statement, JSONB, NUMERIC, TEXT};
use pgrx::datum::numeric::Sign;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};

/// Takes `cost` from the account and returns the balance after; raises PT402 if the
/// account cannot pay without going below its `min_balance`.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn charge(
    account: Option<&str>,
    cost: Option<AnyNumeric>,
    reason: default!(Option<&str>, "NULL"),
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
) -> AnyNumeric {
    unwrap_or_raise(movement(
        Movement::Charge,
        account,
        cost,
        reason,
        idempotency_key,
        metadata,
    ))
}

/// Adds `amount` to the account, creating it if it does not exist yet; returns the
/// balance after.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn recharge(
    account: Option<&str>,
    amount: Option<AnyNumeric>,
    reason: default!(Option<&str>, "NULL"),
    idempotency_key: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
) -> AnyNumeric {
    unwrap_or_raise(movement(
        Movement::Recharge,
        account,
        amount,
        reason,
        idempotency_key,
        metadata,
    ))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Movement {
    Charge,
    Recharge,
}

impl Movement {
    fn kind(self) -> &'static str {
        match self {
            Movement::Charge => "charge",
            Movement::Recharge => "recharge",
        }
    }

    fn field(self) -> &'static str {
        match self {
            Movement::Charge => "cost",
            Movement::Recharge => "amount",
        }
    }

    fn statement(self) -> &'static Statement {
        match self {
            Movement::Charge => &APPLY_CHARGE,
            Movement::Recharge => &APPLY_RECHARGE,
        }
    }

    /// The signed ledger amount this movement of `amount` records.
    fn ledger_amount(self, amount: &AnyNumeric) -> AnyNumeric {
        match self {
            Movement::Charge => -amount.clone(),
            Movement::Recharge => amount.clone(),
        }
    }
}

const MOVEMENT_ARGS: &[pgrx::pg_sys::PgOid] = &[TEXT, NUMERIC, TEXT, TEXT, JSONB];

static APPLY_CHARGE: Statement = Statement {
    sql: "WITH moved AS (
              UPDATE credits.accounts
                 SET balance = balance - $2, updated_at = pg_catalog.now()
               WHERE account = $1 AND balance - $2 >= min_balance
           RETURNING account, balance)
          INSERT INTO credits.ledger
                 (account, amount, balance_after, kind, reason, idempotency_key, metadata)
          SELECT account, -$2, balance, 'charge', $3, $4, $5 FROM moved
          RETURNING balance_after",
    args: MOVEMENT_ARGS,
};

static APPLY_RECHARGE: Statement = Statement {
    sql: "WITH moved AS (
              UPDATE credits.accounts
                 SET balance = balance + $2, updated_at = pg_catalog.now()
               WHERE account = $1 AND balance + $2 < 1e20  -- input::MAX_INTEGER_DIGITS
           RETURNING account, balance)
          INSERT INTO credits.ledger
                 (account, amount, balance_after, kind, reason, idempotency_key, metadata)
          SELECT account, $2, balance, 'recharge', $3, $4, $5 FROM moved
          RETURNING balance_after",
    args: MOVEMENT_ARGS,
};

static FIND_KEY: Statement = Statement {
    sql: "SELECT kind, amount, balance_after FROM credits.ledger
           WHERE account = $1 AND idempotency_key = $2",
    args: &[TEXT, TEXT],
};

fn movement(
    movement: Movement,
    account: Option<&str>,
    amount: Option<AnyNumeric>,
    reason: Option<&str>,
    idempotency_key: Option<&str>,
    metadata: Option<JsonB>,
) -> Result<AnyNumeric> {
    let account = input::account(account)?;
    let amount = input::amount(movement.field(), amount)?;
    let reason = input::reason(reason)?;
    let idempotency_key = input::idempotency_key(idempotency_key)?;
    let metadata = input::metadata(metadata)?;
    let entry = Entry { movement, account, amount, reason, idempotency_key, metadata };
    Spi::connect_mut(|client| entry.apply(client))
}

struct Entry<'a> {
    movement: Movement,
    account: &'a str,
    amount: AnyNumeric,
    reason: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    metadata: Option<JsonB>,
}

impl Entry<'_> {
    fn apply(&self, client: &SpiClient<'_>) -> Result<AnyNumeric> {
        if let Some(key) = self.idempotency_key {
            self.lock_account(client)?;
            if let Some(balance_after) = self.replay(client, key)? {
                return Ok(balance_after);
            }
        }
        if self.amount.sign() == Sign::Zero {
            // Moves nothing and writes nothing; a recharge still opens the account.
            return match self.movement {
                Movement::Charge => accounts::balance_of(client, self.account),
                Movement::Recharge => Ok(self.lock_account(client)?.balance),
            };
        }
        if let Some(balance_after) = self.try_apply(client) {
            return Ok(balance_after);
        }
        // The fast path wrote nothing: the account is missing, a charge could not be paid,
        // or a recharge would overflow the balance, when we looked. Lock the account so the
        // figures we act on cannot move.
        let account = self.lock_account(client)?;
        match self.movement {
            Movement::Charge if account.balance.clone() - self.amount.clone() < account.min_balance => {
                return Err(CreditsError::InsufficientBalance {
                    account: self.account.to_owned(),
                    balance: account.balance,
                    min_balance: account.min_balance,
                    cost: self.amount.clone(),
                });
            }
            Movement::Recharge if !input::fits(&(account.balance + self.amount.clone())) => {
                return Err(CreditsError::bad_input(
                    BadInput::OutOfRange,
                    "amount",
                    format!("would take the balance beyond {} digits", input::MAX_INTEGER_DIGITS),
                ));
            }
            _ => {}
        }
        Ok(self.try_apply(client).expect("a locked account that accepts the movement"))
    }

    /// Locks the account row; a recharge opens a missing account, a charge refuses it.
    fn lock_account(&self, client: &SpiClient<'_>) -> Result<Account> {
        if let Some(account) = accounts::lock(client, self.account) {
            return Ok(account);
        }
        match self.movement {
            Movement::Charge => Err(CreditsError::AccountNotFound { account: self.account.to_owned() }),
            Movement::Recharge => {
                accounts::open_empty(client, self.account);
                Ok(accounts::lock(client, self.account).expect("the account was just opened"))
            }
        }
    }

    fn try_apply(&self, client: &SpiClient<'_>) -> Option<AnyNumeric> {
        let _own = OwnWrite::begin(self.account);
        self.movement.statement().first_value(
            client,
            &[
                self.account.into(),
                self.amount.clone().into(),
                self.reason.into(),
                self.idempotency_key.into(),
                self.metadata.as_ref().map(|m| JsonB(m.0.clone())).into(),
            ],
        )
    }

    /// The original balance_after when this key already recorded the same movement.
    fn replay(&self, client: &SpiClient<'_>, key: &str) -> Result<Option<AnyNumeric>> {
        let Some(row) = FIND_KEY.first_row(client, &[self.account.into(), key.into()]) else {
            return Ok(None);
        };
        let original_kind: String = row.column(1);
        let original_amount: AnyNumeric = row.column(2);
        let expected_amount = self.movement.ledger_amount(&self.amount);
        if original_kind == self.movement.kind() && original_amount == expected_amount {
            return Ok(Some(row.column(3)));
        }
        Err(CreditsError::IdempotencyConflict {
            account: self.account.to_owned(),
            idempotency_key: key.to_owned(),
            original_kind,
            original_amount,
            kind: self.movement.kind(),
            amount: expected_amount,
        })
    }
}
