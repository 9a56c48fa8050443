//! The SQL writer of a movement of a plain account (`charge` routes movements here).
//!
//! A movement is one prepared statement that updates the account row (taking its row
//! lock, and for a charge only if the floor allows it) and appends the ledger entry from
//! the updated row, so balance and ledger can never disagree. Nothing reads the ledger
//! unless an idempotency key is given, and then only through its unique index.
//!
//! Most charges of plain accounts never get here: `direct` writes them (with or without
//! a key) and hands over only what it cannot do alone.
//!
//! With an idempotency key the account row is locked first and the key looked up after:
//! under READ COMMITTED the lookup's fresh snapshot then sees whatever a racing call with
//! the same key committed while we waited, so the key applies exactly once.
//!
//! Hot accounts (`slots > 0`) take another path, in `hot`: the fast statement here
//! refuses them (`slots = 0`), so a plain charge stays one statement.

use crate::accounts::{self, Account};
use crate::error::{BadInput, CreditsError, Result};
use crate::money::canonical;
use crate::plans::{OwnWrite, Statement, JSONB, NUMERIC, TEXT};
use crate::movement::{Applied, Entry, Movement};
use crate::{input, notify, pools};
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};

fn statement(movement: Movement) -> &'static Statement {
    match movement {
        Movement::Charge => &APPLY_CHARGE,
        Movement::Recharge => &APPLY_RECHARGE,
    }
}

fn locked_statement(movement: Movement) -> &'static Statement {
    match movement {
        Movement::Charge => &APPLY_CHARGE_LOCKED,
        Movement::Recharge => &APPLY_RECHARGE_LOCKED,
    }
}

const MOVEMENT_ARGS: &[pgrx::pg_sys::PgOid] = &[TEXT, NUMERIC, TEXT, TEXT, JSONB];

/// The statement of one movement: update the account row (taking its lock) when `when`
/// holds, and append the ledger entry from the updated row. It returns the balance
/// after and, when a charge took the balance below the account's low-balance threshold,
/// that threshold, so the alert needs no trigger on the money path.
macro_rules! movement_sql {
    (set: $set:literal, when: $when:literal, amount: $amount:literal, kind: $kind:literal,
     balance_after: $balance_after:literal, crossed: $crossed:literal) => {
        concat!(
            "WITH moved AS (
                 UPDATE credits.accounts SET balance = pg_catalog.trim_scale(", $set, "), updated_at = pg_catalog.now()
                  WHERE account = $1 AND ", $when, "
              RETURNING account, balance, ", $crossed, " AS crossed_threshold),
             entry AS (
                 INSERT INTO credits.ledger
                        (account, amount, balance_after, kind, reason, idempotency_key, metadata)
                 SELECT account, ", $amount, ", ", $balance_after, ", '", $kind, "', $3, $4, $5 FROM moved)
             SELECT balance, crossed_threshold FROM moved"
        )
    };
}

