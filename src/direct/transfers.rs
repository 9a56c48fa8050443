//! The direct transfer: between two plain accounts (no slots, no grants) that the source
//! can pay, written straight to the tables like a direct charge, for the same reason (the
//! SQL statements cost several times the writes).
//!
//! Both rows are read with the snapshot a new statement would take and locked in account
//! order, the order every transfer locks in, before either is written: a row changed
//! since the snapshot makes the transfer step aside, having written nothing (the SQL path
//! then decides on the latest versions, under the same locks, or raises the error). Once
//! both are locked, nobody can change them, so both updates succeed.

use super::{with_tables, Also, NewEntry, Tables, Update, ACCOUNT_COLUMNS};
use crate::money::canonical;
use pgrx::pg_sys::{self, Datum};
use pgrx::{AnyNumeric, FromDatum, IntoDatum, JsonB};

/// A transfer written directly: its id, both balances after, and the source's low-balance
/// threshold when the transfer crossed below it.
pub struct Transferred {
    pub transfer_id: i64,
    pub from_balance: AnyNumeric,
    pub to_balance: AnyNumeric,
    pub crossed_threshold: Option<AnyNumeric>,
}

/// Moves `amount` from `from` to `to` when both are plain and the source can pay; `None`,
/// having written nothing, otherwise.
pub fn transfer(
    from: &str,
    to: &str,
    amount: &AnyNumeric,
    reason: Option<&str>,
    metadata: Option<&JsonB>,
) -> Option<Transferred> {
    // SAFETY: see `with_tables`.
    unsafe { with_tables(Also::default(), |tables| tables.transfer(from, to, amount, reason, metadata)).flatten() }
}

/// An account row as the snapshot shows it, and what the transfer makes of it.
struct Side {
    version: pg_sys::ItemPointerData,
    before: AnyNumeric,
    after: AnyNumeric,
    threshold: Option<AnyNumeric>,
    new_row: pg_sys::HeapTuple,
}

impl Tables {
    unsafe fn transfer(
        &self,
        from: &str,
        to: &str,
        amount: &AnyNumeric,
        reason: Option<&str>,
        metadata: Option<&JsonB>,
    ) -> Option<Transferred> {
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        let source = self.plain_side(snapshot, from, &-amount.clone(), now);
        let destination = self.plain_side(snapshot, to, amount, now);
        pg_sys::UnregisterSnapshot(snapshot);
        let (mut source, mut destination) = (source?, destination?);
        if !crate::input::fits(&destination.after) {
            return None;
        }
        let (first, second) = if from < to { (&source, &destination) } else { (&destination, &source) };
        if !self.accounts.lock(first.version) || !self.accounts.lock(second.version) {
            return None;
        }
        for (side, account) in [(&mut source, from), (&mut destination, to)] {
            let key = account.into_datum().expect("text is never NULL");
            if !matches!(self.accounts.update(&mut side.version, side.new_row, &mut [key], true), Update::Done(_)) {
                pgrx::error!("pg_credits: an account row changed under its lock");
            }
        }
        let transfer_id: i64 = pgrx::direct_function_call(pg_sys::nextval_oid, &[self.transfer_ids.into_datum()])
            .expect("nextval returns a value");
        for (side, account, moved) in [(&source, from, -amount.clone()), (&destination, to, amount.clone())] {
            let entry = NewEntry {
                amount: moved,
                balance_after: Some(side.after.clone()),
                kind: if side.after < side.before { "transfer_out" } else { "transfer_in" },
                reason,
                idempotency_key: None,
                metadata,
                grant_id: None,
                hold_id: None,
                held_amount: None,
                outcome: None,
                transfer_id: Some(transfer_id),
            };
            self.append(&entry, account.into_datum().expect("text is never NULL"), now);
        }
        pg_sys::CommandCounterIncrement();
        let crossed_threshold =
            source.threshold.clone().filter(|t| &source.before >= t && &source.after < t);
        Some(Transferred { transfer_id, from_balance: source.after, to_balance: destination.after, crossed_threshold })
    }

    /// The plain account's row moved by `change`, if a source (a negative change) can pay it.
    unsafe fn plain_side(&self, snapshot: pg_sys::Snapshot, account: &str, change: &AnyNumeric, now: Datum) -> Option<Side> {
        let key = account.into_datum().expect("text is never NULL");
        let mut found = None;
        let mut keys = [super::text_key(self.accounts.pkey, 1, key)];
        self.accounts.scan(snapshot, &mut keys, ACCOUNT_COLUMNS.len(), |values, nulls, version| {
            let (plain, figures) = super::plain_figures(values, nulls);
            let pays = *change >= AnyNumeric::from(0) || figures.can_pay(&-change.clone());
            if plain && pays {
                let after = canonical(figures.balance.clone() + change.clone());
                values[1] = after.clone().into_datum().expect("a number");
                values[6] = now;
                let new_row =
                    pg_sys::heap_form_tuple((*self.accounts.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
                let threshold = AnyNumeric::from_datum(values[3], nulls[3]);
                found = Some(Side { version, before: figures.balance, after, threshold, new_row });
            }
            false
        });
        found
    }
}
