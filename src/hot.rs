//! Hot accounts: one busy customer must not serialize the whole API.
//!
//! A plain account is one row, so its charges queue on one row lock, held through the
//! commit's WAL flush. `credits.set_slots(account, n)` spreads what the account can spend
//! (`balance - min_balance`) over `n` rows of `credits.account_slots`; a charge takes one
//! slot's lock, so up to `n` charges commit in parallel. What stays on the account row
//! (`accounts.balance`) is `min_balance` plus what did not divide evenly.
//!
//! Every rule of a plain account holds:
//! - No slot goes below zero (the `slot_amount` domain), and the account row stays at or
//!   above `min_balance`, so the total never goes below the floor.
//! - A charge no slot it may take from can cover (a transaction that already took from a
//!   slot may only take from that one) takes the account row lock and gathers the slots
//!   no other transaction is charging into the row. If they can pay, it is served from
//!   them (spread over them again). If not, it gathers every slot, waiting for the busy
//!   ones, and is decided on the exact total like a plain charge: served if the total can
//!   pay (then spread again), PT402 otherwise. Recharges take the locked path, gathering
//!   every slot, so the money they bring is spread at once.
//! - Idempotency keys are serialized per (account, key) by a transaction advisory lock,
//!   taken before the key is looked up.
//! - The ledger gets one entry per charge, as always; entries taken from a slot (or from
//!   the free slots gathered) have no `balance_after` (NULL), because parallel charges
//!   have no single order.
//!
//! A charge takes from its slot through the direct path (`direct`), once its key (if it
//! has one) is locked and looked up; one the direct path steps aside from, through SQL.
//! Neither queues behind a slot another transaction is charging: a charge takes the next
//! free one, and waits only when every slot is busy.
//!
//! A transaction keeps the slot it first took from for every charge it makes to an
//! account, so it never waits on itself, nor for a slot while it holds another, unless it
//! gathers: two transactions that each charge a hot account several times can deadlock
//! (PostgreSQL cancels one with 40P01) when both gather and the free slots cannot pay,
//! that is when the money in the slots they hold is needed.

use crate::accounts::{self, Account};
use crate::decide::Figures;
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::movement::{Applied, Entry, Movement};
use crate::direct::{self, KeyUse, SlotCharge};
use crate::plans::{OwnWrite, Statement, INT4, INT4_ARRAY, JSONB, NUMERIC, TEXT};
use crate::{input, notify, pools};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::AnyNumeric;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;

pub const MAX_SLOTS: i32 = 64;

/// How many hot accounts a backend remembers (see [`known_slots`]).
const REMEMBERED: usize = 10_000;

/// What this backend knows of a hot account.
struct Known {
    /// Its slot count when last seen (see [`known_slots`]).
    slots: i32,
    /// The slot a transaction of this backend took from: (local transaction id, slot).
    taken: Option<(u32, i32)>,
}

thread_local! {
    static HOT_ACCOUNTS: RefCell<HashMap<String, Known>> = RefCell::new(HashMap::new());
}

/// The slot count this backend last saw for a hot account, so that its charges go
/// straight to a slot instead of first trying the plain path and reading the account.
/// Only a hint: a charge whose slot is gone (the account was reshaped) fails to take from
/// it and falls to the locked path, which reads the truth and corrects the hint.
pub fn known_slots(account: &str) -> Option<i32> {
    HOT_ACCOUNTS.with_borrow(|hot| hot.get(account).map(|known| known.slots))
}

pub fn remember(account: &str, slots: i32) {
    HOT_ACCOUNTS.with_borrow_mut(|hot| {
        if slots == 0 {
            hot.remove(account);
            return;
        }
        if let Some(known) = hot.get_mut(account) {
            // Every charge of a hot account passes here: no new String for a known one.
            known.slots = slots;
            return;
        }
        if hot.len() >= REMEMBERED {
            hot.clear();
        }
        hot.insert(account.to_owned(), Known { slots, taken: None });
    });
}

