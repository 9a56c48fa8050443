//! A movement of money into or out of one account (a charge or a recharge), validated:
//! what every writer of movements is given, and what it did.

use crate::error::CreditsError;
use crate::input;
use pgrx::{AnyNumeric, JsonB};

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

    /// The argument that carries the amount, as errors name it.
    pub fn field(self) -> &'static str {
        match self {
            Movement::Charge => "cost",
            Movement::Recharge => "amount",
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
    pub fn not_found(&self) -> CreditsError {
        CreditsError::AccountNotFound { account: self.account.to_owned() }
    }
}
