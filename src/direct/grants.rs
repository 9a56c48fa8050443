//! Direct charges of an account with grants (and no slots): the pools are read in burn
//! order from their index until they cover the cost, the decision core draws from them,
//! and the account row, each pool drawn and one ledger entry per pool are written as the
//! SQL writer (`pools::charge`) writes them, without its statements.
//!
//! It steps aside, having written nothing, when the SQL path has something to do first or
//! instead: a grant due to expire (its expiry must be written before the decision), a grant
//! not yet in effect (the balance the caller sees excludes it), a charge the pools cannot
//! pay (PT402), a key already used, or an account row changed since the snapshot.
//!
//! What keeps it correct besides what keeps a plain charge correct: every change to a pool
//! comes with an update of its account's row in the same transaction (a grant, a void, a
//! new expiry, an expiry, a draw, a hold and its resolution, a recharge). So once the
//! account row version read with the snapshot has been updated, the pool versions read
//! with that snapshot are the latest, and nobody else can change them before we commit.

use super::{equal_key, json_number, insert_index_entry, scan, text_key, Charged, NewEntry, Tables, Update, ACCOUNT_COLUMNS, GRANT_COLUMNS};
use crate::decide::{self, Category, Draw, Figures, Money, Pool, Time};
use crate::input;
use crate::money::canonical;
use crate::movement::Entry;
use pgrx::datetime::TimestampWithTimeZone;
use pgrx::pg_sys::{self, Datum};
use pgrx::{AnyNumeric, FromDatum, IntoDatum};
use serde_json::json;

/// The columns of `credits.account_grants` a draw reads or writes, by position.
const GRANT_ID: usize = 1;
const REMAINING: usize = 3;
const HELD: usize = 4;
const CATEGORY: usize = 5;
const PRIORITY: usize = 6;
const EFFECTIVE_AT: usize = 7;
const EXPIRES_AT: usize = 8;
const CLOSED: usize = 9;
const CLOSED_AT: usize = 10;

impl Tables {
    /// A charge of an account with grants; `None` when it stepped aside.
    pub(super) unsafe fn charge_from_pools(&self, entry: &Entry<'_>) -> Option<Charged> {
        let cost = &entry.amount.value;
        let account = entry.account.into_datum().expect("text is never NULL");
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        // Effect and expiry are judged by the clock, as the SQL path judges them.
        let clock = input::now();
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        let decided = self.decide_draws(snapshot, account, entry, clock, now);
        pg_sys::UnregisterSnapshot(snapshot);
        let (mut version, new_row, before, draws) = decided?;
        if !matches!(self.accounts.update(&mut version, new_row.row, &mut [account], true), Update::Done(_)) {
            return None;
        }
        for (draw, pool_version) in &draws {
            self.draw_from(account, draw, *pool_version, now);
        }
        let balance = canonical(before.clone() - cost.clone());
        // One entry per pool, in burn order; the balance after each counts the draws
        // still to come, so the last one's is the account's.
        let mut after = balance.clone();
        let mut balances: Vec<AnyNumeric> = draws
            .iter()
            .rev()
            .map(|(draw, _)| {
                let this = after.clone();
                after = canonical(after.clone() + draw.amount.clone());
                this
            })
            .collect();
        balances.reverse();
        let several = draws.len() > 1;
        for (n, ((draw, _), balance_after)) in draws.iter().zip(balances).enumerate() {
            let first = n == 0;
            let keyed = first && entry.idempotency_key.is_some();
            let written = NewEntry {
                amount: -draw.amount.clone(),
                balance_after: Some(balance_after),
                kind: "charge",
                reason: entry.reason,
                idempotency_key: entry.idempotency_key.filter(|_| first),
                metadata: entry.metadata.as_ref(),
                grant_id: (draw.pool != decide::OWN_BALANCE).then_some(draw.pool),
                hold_id: None,
                held_amount: None,
                // A keyed charge of several entries records the whole of it, for replays.
                outcome: (keyed && several).then(|| {
                    json!({ "amount": json_number(&-cost.clone()), "balance_after": json_number(&balance) })
                }),
                transfer_id: None,
            };
            self.append(&written, account, now);
        }
        pg_sys::CommandCounterIncrement();
        let crossed_threshold = new_row.threshold.filter(|t| &before >= t && &balance < t);
        Some(Charged { balance, crossed_threshold })
    }