/// Spreads the account over `slots` sub-balances (a hot account), or gathers it back
/// into one row with `slots => 0`. The balance does not change.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn set_slots(account: Option<&str>, slots: Option<i32>) {
    unwrap_or_raise(reshape(account, slots))
}

/// Takes the charge ($2) from the slot the `chosen` query names (if it can still pay),
/// appends the ledger entry, and returns the balance after (the slot as updated, the
/// other slots and the account row as of this statement's snapshot), the low-balance
/// threshold and the slot.
macro_rules! take_sql {
    (chosen: $chosen:literal) => {
        concat!(
            "WITH chosen AS (", $chosen, "),
                  taken AS (
                      UPDATE credits.account_slots s SET available = pg_catalog.trim_scale(s.available - $2)
                        FROM chosen WHERE s.account = $1 AND s.slot = chosen.slot AND s.available >= $2
                   RETURNING s.account, s.slot, s.available),
                  entry AS (
                      INSERT INTO credits.ledger (account, amount, kind, reason, idempotency_key, metadata)
                      SELECT account, -$2, 'charge', $3, $4, $5 FROM taken)
             SELECT pg_catalog.trim_scale(a.balance + taken.available
                    + (SELECT coalesce(sum(s.available), 0) FROM credits.account_slots s
                        WHERE s.account = $1 AND s.slot <> taken.slot)),
                    a.low_balance_threshold, taken.slot
               FROM taken, credits.accounts a WHERE a.account = $1"
        )
    };
}

const TAKE_ARGS: &[pg_sys::PgOid] = &[TEXT, NUMERIC, TEXT, TEXT, JSONB, INT4];

/// From slot $6, waiting for a transaction that is charging it.
static TAKE_FROM_SLOT: Statement = Statement { sql: take_sql!(chosen: "SELECT $6 AS slot"), args: TAKE_ARGS, generic: false };

/// From the first slot from $6 on (wrapping around) that can pay and that no other
/// transaction is charging; nothing if every such slot is busy.
static TAKE_FROM_FREE_SLOT: Statement = Statement {
    sql: take_sql!(chosen: "SELECT slot FROM credits.account_slots
                             WHERE account = $1 AND available >= $2
                             ORDER BY slot < $6, slot LIMIT 1 FOR UPDATE SKIP LOCKED"),
    args: TAKE_ARGS,
    generic: false,
};

/// Moves the money of the slots it locks (`lock`: every slot, or only those no other
/// transaction is charging) back to the locked account row; returns the row's balance and
/// the slots it holds.
macro_rules! gather_sql {
    (lock: $lock:literal) => {
        concat!(
            "WITH held AS (
                 SELECT slot, available FROM credits.account_slots
                  WHERE account = $1 ORDER BY slot ", $lock, "),
             emptied AS (
                 UPDATE credits.account_slots s SET available = 0 FROM held
                  WHERE s.account = $1 AND s.slot = held.slot AND held.available > 0
              RETURNING held.available),
             moved AS (
                 UPDATE credits.accounts
                    SET balance = pg_catalog.trim_scale(balance + (SELECT coalesce(sum(available), 0) FROM emptied))
                  WHERE account = $1
              RETURNING balance)
             SELECT (SELECT balance FROM moved), ARRAY(SELECT slot FROM held ORDER BY slot)"
        )
    };
}

/// Every slot, waiting for the transactions charging them: the row then has the whole balance.
static GATHER: Statement = Statement { sql: gather_sql!(lock: "FOR UPDATE"), args: &[TEXT], generic: false };

/// The slots no other transaction is charging.
static GATHER_FREE: Statement = Statement { sql: gather_sql!(lock: "FOR UPDATE SKIP LOCKED"), args: &[TEXT], generic: false };

