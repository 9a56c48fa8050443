//! The money path: `credits.charge` and `credits.recharge`.
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
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::input::canonical;
use crate::plans::{OwnWrite, Statement, JSONB, NUMERIC, TEXT};
use crate::{direct, hot, input, notify, pools};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};

/// Takes `cost` from the account and returns the balance after; raises PT402 if the
/// account cannot pay without going below its `min_balance`.
///
/// No `SET search_path` on this function or on `recharge`: every statement they run pins
/// the search path itself (see `plans`), at a fraction of the cost.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
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
pub enum Movement {
    Charge,
    Recharge,
}

impl Movement {
    pub fn kind(self) -> &'static str {
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

    fn locked_statement(self) -> &'static Statement {
        match self {
            Movement::Charge => &APPLY_CHARGE_LOCKED,
            Movement::Recharge => &APPLY_RECHARGE_LOCKED,
        }
    }

    /// The signed ledger amount this movement of `amount` records.
    pub fn ledger_amount(self, amount: &AnyNumeric) -> AnyNumeric {
        match self {
            Movement::Charge => -amount.clone(),
            Movement::Recharge => amount.clone(),
        }
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
    if let Some(balance_after) = entry.apply_directly() {
        return Ok(balance_after);
    }
    Spi::connect_mut(|client| entry.apply(client)).map(Applied::balance)
}

/// What a movement did: moved the money, or found that its idempotency key already had.
/// Either way, the balance after it.
pub enum Applied {
    Moved(AnyNumeric),
    Replayed(AnyNumeric),
}

impl Applied {
    pub fn balance(self) -> AnyNumeric {
        match self {
            Applied::Moved(balance) | Applied::Replayed(balance) => balance,
        }
    }
}

/// One movement of one account, validated.
pub struct Entry<'a> {
    pub movement: Movement,
    pub account: &'a str,
    pub amount: input::Amount,
    pub reason: Option<&'a str>,
    pub idempotency_key: Option<&'a str>,
    pub metadata: Option<JsonB>,
}

impl Entry<'_> {
    /// The direct path (see `direct`), taken outside any SPI connection because it needs
    /// none; `None` when it does not apply or stepped aside, having written nothing.
    fn apply_directly(&self) -> Option<AnyNumeric> {
        let eligible =
            self.movement == Movement::Charge && !self.amount.is_zero() && hot::known_slots(self.account).is_none();
        if !eligible {
            return None;
        }
        let charged = direct::charge(self)?;
        if let Some(threshold) = &charged.crossed_threshold {
            Spi::connect_mut(|client| notify::low_balance(client, self.account, &charged.balance, threshold));
        }
        Some(charged.balance)
    }

    pub fn apply(&self, client: &SpiClient<'_>) -> Result<Applied> {
        if let Some(slots) = hot::known_slots(self.account) {
            return hot::apply(client, self, slots);
        }
        if pools::known_to_have_grants(self.account) {
            return self.apply_locked(client);
        }
        if self.idempotency_key.is_none() && !self.amount.is_zero() {
            if let Some(balance_after) = self.try_apply(client, self.movement.statement()) {
                return Ok(Applied::Moved(balance_after));
            }
        }
        // The fast path wrote nothing: there is a key, nothing to move, the account is
        // missing or hot, a charge could not be paid, or a recharge would overflow.
        match accounts::slots(client, self.account) {
            Some(slots) if slots > 0 => hot::apply(client, self, slots),
            Some(_) => self.apply_locked(client),
            None if self.movement == Movement::Charge => Err(self.not_found()),
            None => {
                accounts::open_empty(client, self.account);
                self.apply_locked(client)
            }
        }
    }

    /// The slow path of a plain account: lock it so the figures we act on cannot move,
    /// write what has lapsed, and decide on what is left.
    pub fn apply_locked(&self, client: &SpiClient<'_>) -> Result<Applied> {
        let account = accounts::lock(client, self.account).ok_or_else(|| self.not_found())?;
        if account.slots > 0 {
            // Made hot since we looked.
            return hot::apply(client, self, account.slots);
        }
        let now = input::now();
        let (account, figures) = pools::settled(client, self.account, account, now);
        if let Some(key) = self.idempotency_key {
            if let Some(balance_after) = self.replay(client, key)? {
                return Ok(Applied::Replayed(balance_after.unwrap_or(figures.balance)));
            }
        }
        if self.amount.is_zero() {
            // Moves nothing and writes nothing; a recharge still opened the account.
            return Ok(Applied::Moved(figures.balance));
        }
        if !account.has_grants {
            self.check(&account)?;
            return Ok(Applied::Moved(
                self.try_apply(client, self.movement.statement())
                    .expect("a locked account that accepts the movement"),
            ));
        }
        match self.movement {
            Movement::Charge => {
                let balance = pools::charge(client, &self.spend(), &account, &figures, &self.amount.value, now)?;
                Ok(Applied::Moved(canonical(balance - (account.balance - figures.balance))))
            }
            Movement::Recharge => {
                self.check(&account)?;
                pools::adjust_own_balance(client, self.account, &self.amount.value);
                let balance = self.apply_to_locked_balance(client);
                Ok(Applied::Moved(canonical(balance - (account.balance - figures.balance))))
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

    /// Moves the locked, checked account's own balance (see APPLY_CHARGE_LOCKED).
    pub fn apply_to_locked_balance(&self, client: &SpiClient<'_>) -> AnyNumeric {
        self.try_apply(client, self.movement.locked_statement())
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

    pub fn not_found(&self) -> CreditsError {
        CreditsError::AccountNotFound { account: self.account.to_owned() }
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
