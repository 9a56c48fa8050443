//! Transfers between accounts (`transfer`): the one movement that touches two accounts.
//!
//! Both rows are locked in one order (by account id), so A→B racing B→A waits instead of
//! deadlocking. The source pays as a charge would (its floor, holds and burn order: the
//! decision core's draw); the destination receives what each pool gave: the own balance
//! as its own balance, a grant as a grant of the same category, priority and expiry, in
//! effect at once, so promotional credit moved keeps its expiry (and, like any grant,
//! repays an overdraft first). One `transfer_out` entry per pool drawn and one
//! `transfer_in` entry per part received, all with the transfer's id; the key is the
//! source's, and replays the first call's outcome.
//!
//! Between two plain accounts without a key the transfer is written directly (see
//! `direct`); everything else here, with SQL. Hot accounts are gathered under their lock
//! and spread again, as a recharge is; a hot destination cannot receive grants (PT403),
//! as it cannot be granted any.

use crate::accounts::{self, Account};
use crate::decide::{self, Draw, Figures, Pool};
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::grants::{self, GrantEntry, Source, Terms};
use crate::input;
use crate::money::canonical;
use crate::plans::{OwnWrite, Statement, INT8, JSONB, NUMERIC, TEXT};
use crate::pools::{self, Spend, Spent};
use crate::{direct, hot};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};
use serde_json::json;

/// Moves `amount` from one account to another; returns the transfer and both balances after.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn transfer(
    from_account: Option<&str>,
    to_account: Option<&str>,
    amount: Option<AnyNumeric>,
    idempotency_key: default!(Option<&str>, "NULL"),
    reason: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
) -> TableIterator<'static, (name!(transfer_id, i64), name!(from_balance, AnyNumeric), name!(to_balance, AnyNumeric))> {
    TableIterator::once(unwrap_or_raise(move_credit(from_account, to_account, amount, idempotency_key, reason, metadata)))
}

type Moved = (i64, AnyNumeric, AnyNumeric);

fn move_credit(
    from_account: Option<&str>,
    to_account: Option<&str>,
    amount: Option<AnyNumeric>,
    idempotency_key: Option<&str>,
    reason: Option<&str>,
    metadata: Option<JsonB>,
) -> Result<Moved> {
    let from = input::account_in("from_account", from_account)?;
    let to = input::account_in("to_account", to_account)?;
    if from == to {
        return Err(CreditsError::bad_input(BadInput::Invalid, "to_account", "must not be from_account"));
    }
    let amount = input::amount("amount", amount)?;
    if amount.is_zero() {
        return Err(CreditsError::bad_input(BadInput::Invalid, "amount", "must be positive"));
    }
    let amount = amount.value;
    let idempotency_key = input::idempotency_key(idempotency_key)?;
    let reason = input::reason(reason)?;
    let metadata = input::metadata(metadata)?;
    let now = input::now();
    if idempotency_key.is_none() {
        if let Some(done) = direct::transfer(from, to, &amount, reason, metadata.as_ref()) {
            if let Some(threshold) = &done.crossed_threshold {
                Spi::connect_mut(|client| crate::notify::low_balance(client, from, &done.from_balance, threshold));
            }
            return Ok((done.transfer_id, done.from_balance, done.to_balance));
        }
    }
    Spi::connect_mut(|client| {
        // One lock order for every pair; the source's absence is reported first.
        let (first, second) = if from < to { (from, to) } else { (to, from) };
        let locked_first = accounts::lock(client, first);
        let locked_second = accounts::lock(client, second);
        let (source, destination) = if from < to { (locked_first, locked_second) } else { (locked_second, locked_first) };
        let source = source.ok_or_else(|| accounts::not_found(from))?;
        let destination = destination.ok_or_else(|| accounts::not_found(to))?;
        if let Some(key) = idempotency_key {
            if let Some(original) = pools::keyed(client, from, key) {
                original.same(from, key, "transfer_out", -amount.clone())?;
                if original.field::<String>("to_account").as_deref() != Some(to) {
                    return Err(original.conflict(from, key, "transfer_out", -amount));
                }
                return Ok((
                    original.field("transfer_id").expect("a transfer's outcome has its id"),
                    original.field("from_balance").expect("from_balance"),
                    original.field("to_balance").expect("to_balance"),
                ));
            }
        }
        let (source_slots, destination_slots) = (source.slots, destination.slots);
        let (source, source_figures) = hot::whole(client, from, source, now);
        let (destination, destination_figures) = hot::whole(client, to, destination, now);
        let spend = Spend { account: from, reason, idempotency_key, metadata: metadata.as_ref(), hold_id: None };
        let result = write(client, &spend, to, (&source, &source_figures), (&destination, &destination_figures), &amount, now);
        hot::spread(client, from, source_slots);
        hot::spread(client, to, destination_slots);
        result
    })
}

