//! Direct holds and captures: a hold of a plain account (no slots, no grants) that its own
//! balance can pay, and the capture or release of a hold drawn from an own balance alone,
//! written straight to the tables like a direct charge, for the same reason: the SQL
//! writer's statements (four tables each) cost several times the writes themselves.
//!
//! Both decide with the decision core (`Figures::can_pay`, `Hold::capture`) on the rows
//! read with the snapshot a new statement would take, and step aside, having written
//! nothing, for everything else: a hold or capture by a key already used, an account with
//! slots or grants, a hold that cannot be paid or captured as asked (the SQL path raises
//! the error, or charges the excess), and any row changed since the snapshot.
//!
//! What keeps a capture correct besides what keeps a charge correct: every change to a
//! hold comes with an update of its account's row in the same transaction (a hold, a
//! capture or release, an expiry, `extend_hold`). So once the account row version read
//! with the snapshot has been updated (it was still the latest), the hold version read
//! with that snapshot is the latest too, and nobody else can change it before we commit.

use super::{equal_key, json_number, insert_index_entry, scan, text_key, with_tables, Also, NewEntry, Tables, Update};
use super::{ACCOUNT_COLUMNS, HOLD_COLUMNS};
use crate::decide::{Hold, HoldStatus, Overage, Time};
use crate::input;
use crate::money::canonical;
use crate::pools::{self, Placed, Spend};
use pgrx::datetime::TimestampWithTimeZone;
use pgrx::pg_sys::{self, Datum};
use pgrx::{AnyNumeric, FromDatum, IntoDatum, JsonB};
use serde_json::json;
use std::ffi::CStr;

/// A capture (or, capturing nothing with `last`, a release) of a hold.
pub struct Capture<'a> {
    pub hold_id: i64,
    /// NULL: all the hold still reserves.
    pub amount: Option<&'a AnyNumeric>,
    pub last: bool,
    pub releasing: bool,
    pub idempotency_key: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub metadata: Option<&'a JsonB>,
    /// When the hold's expiry is judged (`clock_timestamp()`).
    pub now: Time,
}

/// What a direct capture did.
pub struct Resolved {
    pub account: String,
    pub captured: AnyNumeric,
    pub released: AnyNumeric,
    pub status: HoldStatus,
    pub balance: AnyNumeric,
    /// The account's low-balance threshold, when the capture crossed below it.
    pub crossed_threshold: Option<AnyNumeric>,
}

/// Places a hold of `amount` (positive) expiring at `expires_at`, or returns `None`
/// having written nothing.
pub fn hold(spend: &Spend<'_>, amount: &AnyNumeric, expires_at: TimestampWithTimeZone) -> Option<Placed> {
    let also = Also { idempotency_keys: spend.idempotency_key.is_some(), holds: true, ..Also::default() };
    // SAFETY: see `with_tables`.
    unsafe { with_tables(also, |tables| tables.hold(spend, amount, expires_at)).flatten() }
}

/// Captures or releases a hold, or returns `None` having written nothing.
pub fn capture(request: &Capture<'_>) -> Option<Resolved> {
    let also = Also { idempotency_keys: request.idempotency_key.is_some(), holds: true, ..Also::default() };
    // SAFETY: see `with_tables`.
    unsafe { with_tables(also, |tables| tables.capture(request)).flatten() }
}

/// An account row as a hold or capture needs it, read with the snapshot, and the new
/// version formed from it.
struct AccountChange {
    version: pg_sys::ItemPointerData,
    new_row: pg_sys::HeapTuple,
    balance_before: AnyNumeric,
    balance_after: AnyNumeric,
    available_after: AnyNumeric,
    threshold: Option<AnyNumeric>,
}