/// Shares what the locked account row can spend evenly over the (empty, held) slots $2, to
/// 18 decimal places, rounding down: the rest stays on the row. trim_scale keeps 250 from
/// being shown as 250.000000000000000000.
static SPREAD: Statement = Statement {
    sql: "WITH share AS (
              SELECT pg_catalog.trim_scale(pg_catalog.div((balance - held - min_balance) * 1e18, pg_catalog.cardinality($2)) * 1e-18) AS each
                FROM credits.accounts
               WHERE account = $1 AND slots > 0 AND balance - held > min_balance AND pg_catalog.cardinality($2) > 0),
          filled AS (
              UPDATE credits.account_slots s SET available = s.available + share.each FROM share
               WHERE s.account = $1 AND s.slot = ANY ($2)
           RETURNING share.each)
          UPDATE credits.accounts
             SET balance = pg_catalog.trim_scale(balance - (SELECT coalesce(sum(each), 0) FROM filled))
           WHERE account = $1 AND slots > 0
       RETURNING balance",
    args: &[TEXT, INT4_ARRAY],
    generic: false,
};

/// Moves $2 of the first slot from $3 on (wrapping around) that has it and that no other
/// transaction is charging to the locked account row; returns the slot.
static RESERVE_FROM_SLOT: Statement = Statement {
    sql: "WITH chosen AS (
              SELECT slot FROM credits.account_slots
               WHERE account = $1 AND available >= $2
               ORDER BY slot < $3, slot LIMIT 1 FOR UPDATE SKIP LOCKED),
          taken AS (
              UPDATE credits.account_slots s SET available = pg_catalog.trim_scale(s.available - $2)
                FROM chosen WHERE s.account = $1 AND s.slot = chosen.slot
             RETURNING s.slot),
          moved AS (
              UPDATE credits.accounts a SET balance = pg_catalog.trim_scale(a.balance + $2)
                FROM taken WHERE a.account = $1)
          SELECT slot FROM taken",
    args: &[TEXT, NUMERIC, INT4],
    generic: false,
};

/// What the slots other than $2 hold, as of this statement's snapshot.
static OTHER_SLOTS: Statement = Statement {
    sql: "SELECT coalesce(sum(available), 0) FROM credits.account_slots WHERE account = $1 AND slot <> ALL ($2)",
    args: &[TEXT, INT4_ARRAY],
    generic: false,
};

static DROP_SLOTS: Statement = Statement {
    sql: "DELETE FROM credits.account_slots WHERE account = $1",
    args: &[TEXT],
    generic: false,
};

static ADD_SLOTS: Statement = Statement {
    sql: "WITH added AS (
              INSERT INTO credits.account_slots (account, slot, available)
              SELECT $1, slot, 0 FROM pg_catalog.generate_series(0, $2 - 1) slot)
          UPDATE credits.accounts SET slots = $2, updated_at = pg_catalog.now()
           WHERE account = $1 RETURNING slots",
    args: &[TEXT, INT4],
    generic: false,
};

/// Serializes the calls that use one idempotency key of one account, with a transaction
/// lock in a space of its own: an advisory lock whose fourth field is [`KEY_LOCK_SPACE`].
/// SQL's advisory lock functions only take fields 1 and 2 (one bigint or two integers),
/// so no role can take this lock from SQL and hold a hot account's keyed charges up. It
/// shows in `pg_locks` as `locktype 'advisory'`, `objsubid` 20547.
fn lock_key(account: &str, key: &str) {
    // SAFETY: hash_bytes reads exactly the bytes given; LockAcquire copies the tag, and
    // the lock is released with the transaction (sessionLock false), waiting (and
    // deadlock detection) as for any heavyweight lock.
    unsafe {
        let hash = |text: &str| hash_bytes(text.as_ptr(), text.len() as c_int);
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.to_u32(),
            locktag_field2: hash(account),
            locktag_field3: hash(key),
            locktag_field4: KEY_LOCK_SPACE,
            locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
            locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
        };
        pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, false);
    }
}