/// Writes the transfer of `amount` from the locked, settled (and gathered) source to the
/// destination, each with its figures.
fn write(
    client: &SpiClient<'_>,
    spend: &Spend<'_>,
    to: &str,
    (source, source_figures): (&Account, &Figures<AnyNumeric>),
    (destination, destination_figures): (&Account, &Figures<AnyNumeric>),
    amount: &AnyNumeric,
    now: decide::Time,
) -> Result<Moved> {
    let from = spend.account;
    let (draws, pools) = pools::draws(client, from, source, source_figures, amount, now)?;
    let grant_parts: Vec<(&Draw<AnyNumeric>, &Pool<AnyNumeric>)> = draws
        .iter()
        .filter(|draw| draw.pool != decide::OWN_BALANCE)
        .map(|draw| (draw, pools.iter().find(|pool| pool.id == draw.pool).expect("a drawn pool was read")))
        .collect();
    if !grant_parts.is_empty() {
        grants::refuse_hot(destination)?;
    }
    if !input::fits(&(destination.balance.clone() + amount.clone())) {
        return Err(CreditsError::bad_input(
            BadInput::OutOfRange,
            "amount",
            format!("would take {to}'s balance beyond {} digits", input::MAX_INTEGER_DIGITS),
        ));
    }
    let transfer_id: i64 = NEXT_TRANSFER.first_value(client, &[]).expect("a sequence value");
    let from_balance = canonical(source_figures.balance.clone() - amount.clone());
    let to_balance = canonical(destination_figures.balance.clone() + amount.clone());
    let outcome = spend.idempotency_key.map(|_| {
        json!({
            "amount": direct::json_number(&-amount.clone()),
            "to_account": to,
            "transfer_id": transfer_id,
            "from_balance": direct::json_number(&from_balance),
            "to_balance": direct::json_number(&to_balance),
        })
    });
    pools::write_draws(client, spend, &draws, amount, Spent::TransferOut { id: transfer_id, outcome });
    let own = draws
        .iter()
        .filter(|draw| draw.pool == decide::OWN_BALANCE)
        .fold(AnyNumeric::from(0), |total, draw| total + draw.amount.clone());
    if own > AnyNumeric::from(0) {
        let _own = OwnWrite::begin(to);
        RECEIVE_OWN.first_row(
            client,
            &[to.into(), own.into(), spend.reason.into(), spend.metadata.map(|m| JsonB(m.0.clone())).into(), transfer_id.into()],
        );
    }
    let entry =
        GrantEntry { reason: spend.reason, idempotency_key: None, metadata: spend.metadata, source: Source::Transfer(transfer_id) };
    let mut receiving = (destination.clone(), destination_figures.clone());
    for (draw, pool) in grant_parts {
        let expires_at = input::timestamp(pool.expires_at);
        let terms = Terms { category: pool.category, priority: pool.priority, effective_at: None, expires_at };
        grants::add(client, to, &receiving.0, &receiving.1, &draw.amount, &terms, &entry, now);
        // The next part sees the grants before it (the first turned the own balance into a pool).
        receiving = pools::settled(client, to, accounts::lock(client, to).expect("locked"), now);
    }
    Ok((transfer_id, from_balance, to_balance))
}

static NEXT_TRANSFER: Statement = Statement {
    sql: "SELECT pg_catalog.nextval('credits.transfer_ids')",
    args: &[],
    generic: true,
};

/// What the destination receives of the source's own balance, into its own (pool 0 too,
/// when it has grants): $2 the amount, $3/$4 reason and metadata, $5 the transfer.
static RECEIVE_OWN: Statement = Statement {
    sql: concat!(
        "WITH pool AS (
             UPDATE credits.account_grants SET remaining = pg_catalog.trim_scale(remaining + $2)
              WHERE account = $1 AND grant_id = 0),
         moved AS (
             UPDATE credits.accounts a SET balance = pg_catalog.trim_scale(a.balance + $2), updated_at = pg_catalog.now()
              WHERE a.account = $1 RETURNING a.balance, ", row_is_whole!(), " AS whole)
         INSERT INTO credits.ledger (account, amount, balance_after, kind, reason, metadata, transfer_id)
         SELECT $1, $2, CASE WHEN moved.whole THEN moved.balance END, 'transfer_in', $3, $4, $5 FROM moved
         RETURNING id"
    ),
    args: &[TEXT, NUMERIC, TEXT, JSONB, INT8],
    generic: true,
};