    /// What the charge draws, decided on the rows as of `snapshot`: the account row's
    /// version, its new version and balance before, and each draw with its pool's version.
    #[allow(clippy::type_complexity)]
    unsafe fn decide_draws(
        &self,
        snapshot: pg_sys::Snapshot,
        account: Datum,
        entry: &Entry<'_>,
        clock: Time,
        now: Datum,
    ) -> Option<(pg_sys::ItemPointerData, NewAccountRow, AnyNumeric, Vec<(Draw<AnyNumeric>, pg_sys::ItemPointerData)>)> {
        let cost = &entry.amount.value;
        if entry.idempotency_key.is_some_and(|key| self.key_recorded(snapshot, account, key)) {
            return None;
        }
        let mut found = None;
        let mut keys = [text_key(self.accounts.pkey, 1, account)];
        self.accounts.scan(snapshot, &mut keys, ACCOUNT_COLUMNS.len(), |values, nulls, version| {
            let with_grants =
                i32::from_datum(values[7], nulls[7]) == Some(0) && bool::from_datum(values[9], nulls[9]) == Some(true);
            if with_grants {
                let figures = Figures {
                    balance: AnyNumeric::from_datum(values[1], nulls[1]).expect("balance is NOT NULL"),
                    held: AnyNumeric::from_datum(values[8], nulls[8]).expect("held is NOT NULL"),
                    min_balance: AnyNumeric::from_datum(values[2], nulls[2]).expect("min_balance is NOT NULL"),
                };
                let threshold = AnyNumeric::from_datum(values[3], nulls[3]);
                values[1] = canonical(figures.balance.clone() - cost.clone()).into_datum().expect("a number");
                values[6] = now;
                let row = pg_sys::heap_form_tuple((*self.accounts.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
                found = Some((version, NewAccountRow { row, threshold }, figures));
            }
            false
        });
        let (version, new_row, figures) = found?;
        if self.anything_due_or_pending(snapshot, account, clock) {
            return None;
        }
        let (pools, versions) = self.pools_in_burn_order(snapshot, account, cost, clock);
        let draws = decide::draw(&figures, cost, &pools, clock).ok()?;
        let versions = draws
            .into_iter()
            .map(|draw| {
                let at = pools.iter().position(|pool| pool.id == draw.pool).expect("a pool it was given");
                (draw, versions[at])
            })
            .collect();
        Some((version, new_row, figures.balance, versions))
    }

    /// Whether a grant of the account is due to expire by `clock` (the soonest expiry
    /// first in the expiry index) or not in effect yet (one starts after `clock`).
    unsafe fn anything_due_or_pending(&self, snapshot: pg_sys::Snapshot, account: Datum, clock: Time) -> bool {
        let grants = self.grants.as_ref().expect("opened for a charge with grants");
        let heap = grants.table.heap;
        let mut due = false;
        let mut keys = [text_key(grants.expiry, 1, account)];
        scan(heap, grants.expiry, snapshot, &mut keys, EXPIRES_AT + 1, |values, nulls, _| {
            due = time(values[EXPIRES_AT], nulls[EXPIRES_AT]) <= clock;
            false
        });
        let mut pending = false;
        let clock_datum = input::timestamp(clock).into_datum().expect("a time");
        let mut keys = [
            text_key(grants.effective, 1, account),
            equal_key(grants.effective, 2, pg_sys::F_TIMESTAMPTZ_GT, clock_datum),
        ];
        keys[1].sk_strategy = pg_sys::BTGreaterStrategyNumber as pg_sys::StrategyNumber;
        scan(heap, grants.effective, snapshot, &mut keys, 1, |_, _, _| {
            pending = true;
            false
        });
        due || pending
    }

    /// The open pools with money in burn order until they cover `cost` (all of them when
    /// they cannot), and the own balance wherever it stands: as `pools::pools` reads them;
    /// with the version of each, in the same order.
    unsafe fn pools_in_burn_order(
        &self,
        snapshot: pg_sys::Snapshot,
        account: Datum,
        cost: &AnyNumeric,
        clock: Time,
    ) -> (Vec<Pool<AnyNumeric>>, Vec<pg_sys::ItemPointerData>) {
        let grants = self.grants.as_ref().expect("opened for a charge with grants");
        let mut prefix: Vec<Pool<AnyNumeric>> = Vec::new();
        let mut versions = Vec::new();
        let mut own = None;
        let mut keys = [text_key(grants.burn_order, 1, account)];
        scan(grants.table.heap, grants.burn_order, snapshot, &mut keys, CLOSED, |values, nulls, version| {
            let pool = pool(values, nulls);
            if pool.id == decide::OWN_BALANCE && !pool.remaining.is_positive() {
                own = Some((pool, version));
                return true;
            }
            if pool.remaining.is_positive() {
                prefix.push(pool);
                versions.push(version);
            }
            !decide::covers(cost, &prefix, clock)
        });
        if !prefix.iter().any(|pool| pool.id == decide::OWN_BALANCE) {
            let own_balance = own.or_else(|| {
                let mut found = None;
                let own_id = decide::OWN_BALANCE.into_datum().expect("an integer");
                let mut keys =
                    [text_key(grants.table.pkey, 1, account), equal_key(grants.table.pkey, 2, pg_sys::F_INT8EQ, own_id)];
                grants.table.scan(snapshot, &mut keys, CLOSED, |values, nulls, version| {
                    found = Some((pool(values, nulls), version));
                    false
                });
                found
            });
            if let Some((pool, version)) = own_balance {
                prefix.push(pool);
                versions.push(version);
            }
        }
        (prefix, versions)
    }

    /// Writes a draw from a pool whose version the account's lock keeps the latest; a
    /// grant left with nothing and holding nothing is closed as depleted.
    unsafe fn draw_from(&self, account: Datum, draw: &Draw<AnyNumeric>, version: pg_sys::ItemPointerData, now: Datum) {
        let grants = self.grants.as_ref().expect("opened for a charge with grants");
        let table = &grants.table;
        let mut version = version;
        let (new_row, open, key) = table.with_version(version, GRANT_COLUMNS.len(), |values, nulls| {
            let remaining = AnyNumeric::from_datum(values[REMAINING], nulls[REMAINING]).expect("remaining is NOT NULL");
            let held = AnyNumeric::from_datum(values[HELD], nulls[HELD]).expect("held is NOT NULL");
            let left = canonical(remaining - draw.amount.clone());
            let depleted = draw.pool != decide::OWN_BALANCE && left == AnyNumeric::from(0) && held == AnyNumeric::from(0);
            values[REMAINING] = left.into_datum().expect("a number");
            if depleted {
                values[CLOSED] = "depleted".into_datum().expect("text");
                nulls[CLOSED] = false;
                values[CLOSED_AT] = now;
                nulls[CLOSED_AT] = false;
            }
            let paid = String::from_datum(values[CATEGORY], nulls[CATEGORY]).as_deref() == Some(Category::Paid.name());
            let key = IndexKey {
                grant_id: values[GRANT_ID],
                priority: values[PRIORITY],
                expires_at: values[EXPIRES_AT],
                paid: paid.into_datum().expect("a bool"),
                effective_at: values[EFFECTIVE_AT],
            };
            let row = pg_sys::heap_form_tuple((*table.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            (row, !depleted, key)
        });
        match table.update(&mut version, new_row, &mut [account, key.grant_id], true) {
            Update::Done(false) => {}
            Update::Done(true) => {
                let heap = table.heap;
                insert_index_entry(grants.by_id, heap, &mut [key.grant_id], new_row, true);
                if open {
                    let mut burn_order = [account, key.priority, key.expires_at, key.paid, key.effective_at, key.grant_id];
                    insert_index_entry(grants.burn_order, heap, &mut burn_order, new_row, true);
                    insert_index_entry(grants.expiry, heap, &mut [account, key.expires_at], new_row, true);
                    insert_index_entry(grants.effective, heap, &mut [account, key.effective_at], new_row, true);
                    insert_index_entry(grants.due, heap, &mut [key.expires_at], new_row, true);
                }
            }
            Update::Busy | Update::Lost => pgrx::error!("pg_credits: a pool changed under its account's lock"),
        }
    }
}

/// The new version of an account row and its low-balance threshold.
struct NewAccountRow {
    row: pg_sys::HeapTuple,
    threshold: Option<AnyNumeric>,
}

/// A pool's index keys (by value: they are copied out of its buffer).
struct IndexKey {
    grant_id: Datum,
    priority: Datum,
    expires_at: Datum,
    paid: Datum,
    effective_at: Datum,
}

fn time(value: Datum, null: bool) -> Time {
    // SAFETY: a timestamptz column, passed by value.
    input::time(unsafe { TimestampWithTimeZone::from_datum(value, null) }.expect("NOT NULL"))
}

/// A pool as the decision core sees it, from an `account_grants` row.
unsafe fn pool(values: &[Datum], nulls: &[bool]) -> Pool<AnyNumeric> {
    let category = String::from_datum(values[CATEGORY], nulls[CATEGORY]).expect("category is NOT NULL");
    Pool {
        id: i64::from_datum(values[GRANT_ID], nulls[GRANT_ID]).expect("grant_id is NOT NULL"),
        remaining: AnyNumeric::from_datum(values[REMAINING], nulls[REMAINING]).expect("remaining is NOT NULL"),
        priority: i32::from_datum(values[PRIORITY], nulls[PRIORITY]).expect("priority is NOT NULL"),
        category: Category::parse(&category).expect("a known category"),
        effective_at: time(values[EFFECTIVE_AT], nulls[EFFECTIVE_AT]),
        expires_at: time(values[EXPIRES_AT], nulls[EXPIRES_AT]),
    }
}