impl Tables {
    /// The plain account's row with `cost` taken from its balance and `held` added to
    /// what it holds, if its figures can pay `needs` (nothing when `needs` is zero).
    unsafe fn change_account(
        &self,
        snapshot: pg_sys::Snapshot,
        account: Datum,
        cost: &AnyNumeric,
        held: &AnyNumeric,
        needs: &AnyNumeric,
        now: Datum,
    ) -> Option<AccountChange> {
        let mut found = None;
        let mut keys = [text_key(self.accounts.pkey, 1, account)];
        self.accounts.scan(snapshot, &mut keys, ACCOUNT_COLUMNS.len(), |values, nulls, version| {
            let (plain, figures) = super::plain_figures(values, nulls);
            if plain && figures.can_pay(needs) {
                let balance_after = canonical(figures.balance.clone() - cost.clone());
                values[1] = balance_after.clone().into_datum().expect("a number");
                values[8] = canonical(figures.held.clone() + held.clone()).into_datum().expect("a number");
                values[6] = now;
                let new_row =
                    pg_sys::heap_form_tuple((*self.accounts.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
                found = Some(AccountChange {
                    version,
                    new_row,
                    available_after: canonical(figures.available() - held.clone() - cost.clone()),
                    balance_before: figures.balance,
                    balance_after,
                    threshold: AnyNumeric::from_datum(values[3], nulls[3]),
                });
            }
            false
        });
        found
    }

    /// Writes the account change; false (nothing written) when its version is no longer
    /// the latest.
    unsafe fn write_account(&self, change: &mut AccountChange, account: Datum) -> bool {
        matches!(self.accounts.update(&mut change.version, change.new_row, &mut [account], true), Update::Done(_))
    }

    unsafe fn hold(&self, spend: &Spend<'_>, amount: &AnyNumeric, expires_at: TimestampWithTimeZone) -> Option<Placed> {
        let holds = self.holds.as_ref().expect("opened for a hold");
        let account = spend.account.into_datum().expect("text is never NULL");
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        let key_used = spend.idempotency_key.is_some_and(|key| self.key_recorded(snapshot, account, key));
        let zero = AnyNumeric::from(0);
        let change = if key_used { None } else { self.change_account(snapshot, account, &zero, amount, amount, now) };
        pg_sys::UnregisterSnapshot(snapshot);
        let mut change = change?;
        if !self.write_account(&mut change, account) {
            return None;
        }
        let hold_id: i64 = pgrx::direct_function_call(pg_sys::nextval_oid, &[holds.ids.into_datum()])
            .expect("nextval returns a value");
        let mut values = [
            Some(account),
            hold_id.into_datum(),
            amount.clone().into_datum(),
            zero.clone().into_datum(),
            zero.clone().into_datum(),
            HoldStatus::Active.name().into_datum(),
            vec![crate::decide::OWN_BALANCE].into_datum(),
            vec![amount.clone()].into_datum(),
            expires_at.into_datum(),
            Some(now),
            None,
            spend.reason.into_datum(),
            spend.metadata.map(|m| JsonB(m.0.clone())).into_datum(),
        ];
        let mut nulls = values.map(|v| v.is_none());
        let mut datums = values.each_mut().map(|v| v.unwrap_or(Datum::from(0)));
        let heap = holds.table.heap;
        let row = pg_sys::heap_form_tuple((*heap).rd_att, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(heap, row);
        // (account, hold_id), (hold_id), and, active, (account, expires_at) and (expires_at).
        holds.table.index(&mut [datums[0], datums[1]], row, false);
        insert_index_entry(holds.by_id, heap, &mut [datums[1]], row, false);
        insert_index_entry(holds.expiry, heap, &mut [datums[0], datums[8]], row, false);
        insert_index_entry(holds.due, heap, &mut [datums[8]], row, false);
        let outcome = json!({
            "amount": json_number(amount),
            "hold_id": hold_id,
            "expires_at": json_time(datums[8]),
            "available": json_number(&change.available_after),
        });
        let entry = NewEntry {
            amount: zero,
            balance_after: Some(change.balance_before),
            kind: "hold",
            reason: spend.reason,
            idempotency_key: spend.idempotency_key,
            metadata: spend.metadata,
            grant_id: None,
            hold_id: Some(hold_id),
            held_amount: Some(amount.clone()),
            outcome: Some(outcome),
            transfer_id: None,
        };
        self.append(&entry, account, now);
        pg_sys::CommandCounterIncrement();
        Some(Placed { hold_id, expires_at, available: change.available_after })
    }

    unsafe fn capture(&self, request: &Capture<'_>) -> Option<Resolved> {
        let holds = self.holds.as_ref().expect("opened for a capture");
        let hold_id = request.hold_id.into_datum().expect("an integer");
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        let mut found = None;
        let mut keys = [equal_key(holds.by_id, 1, pg_sys::F_INT8EQ, hold_id)];
        scan(holds.table.heap, holds.by_id, snapshot, &mut keys, HOLD_COLUMNS.len(), |values, nulls, version| {
            let pools: Vec<i64> = Vec::from_datum(values[6], nulls[6]).expect("pools is NOT NULL");
            let parts: Vec<AnyNumeric> = Vec::from_datum(values[7], nulls[7]).expect("parts is NOT NULL");
            let status = String::from_datum(values[5], nulls[5]).expect("status is NOT NULL");
            let expires_at = TimestampWithTimeZone::from_datum(values[8], nulls[8]).expect("expires_at is NOT NULL");
            let hold = Hold {
                status: HoldStatus::parse(&status).expect("a known status"),
                expires_at: input::time(expires_at),
                parts: pools::parts_of(pools, parts),
            };
            let own_balance_only = hold.parts.iter().all(|part| part.pool == crate::decide::OWN_BALANCE);
            // Refuse: a capture beyond the hold steps aside, and the SQL path raises
            // PT422 or charges the excess as the call asked.
            let Ok(decided) = hold.capture(request.amount, request.last, Overage::Refuse, request.now) else {
                return false;
            };
            if !own_balance_only {
                return false;
            }
            let captured = canonical(decided.captured());
            let released = canonical(decided.released_total());
            let so_far = |i: usize| AnyNumeric::from_datum(values[i], nulls[i]).expect("NOT NULL");
            let (captured_so_far, released_so_far) = (so_far(3), so_far(4));
            values[3] = canonical(captured_so_far + captured.clone()).into_datum().expect("a number");
            values[4] = canonical(released_so_far + released.clone()).into_datum().expect("a number");
            values[5] = decided.status.name().into_datum().expect("text");
            let (still_pools, still_parts) = pools::columns(&decided.still_held);
            values[6] = still_pools.into_datum().expect("an array");
            values[7] = still_parts.into_datum().expect("an array");
            nulls[10] = decided.status == HoldStatus::Active;
            values[10] = input::timestamp(request.now).into_datum().expect("a time");
            let new_row = pg_sys::heap_form_tuple((*holds.table.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            let account = String::from_datum(values[0], nulls[0]).expect("account is NOT NULL");
            found = Some((version, new_row, account, values[8], decided, captured, released));
            false
        });
        let change = found.and_then(|(version, new_row, account, expires_at, decided, captured, released)| {
            let account_datum = account.as_str().into_datum().expect("text is never NULL");
            if request.idempotency_key.is_some_and(|key| self.key_recorded(snapshot, account_datum, key)) {
                return None;
            }
            let held = -(captured.clone() + released.clone());
            let change = self.change_account(snapshot, account_datum, &captured, &held, &AnyNumeric::from(0), now)?;
            Some((version, new_row, account, expires_at, decided, captured, released, change))
        });
        pg_sys::UnregisterSnapshot(snapshot);
        let (mut version, new_row, account, expires_at, decided, captured, released, mut change) = change?;
        let account_datum = account.as_str().into_datum().expect("text is never NULL");
        if !self.write_account(&mut change, account_datum) {
            return None;
        }
        match holds.table.update(&mut version, new_row, &mut [account_datum, hold_id], true) {
            Update::Done(false) => {}
            Update::Done(true) => {
                insert_index_entry(holds.by_id, holds.table.heap, &mut [hold_id], new_row, true);
                if decided.status == HoldStatus::Active {
                    insert_index_entry(holds.expiry, holds.table.heap, &mut [account_datum, expires_at], new_row, true);
                    insert_index_entry(holds.due, holds.table.heap, &mut [expires_at], new_row, true);
                }
            }
            Update::Busy | Update::Lost => {
                pgrx::error!("pg_credits: a hold changed under its account's lock")
            }
        }
        let status = decided.status;
        let balance = change.balance_after.clone();
        let outcome = |amount: &AnyNumeric| {
            json!({
                "amount": json_number(&-amount.clone()),
                "hold_id": request.hold_id,
                "captured": json_number(&captured),
                "released": json_number(&released),
                "status": status.name(),
                "balance": json_number(&balance),
            })
        };
        // As the SQL writer: a release's own entry, with its key and outcome; a capture's
        // entry (one of 0 when it took nothing) also releases the rest of a final capture.
        if request.releasing {
            let entry = NewEntry {
                amount: AnyNumeric::from(0),
                balance_after: Some(change.balance_before.clone()),
                kind: "release",
                reason: request.reason,
                idempotency_key: request.idempotency_key,
                metadata: None,
                grant_id: None,
                hold_id: Some(request.hold_id),
                held_amount: Some(-released.clone()),
                outcome: Some(outcome(&AnyNumeric::from(0))),
                transfer_id: None,
            };
            self.append(&entry, account_datum, now);
        } else {
            let taken = crate::decide::sum(&decided.taken);
            let entry = NewEntry {
                amount: -taken.clone(),
                balance_after: Some(balance.clone()),
                kind: "capture",
                reason: request.reason,
                idempotency_key: request.idempotency_key,
                metadata: request.metadata,
                grant_id: None,
                hold_id: Some(request.hold_id),
                held_amount: Some(canonical(-(taken + released.clone()))),
                outcome: Some(outcome(&captured)),
                transfer_id: None,
            };
            self.append(&entry, account_datum, now);
        }
        pg_sys::CommandCounterIncrement();
        let crossed_threshold =
            change.threshold.filter(|threshold| &change.balance_before >= threshold && &balance < threshold);
        Some(Resolved { account, captured, released, status, balance, crossed_threshold })
    }
}

/// A timestamptz as `to_json` writes it (in the session's time zone), so that an outcome
/// reads the same whichever writer recorded it.
unsafe fn json_time(value: Datum) -> String {
    let text = pg_sys::JsonEncodeDateTime(std::ptr::null_mut(), value, pg_sys::TIMESTAMPTZOID, std::ptr::null());
    CStr::from_ptr(text).to_string_lossy().into_owned()
}