/// "PC" (0x5043): the advisory lock space of pg_credits' idempotency keys (see [`lock_key`]).
const KEY_LOCK_SPACE: u16 = 0x5043;

// PostgreSQL's byte hash (common/hashfn.c), which pgrx does not bind; it cannot fail.
unsafe extern "C" {
    fn hash_bytes(bytes: *const u8, length: c_int) -> u32;
}

/// A movement of a hot account with `slots` slots; `None`, having written nothing, when
/// the account is plain again or gone (`charge` routes it again).
pub fn apply(client: &SpiClient<'_>, entry: &Entry<'_>, slots: i32) -> Result<Option<Applied>> {
    remember(entry.account, slots);
    if let Some(key) = entry.idempotency_key {
        lock_key(entry.account, key);
        match direct::key_use(entry, key) {
            Some(KeyUse::Unused) => {}
            // No row lock tells a REPEATABLE READ transaction that another one used the
            // key since its snapshot (a plain account's row lock does): the unique index
            // would refuse the entry with a bare 23505.
            Some(KeyUse::RecordedSinceSnapshot) => {
                return Err(CreditsError::ConcurrentKeyUse {
                    account: entry.account.to_owned(),
                    idempotency_key: key.to_owned(),
                });
            }
            Some(KeyUse::Recorded) | None => {
                if let Some(balance_after) = entry.replay(client, key)? {
                    return match balance_after {
                        Some(balance_after) => Ok(Some(Applied::Replayed(balance_after))),
                        None => accounts::balance_of(client, entry.account).map(|balance| Some(Applied::Replayed(balance))),
                    };
                }
            }
        }
    }
    if entry.amount.is_zero() {
        return accounts::balance_of(client, entry.account).map(|balance| Some(Applied::Moved(balance)));
    }
    if entry.movement == Movement::Charge {
        let (slot, taken_before) = slot_for(entry.account, slots);
        // A transaction that holds no slot yet may take any free one; one that holds a
        // slot keeps to it, so it never waits for a slot while holding another.
        let taken = match direct::take_from_slot(entry, slot, !taken_before) {
            SlotCharge::Taken { balance, threshold, slot } => Some((balance, threshold, slot)),
            SlotCharge::CannotPay => None,
            SlotCharge::StepAside => take_from_slot(client, entry, slot, !taken_before),
        };
        if let Some((balance, threshold, taken_from)) = taken {
            remember_slot(entry.account, taken_from);
            alert_if_crossed(client, entry, &balance, threshold.as_ref());
            return Ok(Some(Applied::Moved(balance)));
        }
    }
    apply_gathered(client, entry)
}

/// Takes the charge from slot `slot` with SQL (or, if `hop`, from the first slot from it
/// on that can pay and is free, waiting for `slot` only when none is); returns the
/// balance after, the threshold and the slot taken from.
///
/// Each attempt runs in a subtransaction that is rolled back when it took nothing. Why:
/// an UPDATE that waited for a slot and then found it too low (or a free slot locked and
/// then found too low) keeps that slot locked, and this charge is about to wait for
/// another slot or for the account row, whose holder (gathering) may wait for that very
/// slot: a deadlock without the rollback, which releases the lock.
fn take_from_slot(
    client: &SpiClient<'_>,
    entry: &Entry<'_>,
    slot: i32,
    hop: bool,
) -> Option<(AnyNumeric, Option<AnyNumeric>, i32)> {
    let _own = OwnWrite::begin(entry.account);
    let [account, amount, reason, key, metadata] = entry.arguments();
    let args = [account, amount, reason, key, metadata, slot.into()];
    let free = if hop { in_subtransaction(|| TAKE_FROM_FREE_SLOT.first_row(client, &args)) } else { None };
    free.or_else(|| in_subtransaction(|| TAKE_FROM_SLOT.first_row(client, &args)))
}