macro_rules! charge_sql {
    ($when:literal) => {
        movement_sql!(set: "balance - $2", when: $when, amount: "-$2", kind: "charge", balance_after: "balance",
                      crossed: "CASE WHEN balance < low_balance_threshold
                                      AND balance + $2 >= low_balance_threshold
                                     THEN low_balance_threshold END")
    };
}

macro_rules! recharge_sql {
    ($when:literal) => {
        movement_sql!(set: "balance + $2", when: $when, amount: "$2", kind: "recharge", balance_after: "balance",
                      crossed: "NULL::pg_catalog.numeric")
    };
}

/// The fast paths: plain accounts only (no slots, no grants), no lock taken before; a
/// charge counts every hold, lapsed or not (the slow path writes the lapses and decides
/// again). 1e20 is input::MAX_INTEGER_DIGITS.
static APPLY_CHARGE: Statement = Statement {
    sql: charge_sql!("slots = 0 AND NOT has_grants AND balance - held - $2 >= min_balance"),
    args: MOVEMENT_ARGS,
    generic: false,
};

static APPLY_RECHARGE: Statement = Statement {
    sql: recharge_sql!("slots = 0 AND NOT has_grants AND balance + $2 < 1e20"),
    args: MOVEMENT_ARGS,
    generic: false,
};

/// The same on an account the caller has locked and checked, whatever its slots: for a
/// hot account, once its slots were gathered into the balance.
static APPLY_CHARGE_LOCKED: Statement = Statement {
    sql: charge_sql!("balance - held - $2 >= min_balance"),
    args: MOVEMENT_ARGS,
    generic: false,
};

static APPLY_RECHARGE_LOCKED: Statement = Statement {
    sql: recharge_sql!("balance + $2 < 1e20"),
    args: MOVEMENT_ARGS,
    generic: false,
};

/// A charge of a locked hot account whose row holds only part of the balance (the slots
/// that were not busy, gathered): the balance after is not known exactly, so the entry
/// records none (as a slot's entry) and the caller sends the alert.
static APPLY_CHARGE_TO_PART: Statement = Statement {
    sql: movement_sql!(set: "balance - $2", when: "balance - held - $2 >= min_balance", amount: "-$2", kind: "charge",
                       balance_after: "NULL", crossed: "NULL::pg_catalog.numeric"),
    args: MOVEMENT_ARGS,
    generic: false,
};

impl Entry<'_> {
    /// The slow path of a plain account: lock it so the figures we act on cannot move,
    /// write what has lapsed, and decide on what is left.
    /// `None`, having written nothing, when the account was made hot since the caller
    /// looked: `charge` routes it again.
    pub fn apply_locked(&self, client: &SpiClient<'_>) -> Result<Option<Applied>> {
        let account = accounts::lock(client, self.account).ok_or_else(|| self.not_found())?;
        if account.slots > 0 {
            return Ok(None);
        }
        let now = input::now();
        let (account, figures) = pools::settled(client, self.account, account, now);
        if let Some(key) = self.idempotency_key {
            if let Some(balance_after) = self.replay(client, key)? {
                return Ok(Some(Applied::Replayed(balance_after.unwrap_or(figures.balance))));
            }
        }
        if self.amount.is_zero() {
            // Moves nothing and writes nothing; a recharge still opened the account.
            return Ok(Some(Applied::Moved(figures.balance)));
        }
        if !account.has_grants {
            self.check(&account)?;
            return Ok(Some(Applied::Moved(
                self.try_apply(client, statement(self.movement)).expect("a locked account that accepts the movement"),
            )));
        }
        match self.movement {
            Movement::Charge => {
                let balance = pools::charge(client, &self.spend(), &account, &figures, &self.amount.value, now)?;
                Ok(Some(Applied::Moved(canonical(balance - (account.balance - figures.balance)))))
            }
            Movement::Recharge => {
                self.check(&account)?;
                pools::adjust_own_balance(client, self.account, &self.amount.value);
                let balance = self.apply_to_locked_balance(client);
                Ok(Some(Applied::Moved(canonical(balance - (account.balance - figures.balance)))))
            }
        }
    }

    /// Who the entries of this movement are for, for the pools' writer.
    pub fn spend(&self) -> pools::Spend<'_> {
        pools::Spend {
            account: self.account,
            reason: self.reason,
            idempotency_key: self.idempotency_key,
            metadata: self.metadata.as_ref(),
            hold_id: None,
        }
    }

    /// Whether the locked account (without grants) can take this movement.
    pub fn check(&self, account: &Account) -> Result<()> {
        match self.movement {
            Movement::Charge if !account.figures().can_pay(&self.amount.value) => {
                Err(CreditsError::insufficient(self.account, &account.figures(), &self.amount.value))
            }
            Movement::Recharge if !input::fits(&(account.balance.clone() + self.amount.value.clone())) => {
                Err(CreditsError::bad_input(
                    BadInput::OutOfRange,
                    "amount",
                    format!("would take the balance beyond {} digits", input::MAX_INTEGER_DIGITS),
                ))
            }
            _ => Ok(()),
        }
    }

    /// The fast statement: a plain account (no slots, no grants) that accepts the
    /// movement, without a lock taken first; `None` when it wrote nothing.
    pub fn apply_unlocked(&self, client: &SpiClient<'_>) -> Option<AnyNumeric> {
        self.try_apply(client, statement(self.movement))
    }

    /// Moves the locked, checked account's own balance (see APPLY_CHARGE_LOCKED).
    pub fn apply_to_locked_balance(&self, client: &SpiClient<'_>) -> AnyNumeric {
        self.try_apply(client, locked_statement(self.movement))
            .expect("a locked account that accepts the movement")
    }

    /// Takes a checked charge from the locked row of a hot account that holds part of its
    /// balance (see APPLY_CHARGE_TO_PART); returns the row's balance after.
    pub fn apply_to_locked_part(&self, client: &SpiClient<'_>) -> AnyNumeric {
        self.try_apply(client, &APPLY_CHARGE_TO_PART).expect("a locked row that can pay the charge")
    }

    fn try_apply(&self, client: &SpiClient<'_>, statement: &'static Statement) -> Option<AnyNumeric> {
        let _own = OwnWrite::begin(self.account);
        let row = statement.first_row(client, &self.arguments())?;
        let balance_after: AnyNumeric = row.column(1);
        if let Some(threshold) = row.nullable_column::<AnyNumeric>(2) {
            notify::low_balance(client, self.account, &balance_after, &threshold);
        }
        Some(balance_after)
    }

    /// The arguments of every movement statement: $1 account … $5 metadata.
    pub fn arguments(&self) -> [pgrx::datum::DatumWithOid<'_>; 5] {
        [
            self.account.into(),
            self.amount.value.clone().into(),
            self.reason.into(),
            self.idempotency_key.into(),
            self.metadata.as_ref().map(|m| JsonB(m.0.clone())).into(),
        ]
    }

    /// When this key already recorded the same movement, its balance_after (which is
    /// NULL for an entry a hot account took from a slot).
    pub fn replay(&self, client: &SpiClient<'_>, key: &str) -> Result<Option<Option<AnyNumeric>>> {
        let Some(original) = pools::keyed(client, self.account, key) else {
            return Ok(None);
        };
        let expected_amount = self.movement.ledger_amount(&self.amount.value);
        original.same(self.account, key, self.movement.kind(), expected_amount)?;
        Ok(Some(original.balance_after))
    }
}
