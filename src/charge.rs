//! `credits.charge` and `credits.recharge`, and which writer carries a movement out: the
//! direct path (`direct`) for most charges, the hot path (`hot`) for accounts with slots,
//! and the SQL writer (`ledger`, and `pools` for accounts with grants) for the rest.
//!
//! The writers below never call back up here: one that finds the account changed since
//! it was routed (made hot, or plain again, or gone) writes nothing and returns `None`,
//! and the movement is routed again from what the tables say, without the hints.

use crate::error::{unwrap_or_raise, Result};
use crate::movement::{Applied, Entry, Movement};
use crate::{accounts, direct, hot, input, notify, pools};
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
    if let Some(balance_after) = apply_directly(&entry) {
        return Ok(balance_after);
    }
    Spi::connect_mut(|client| apply(client, &entry)).map(Applied::balance)
}

/// The direct path, taken outside any SPI connection because it needs none; `None` when
/// it does not apply or stepped aside, having written nothing.
fn apply_directly(entry: &Entry<'_>) -> Option<AnyNumeric> {
    let eligible =
        entry.movement == Movement::Charge && !entry.amount.is_zero() && hot::known_slots(entry.account).is_none();
    if !eligible {
        return None;
    }
    let charged = direct::charge(entry)?;
    if let Some(threshold) = &charged.crossed_threshold {
        Spi::connect_mut(|client| notify::low_balance(client, entry.account, &charged.balance, threshold));
    }
    Some(charged.balance)
}

/// Carries the movement out with SQL: by what this backend remembers of the account
/// first, then by what the tables say.
pub fn apply(client: &SpiClient<'_>, entry: &Entry<'_>) -> Result<Applied> {
    if let Some(applied) = apply_as_remembered(client, entry)? {
        return Ok(applied);
    }
    loop {
        if let Some(applied) = apply_as_found(client, entry)? {
            return Ok(applied);
        }
    }
}

fn apply_as_remembered(client: &SpiClient<'_>, entry: &Entry<'_>) -> Result<Option<Applied>> {
    if let Some(slots) = hot::known_slots(entry.account) {
        return hot::apply(client, entry, slots);
    }
    if pools::known_to_have_grants(entry.account) {
        return entry.apply_locked(client);
    }
    apply_as_found(client, entry)
}

fn apply_as_found(client: &SpiClient<'_>, entry: &Entry<'_>) -> Result<Option<Applied>> {
    if entry.idempotency_key.is_none() && !entry.amount.is_zero() {
        if let Some(balance_after) = entry.apply_unlocked(client) {
            return Ok(Some(Applied::Moved(balance_after)));
        }
    }
    // The fast statement wrote nothing: there is a key, nothing to move, the account is
    // missing or hot or has grants, a charge could not be paid, or a recharge would
    // overflow.
    match accounts::slots(client, entry.account) {
        Some(slots) if slots > 0 => hot::apply(client, entry, slots),
        Some(_) => entry.apply_locked(client),
        None if entry.movement == Movement::Charge => Err(entry.not_found()),
        None => {
            accounts::open_empty(client, entry.account);
            entry.apply_locked(client)
        }
    }
}