/// Runs one slot-taking statement in a subtransaction, kept if it took (the balance after,
/// the threshold and the slot), rolled back otherwise.
fn in_subtransaction<'a>(
    take: impl FnOnce() -> Option<crate::plans::Row<'a>> + std::panic::UnwindSafe,
) -> Option<(AnyNumeric, Option<AnyNumeric>, i32)> {
    // SAFETY: the subtransaction is always closed (released, rolled back, or rolled back
    // before an error is re-raised), and the caller's memory context and resource owner
    // are restored, as PL/pgSQL does around its exception blocks.
    unsafe {
        let context = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(context);
        let restore = || {
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        };
        let taken = pg_sys::PgTryBuilder::new(|| {
            take().map(|row| (row.column(1), row.nullable_column(2), row.column::<i32>(3)))
        })
            .catch_others(|error| {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                restore();
                error.rethrow()
            })
            .execute();
        if taken.is_some() {
            pg_sys::ReleaseCurrentSubTransaction();
        } else {
            pg_sys::RollbackAndReleaseCurrentSubTransaction();
        }
        restore();
        taken
    }
}

/// Under the account row lock: a charge that the slots no other transaction is charging
/// can pay is taken from them (gathered into the row), without waiting for the busy ones;
/// anything else is decided on the exact total, every slot gathered, as a plain account
/// would decide it. Not waiting is what keeps two transactions that each took from a slot
/// from deadlocking when both have to gather, unless the money of their slots is needed.
fn apply_gathered(client: &SpiClient<'_>, entry: &Entry<'_>) -> Result<Option<Applied>> {
    let Some(account) = accounts::lock(client, entry.account) else {
        // Gone since this backend saw it hot: routed again without the hint (a recharge
        // opens the account again).
        remember(entry.account, 0);
        return Ok(None);
    };
    let (account, _) = pools::settled(client, entry.account, account, input::now());
    remember(entry.account, account.slots);
    if account.slots == 0 {
        // Gathered back into a plain account since we looked.
        return Ok(None);
    }
    let all = if entry.movement == Movement::Charge {
        let free = gather_slots(client, entry.account, &GATHER_FREE);
        if free.slots.len() == account.slots as usize {
            free
        } else if entry.check(&Account { balance: free.balance.clone(), ..account.clone() }).is_ok() {
            return Ok(Some(apply_to_part(client, entry, &free.slots, account.low_balance_threshold.as_ref())));
        } else {
            gather_slots(client, entry.account, &GATHER)
        }
    } else {
        gather_slots(client, entry.account, &GATHER)
    };
    let whole = Account { balance: all.balance, ..account };
    let result = entry.check(&whole).map(|()| Some(Applied::Moved(entry.apply_to_locked_balance(client))));
    spread_over(client, entry.account, &all.slots);
    result
}

/// Takes a charge from the locked row, which holds the money of the slots `held` (the
/// others are being charged): its entry has no `balance_after`, as a slot's has none.
fn apply_to_part(client: &SpiClient<'_>, entry: &Entry<'_>, held: &[i32], threshold: Option<&AnyNumeric>) -> Applied {
    let row_after = entry.apply_to_locked_part(client);
    spread_over(client, entry.account, held);
    let others: AnyNumeric = OTHER_SLOTS
        .first_value(client, &[entry.account.into(), held.to_vec().into()])
        .expect("a sum");
    let balance = crate::money::canonical(row_after + others);
    alert_if_crossed(client, entry, &balance, threshold);
    Applied::Moved(balance)
}

/// The low-balance alert of a charge whose balance after is only as of its snapshot
/// (other transactions charge the other slots meanwhile): best-effort.
fn alert_if_crossed(client: &SpiClient<'_>, entry: &Entry<'_>, balance: &AnyNumeric, threshold: Option<&AnyNumeric>) {
    let before = balance.clone() + entry.amount.value.clone();
    if notify::crossed(&before, balance, threshold) {
        notify::low_balance(client, entry.account, balance, threshold.expect("crossed"));
    }
}

