//! An account's limits: its floor (`min_balance`) and its low-balance alert threshold.
//!
//! Apart from `accounts` because the floor applies to the whole balance, which for a hot
//! account is spread over its slots: setting it gathers them first and spreads them after.

use crate::accounts::{lock, not_found};
use crate::decide::Figures;
use crate::error::{unwrap_or_raise, CreditsError, Result};
use crate::plans::{OwnWrite, Statement, BOOL, NUMERIC, TEXT};
use crate::{hot, input};
use pgrx::prelude::*;
use pgrx::AnyNumeric;

/// Sets the account's floor, keeping its low-balance alert threshold.
#[pg_extern(name = "set_limits", security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn set_floor(account: Option<&str>, min_balance: Option<AnyNumeric>) {
    unwrap_or_raise(limits(account, min_balance, Threshold::Keep))
}

/// Sets the account's floor and its low-balance alert threshold (NULL: no alert).
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn set_limits(account: Option<&str>, min_balance: Option<AnyNumeric>, low_balance_threshold: Option<AnyNumeric>) {
    unwrap_or_raise(limits(account, min_balance, Threshold::Set(low_balance_threshold)))
}

/// What `set_limits` does with the low-balance threshold.
enum Threshold {
    Keep,
    /// NULL clears it.
    Set(Option<AnyNumeric>),
}

fn limits(account: Option<&str>, min_balance: Option<AnyNumeric>, threshold: Threshold) -> Result<()> {
    let account = input::account(account)?;
    let min_balance = input::signed_amount("min_balance", min_balance)?;
    let (low_balance_threshold, given) = match threshold {
        Threshold::Keep => (None, false),
        Threshold::Set(value) => (input::optional_signed_amount("low_balance_threshold", value)?, true),
    };
    Spi::connect_mut(|client| {
        let current = lock(client, account).ok_or_else(|| not_found(account))?;
        // The floor applies to the whole balance: gathered first, spread after.
        let (current, figures) = hot::whole(client, account, current, input::now());
        let figures = Figures { min_balance: min_balance.clone(), ..figures };
        if !figures.can_pay(&AnyNumeric::from(0)) {
            // The same rule as the guard trigger: no write may leave less than the floor
            // after what holds reserve.
            return Err(CreditsError::insufficient(account, &figures, &AnyNumeric::from(0)));
        }
        let _own = OwnWrite::begin(account);
        SET_LIMITS.first_row(
            client,
            &[account.into(), min_balance.into(), low_balance_threshold.into(), given.into()],
        );
        hot::spread(client, account, current.slots);
        Ok(())
    })
}

/// $4: whether $3 is the new threshold (false keeps the current one).
static SET_LIMITS: Statement = Statement {
    sql: "UPDATE credits.accounts
             SET min_balance = $2, updated_at = pg_catalog.now(),
                 low_balance_threshold = CASE WHEN $4 THEN $3 ELSE low_balance_threshold END
           WHERE account = $1 RETURNING account",
    args: &[TEXT, NUMERIC, NUMERIC, BOOL],
    generic: false,
};