/// The slot a transaction charges a hot account from, and whether it already took from
/// it: the one it took from, so that it never waits on itself, or else one spread over
/// the slots across transactions.
fn slot_for(account: &str, slots: i32) -> (i32, bool) {
    let local_xid = crate::compat::local_transaction_id();
    let taken = HOT_ACCOUNTS.with_borrow(|hot| hot.get(account).and_then(|known| known.taken));
    match taken {
        Some((xid, slot)) if xid == local_xid && slot < slots => (slot, true),
        _ => {
            // SAFETY: MyProcPid is set for every backend before it runs queries.
            let pid = unsafe { pg_sys::MyProcPid } as u64;
            let mixed = ((pid << 32) | local_xid as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (((mixed >> 33) % slots as u64) as i32, false)
        }
    }
}

/// Records the slot the current transaction took from (the account is known: `apply`
/// remembered it).
fn remember_slot(account: &str, slot: i32) {
    let local_xid = crate::compat::local_transaction_id();
    HOT_ACCOUNTS.with_borrow_mut(|hot| {
        if let Some(known) = hot.get_mut(account) {
            known.taken = Some((local_xid, slot));
        }
    });
}


/// What a gathering moved to the account row: the row's balance after, and the slots
/// it holds (emptied).
struct Gathered {
    balance: AnyNumeric,
    slots: Vec<i32>,
}

fn gather_slots(client: &SpiClient<'_>, account: &str, statement: &'static Statement) -> Gathered {
    let _own = OwnWrite::begin(account);
    let row = statement.first_row(client, &[account.into()]).expect("one row");
    Gathered { balance: row.column(1), slots: row.column(2) }
}

/// Gathers a locked hot account's slots into its row; returns the whole balance.
fn gather(client: &SpiClient<'_>, account: &str) -> AnyNumeric {
    gather_slots(client, account, &GATHER).balance
}

/// The locked account `row` whole, for a decision on all of it: a hot account's slots
/// gathered into its row (the caller spreads them again), what has lapsed written, and
/// its figures.
pub fn whole(client: &SpiClient<'_>, account: &str, mut row: Account, now: crate::decide::Time) -> (Account, Figures<AnyNumeric>) {
    if row.slots > 0 {
        row.balance = gather(client, account);
    }
    pools::settled(client, account, row, now)
}

/// What of a locked account's balance its row holds, for a hold or capture decided on the
/// row alone.
pub enum RowShare {
    /// All of it: a plain account.
    All,
    /// All of it, the slots gathered into it: spread them again once written.
    Gathered,
    /// Its part; `outside` is what the slots hold as of this statement's snapshot (they
    /// only go down while the row is locked: charges take from them, nothing adds).
    Part { outside: AnyNumeric },
}

impl RowShare {
    /// What the slots hold outside the row: what the row's figures lack of the account's.
    pub fn outside(&self) -> AnyNumeric {
        match self {
            RowShare::Part { outside } => outside.clone(),
            RowShare::All | RowShare::Gathered => AnyNumeric::from(0),
        }
    }

    /// Spreads a gathered account over its slots again.
    pub fn written(&self, client: &SpiClient<'_>, account: &str, slots: i32) {
        if let RowShare::Gathered = self {
            spread(client, account, slots);
        }
    }
}

/// The locked, settled account ready for a hold of `amount` decided on its row: a hot
/// account's row pays it with the money released to it, or with `amount` moved to it from
/// one slot no other transaction is charging; only when no single slot has it are the
/// slots gathered (waiting for the busy ones) and the hold decided on the whole. Held
/// money stays on the row (spreading leaves it there), so its capture needs no slot.
pub fn for_hold(
    client: &SpiClient<'_>,
    account: &str,
    row: Account,
    figures: Figures<AnyNumeric>,
    amount: &AnyNumeric,
    now: crate::decide::Time,
) -> (Account, Figures<AnyNumeric>, RowShare) {
    if row.slots == 0 {
        return (row, figures, RowShare::All);
    }
    if figures.can_pay(amount) {
        return (row, figures, part(client, account));
    }
    let (slot, _) = slot_for(account, row.slots);
    let moved: Option<i32> = {
        let _own = OwnWrite::begin(account);
        RESERVE_FROM_SLOT.first_value(client, &[account.into(), amount.clone().into(), slot.into()])
    };
    let row = match moved {
        Some(slot) => {
            remember_slot(account, slot);
            // Hot accounts have no grants: the row's figures are its own.
            let row = Account { balance: crate::money::canonical(row.balance.clone() + amount.clone()), ..row };
            let figures = row.figures();
            if figures.can_pay(amount) {
                return (row, figures, part(client, account));
            }
            row
        }
        None => row,
    };
    let (row, figures) = whole(client, account, row, now);
    (row, figures, RowShare::Gathered)
}

/// The locked, settled account ready for a capture that also charges `excess` beyond its
/// hold: the row as it is (the hold's money is on it), unless a hot account has an excess
/// to pay, which is decided on the whole, as a charge that gathers is.
pub fn for_capture(
    client: &SpiClient<'_>,
    account: &str,
    row: Account,
    figures: Figures<AnyNumeric>,
    excess: &AnyNumeric,
    now: crate::decide::Time,
) -> (Account, Figures<AnyNumeric>, RowShare) {
    if row.slots == 0 {
        (row, figures, RowShare::All)
    } else if *excess <= AnyNumeric::from(0) {
        (row, figures, part(client, account))
    } else {
        let (row, figures) = whole(client, account, row, now);
        (row, figures, RowShare::Gathered)
    }
}

fn part(client: &SpiClient<'_>, account: &str) -> RowShare {
    let none: Vec<i32> = Vec::new();
    RowShare::Part { outside: OTHER_SLOTS.first_value(client, &[account.into(), none.into()]).expect("a sum") }
}

/// Spreads a locked account over its slots again; nothing for a plain account.
pub fn spread(client: &SpiClient<'_>, account: &str, slots: i32) {
    if slots == 0 {
        return;
    }
    spread_over(client, account, &(0..slots).collect::<Vec<_>>());
}

fn spread_over(client: &SpiClient<'_>, account: &str, slots: &[i32]) {
    let _own = OwnWrite::begin(account);
    SPREAD.first_row(client, &[account.into(), slots.to_vec().into()]);
}

fn reshape(account: Option<&str>, slots: Option<i32>) -> Result<()> {
    let account = input::account(account)?;
    let slots = slots.ok_or_else(|| CreditsError::bad_input(BadInput::Null, "slots", "must not be NULL"))?;
    if !(0..=MAX_SLOTS).contains(&slots) {
        return Err(CreditsError::bad_input(
            BadInput::OutOfRange,
            "slots",
            format!("must be between 0 (a plain account) and {MAX_SLOTS}"),
        ));
    }
    Spi::connect_mut(|client| {
        let current = accounts::lock(client, account)
            .ok_or_else(|| CreditsError::AccountNotFound { account: account.to_owned() })?;
        if current.has_grants && slots > 0 {
            return Err(CreditsError::Refused {
                message: "An account with grants cannot be made hot: its charges must burn its grants in order.",
                hint: "Keep accounts with grants plain; a busy customer's hot account can be funded by transfers of paid credit.",
            });
        }
        if current.slots > 0 {
            gather(client, account);
        }
        let _own = OwnWrite::begin(account);
        DROP_SLOTS.first_row(client, &[account.into()]);
        ADD_SLOTS.first_row(client, &[account.into(), slots.into()]);
        drop(_own);
        remember(account, slots);
        spread(client, account, slots);
        Ok(())
    })
}
