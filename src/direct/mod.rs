//! The direct writes: the common cases of `credits.charge` (nobody else updating the row:
//! a plain account that can pay and has not seen the charge's idempotency key, or a slot
//! of a hot account that can pay, the key locked and looked up by `hot`),
//! and what `charge_many` decided for the plain accounts it locked, written straight to
//! the tables through PostgreSQL's heap and index access methods, without the SQL
//! executor.
//!
//! Why: the executor's per-statement set-up (plan validation, executor state, one node
//! per table, snapshot and trigger bookkeeping) cost more than the writes themselves;
//! a charge is two row writes and must cost about what one UPDATE costs. A batch's
//! writes through SQL spent a third of their time passing arrays through the executor.
//!
//! What keeps it correct: it only ever does what the SQL path would have done, and steps
//! aside (returns `None`, having written nothing) for everything else.
//! - The tables must look exactly as pg_credits made them: the same columns, the same
//!   indexes, no rules, no forced row security, and no triggers that an UPDATE of an
//!   account or an INSERT into the ledger would fire other than pg_credits' own guard
//!   (which never fires for pg_credits' writes). Anything added by hand (a trigger, a
//!   foreign key, an index) sends every charge down the SQL path, which honours it.
//! - The account row (or the slot) is read with the snapshot a new statement would take
//!   and updated with `heap_update`, which succeeds only if that version is still the
//!   latest; the floor was checked on exactly that version. If another transaction
//!   updated it in the meantime, nothing was written and the SQL path takes over (it
//!   waits, re-reads, and raises a serialization failure where the isolation level
//!   requires one). A failed `heap_update` leaves no lock behind, so a charge that steps
//!   aside never holds a slot while it waits for its account (see `hot`).
//! - An idempotency key is looked up with that same snapshot, and a charge whose key is
//!   found steps aside (the SQL path replays it, or reports the conflict). Every entry
//!   with a key is written together with an update of its account's row (or slot), so
//!   when the version read is still the latest at the update, no entry with the key can
//!   have been committed since the snapshot.
//! - The ledger entry gets its id from the ledger's identity sequence and is indexed
//!   like an INSERT would index it (in the partial idempotency index only with a key).
//! - SERIALIZABLE's read and write tracking happens inside the access methods used here.
//! - A read-only transaction (or a standby) is left to the SQL path, which refuses it.

use crate::compat;
use crate::decide::Figures;
use crate::money::canonical;
use crate::movement::Entry;
use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::{AnyNumeric, FromDatum, IntoDatum, JsonB};
use std::cell::Cell;
use std::ffi::{c_char, CStr};

mod grants;
mod holds;
mod transfers;
pub use holds::{capture, hold, Capture};
pub use transfers::transfer;

/// A column as pg_credits made it. Anything else about a column changed by hand (its
/// type, a typmod, NOT NULL) is something the SQL path would enforce and a formed tuple
/// would not: the direct path then steps aside.
struct Column {
    name: &'static CStr,
    of: Type,
    not_null: bool,
}

#[derive(Clone, Copy)]
enum Type {
    Builtin(Oid),
    /// One of pg_credits' domains, by its index in [`DOMAINS`].
    Domain(usize),
}

const DOMAINS: [&CStr; 8] = [
    c"credits.account_id",
    c"credits.amount",
    c"credits.entry_kind",
    c"credits.json_object",
    c"credits.slot_amount",
    c"credits.hold_status",
    c"credits.grant_category",
    c"credits.grant_priority",
];
const ACCOUNT_ID: Type = Type::Domain(0);
const AMOUNT: Type = Type::Domain(1);
const ENTRY_KIND: Type = Type::Domain(2);
const JSON_OBJECT: Type = Type::Domain(3);
const SLOT_AMOUNT: Type = Type::Domain(4);
const HOLD_STATUS: Type = Type::Domain(5);
const GRANT_CATEGORY: Type = Type::Domain(6);
const GRANT_PRIORITY: Type = Type::Domain(7);

const fn column(name: &'static CStr, of: Type, not_null: bool) -> Column {
    Column { name, of, not_null }
}

const ACCOUNT_COLUMNS: [Column; 10] = [
    column(c"account", ACCOUNT_ID, true),
    column(c"balance", AMOUNT, true),
    column(c"min_balance", AMOUNT, true),
    column(c"low_balance_threshold", AMOUNT, false),
    column(c"metadata", JSON_OBJECT, false),
    column(c"created_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"updated_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"slots", Type::Builtin(pg_sys::INT4OID), true),
    column(c"held", AMOUNT, true),
    column(c"has_grants", Type::Builtin(pg_sys::BOOLOID), true),
];

const LEDGER_COLUMNS: [Column; 16] = [
    column(c"id", Type::Builtin(pg_sys::INT8OID), true),
    column(c"account", Type::Builtin(pg_sys::TEXTOID), true),
    column(c"amount", AMOUNT, true),
    column(c"balance_after", AMOUNT, false),
    column(c"kind", ENTRY_KIND, true),
    column(c"reason", Type::Builtin(pg_sys::TEXTOID), false),
    column(c"idempotency_key", Type::Builtin(pg_sys::TEXTOID), false),
    column(c"metadata", JSON_OBJECT, false),
    column(c"created_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"txid", Type::Builtin(pg_sys::XID8OID), true),
    column(c"grant_id", Type::Builtin(pg_sys::INT8OID), false),
    column(c"hold_id", Type::Builtin(pg_sys::INT8OID), false),
    column(c"held_amount", AMOUNT, false),
    column(c"outcome", Type::Builtin(pg_sys::JSONBOID), false),
    column(c"transfer_id", Type::Builtin(pg_sys::INT8OID), false),
    column(c"refund_of", Type::Builtin(pg_sys::INT8OID), false),
];

const SLOT_COLUMNS: [Column; 3] = [
    column(c"account", Type::Builtin(pg_sys::TEXTOID), true),
    column(c"slot", Type::Builtin(pg_sys::INT4OID), true),
    column(c"available", SLOT_AMOUNT, true),
];

const HOLD_COLUMNS: [Column; 13] = [
    column(c"account", Type::Builtin(pg_sys::TEXTOID), true),
    column(c"hold_id", Type::Builtin(pg_sys::INT8OID), true),
    column(c"amount", AMOUNT, true),
    column(c"captured", AMOUNT, true),
    column(c"released", AMOUNT, true),
    column(c"status", HOLD_STATUS, true),
    column(c"pools", Type::Builtin(pg_sys::INT8ARRAYOID), true),
    column(c"parts", Type::Builtin(pg_sys::NUMERICARRAYOID), true),
    column(c"expires_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"created_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"resolved_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), false),
    column(c"reason", Type::Builtin(pg_sys::TEXTOID), false),
    column(c"metadata", JSON_OBJECT, false),
];

const GRANT_COLUMNS: [Column; 14] = [
    column(c"account", Type::Builtin(pg_sys::TEXTOID), true),
    column(c"grant_id", Type::Builtin(pg_sys::INT8OID), true),
    column(c"amount", AMOUNT, true),
    column(c"remaining", AMOUNT, true),
    column(c"held", AMOUNT, true),
    column(c"category", GRANT_CATEGORY, true),
    column(c"priority", GRANT_PRIORITY, true),
    column(c"effective_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"expires_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"closed", Type::Builtin(pg_sys::TEXTOID), false),
    column(c"closed_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), false),
    column(c"created_at", Type::Builtin(pg_sys::TIMESTAMPTZOID), true),
    column(c"reason", Type::Builtin(pg_sys::TEXTOID), false),
    column(c"metadata", JSON_OBJECT, false),
];

/// What a direct charge did.
pub struct Charged {
    pub balance: AnyNumeric,
    /// The account's low-balance threshold, when this charge crossed below it.
    pub crossed_threshold: Option<AnyNumeric>,
}

/// What a direct charge of a hot account's slot did.
pub enum SlotCharge {
    /// Taken from `slot`: the balance after (the other slots and the account row as of
    /// the charge's snapshot) and the account's low-balance threshold.
    Taken { balance: AnyNumeric, threshold: Option<AnyNumeric>, slot: i32 },
    /// No slot it may take from can pay: the account's slots must be gathered.
    CannotPay,
    /// Not taken, nothing written: the SQL path decides.
    StepAside,
}

/// What `heap_update` did with a row version.
enum Update {
    /// Written; true when not a HOT update, so the new version needed index entries
    /// (the primary key's is made).
    Done(bool),
    /// Another transaction is writing that version and has not finished (we did not wait).
    Busy,
    /// Not written: changed since the snapshot, or (waiting) by a transaction that committed.
    Lost,
}

/// Makes a charge (a positive cost) of a plain account, or of one this backend knows to
/// have grants (see `grants`), or returns `None` having written nothing. A charge with an
/// idempotency key steps aside when its key is in the ledger.
pub fn charge(entry: &Entry<'_>) -> Option<Charged> {
    let also = Also {
        idempotency_keys: entry.idempotency_key.is_some(),
        grants: crate::pools::known_to_have_grants(entry.account),
        ..Also::default()
    };
    // SAFETY: see `with_tables`.
    unsafe { with_tables(also, |tables| tables.charge(entry)).flatten() }
}

/// Takes a charge (a positive cost) from slot `preferred` of a hot account or, if `hop`,
/// from the first slot after it (in slot order, wrapping around) that can pay and that no
/// other transaction is charging right now. Only when every slot that can pay is being
/// charged does it wait, for the first of them. A charge with an idempotency key must come
/// with the key's lock held and the key looked up (see `hot`): this does not look.
pub fn take_from_slot(entry: &Entry<'_>, preferred: i32, hop: bool) -> SlotCharge {
    let also = Also { slots: true, idempotency_keys: entry.idempotency_key.is_some(), ..Also::default() };
    // SAFETY: see `with_tables`.
    unsafe { with_tables(also, |tables| tables.take_from_slot(entry, preferred, hop)) }
        .unwrap_or(SlotCharge::StepAside)
}

/// Writes what `charge_many` decided for the plain accounts it locked (`FOR UPDATE`):
/// each account's locked row version gets its final balance, and every entry is appended
/// (with its `balance_after`, in the order given). Returns false, having written nothing,
/// when the tables cannot be written directly.
pub fn settle(accounts: &[Settled<'_>], entries: &[(Entry<'_>, AnyNumeric)]) -> bool {
    let also =
        Also { idempotency_keys: entries.iter().any(|(entry, _)| entry.idempotency_key.is_some()), ..Also::default() };
    // SAFETY: see `with_tables`.
    unsafe { with_tables(also, |tables| tables.settle(accounts, entries)) }.is_some()
}

/// An account `charge_many` locked: the row version it locked, and its final balance.
pub struct Settled<'a> {
    pub version: pg_sys::ItemPointerData,
    pub account: &'a str,
    pub balance: AnyNumeric,
}

/// What the ledger says of a charge's idempotency key.
pub enum KeyUse {
    /// Not used: the charge may write it.
    Unused,
    /// In the ledger as of the transaction's snapshot: the charge replays it.
    Recorded,
    /// Under REPEATABLE READ or SERIALIZABLE: used by a transaction that committed after
    /// the snapshot, which cannot see it, so the charge can neither replay it nor write
    /// the key again.
    RecordedSinceSnapshot,
}

/// Looks the charge's idempotency key up; `None` when the tables cannot be read directly.
/// Only meaningful with the key's lock held (see `hot`).
pub fn key_use(entry: &Entry<'_>, key: &str) -> Option<KeyUse> {
    let also = Also { idempotency_keys: true, ..Also::default() };
    // SAFETY: see `with_tables`; XactIsoLevel is a plain variable of this backend.
    unsafe {
        with_tables(also, |tables| {
            let account = entry.account.into_datum().expect("text is never NULL");
            let recorded_as_of = |snapshot: pg_sys::Snapshot| {
                let snapshot = pg_sys::RegisterSnapshot(snapshot);
                let recorded = tables.key_recorded(snapshot, account, key);
                pg_sys::UnregisterSnapshot(snapshot);
                recorded
            };
            if recorded_as_of(pg_sys::GetTransactionSnapshot()) {
                KeyUse::Recorded
            } else if pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32
                && recorded_as_of(pg_sys::GetLatestSnapshot())
            {
                KeyUse::RecordedSinceSnapshot
            } else {
                KeyUse::Unused
            }
        })
    }
}

/// What a direct write opens besides the accounts and the ledger.
#[derive(Clone, Copy, Default)]
struct Also {
    /// The slots of hot accounts.
    slots: bool,
    /// The ledger's idempotency index, for entries with a key.
    idempotency_keys: bool,
    /// The holds and their indexes.
    holds: bool,
    /// The pools of accounts with grants and their indexes.
    grants: bool,
}

/// Runs `f` on pg_credits' tables (and what `also` names), opened; `None` when
/// they cannot be used directly.
///
/// SAFETY (for everything below): every relation opened is closed (locks kept to the end
/// of the transaction, as the executor does), scans and slots are released before any
/// write, and every tuple is formed from copies before the buffer it came from is let go.
unsafe fn with_tables<T>(also: Also, f: impl FnOnce(&Tables) -> T) -> Option<T> {
    if pg_sys::XactReadOnly {
        // The executor refuses writes in a read-only transaction (or on a standby); the
        // heap access methods do not check: leave it to the SQL path's error.
        return None;
    }
    // What the SQL path's SPI does before each statement: this call's reads and writes
    // then come after the calling statement's own (which must not see them), so an
    // UPDATE that called a charge and then meets the row the charge wrote fails, as it
    // does against the SQL path, instead of skipping the row in silence.
    pg_sys::CommandCounterIncrement();
    let tables = Tables::open(also)?;
    let result = f(&tables);
    tables.close();
    Some(result)
}

/// One of pg_credits' tables and its primary key.
struct Table {
    heap: pg_sys::Relation,
    pkey: pg_sys::Relation,
}

struct Tables {
    accounts: Table,
    ledger: Table,
    /// Opened only for a slot charge.
    slots: Option<Table>,
    /// Opened only for a hold or its capture.
    holds: Option<Holds>,
    /// Opened only for a charge of an account with grants.
    grants: Option<Grants>,
    /// Opened only for entries with an idempotency key.
    ledger_keys: Option<pg_sys::Relation>,
    /// The ledger's (account, created_at) index and its block-range index of ids: every
    /// entry goes into both.
    ledger_history: pg_sys::Relation,
    ledger_id_ranges: pg_sys::Relation,
    ledger_ids: Oid,
    transfer_ids: Oid,
}

/// The holds, their primary key, and the indexes every new hold goes into.
struct Holds {
    table: Table,
    /// (hold_id): how a capture finds its hold.
    by_id: pg_sys::Relation,
    /// (account, expires_at) and (expires_at), both only of active holds.
    expiry: pg_sys::Relation,
    due: pg_sys::Relation,
    ids: Oid,
}

/// The pools of accounts with grants, and every index a pool's new version may go into.
struct Grants {
    table: Table,
    /// (grant_id).
    by_id: pg_sys::Relation,
    /// Of open pools: (account, burn order…), (account, expires_at), (account,
    /// effective_at), (expires_at).
    burn_order: pg_sys::Relation,
    expiry: pg_sys::Relation,
    effective: pg_sys::Relation,
    due: pg_sys::Relation,
}

/// Where pg_credits' tables are, looked up once per backend (catalog scans cost more
/// than the charge) and checked on every open: a dropped and re-created extension
/// means new OIDs, which the check notices and looks up again.
#[derive(Clone, Copy, PartialEq)]
struct Catalog {
    schema: Oid,
    /// [`RELATIONS`], tables and their primary keys.
    relations: [Oid; 10],
    ledger_key_index: Oid,
    ledger_history_index: Oid,
    ledger_id_index: Oid,
    ledger_refund_index: Oid,
    ledger_ids: Oid,
    /// The sequence of transfer ids.
    transfer_ids: Oid,
    /// holds_id, holds_expiry, holds_due.
    hold_indexes: [Oid; 3],
    hold_ids: Oid,
    /// account_grants_burn_order, _expiry, _effective, _due, _id.
    grant_indexes: [Oid; 5],
    /// The types of [`DOMAINS`].
    domains: [Oid; 8],
}

const RELATIONS: [&CStr; 10] = [
    c"accounts",
    c"accounts_pkey",
    c"ledger",
    c"ledger_pkey",
    c"account_slots",
    c"account_slots_pkey",
    c"holds",
    c"holds_pkey",
    c"account_grants",
    c"account_grants_pkey",
];
const HOLD_INDEXES: [&CStr; 3] = [c"holds_id", c"holds_expiry", c"holds_due"];
const GRANT_INDEXES: [&CStr; 5] = [
    c"account_grants_burn_order",
    c"account_grants_expiry",
    c"account_grants_effective",
    c"account_grants_due",
    c"account_grants_id",
];

thread_local! {
    static CATALOG: Cell<Option<Catalog>> = const { Cell::new(None) };
}

impl Catalog {
    unsafe fn look_up() -> Option<Catalog> {
        let schema = pg_sys::get_namespace_oid(c"credits".as_ptr(), true);
        let find = |name: &CStr| pg_sys::get_relname_relid(name.as_ptr(), schema);
        let relations = RELATIONS.map(find);
        let domain = |name: &CStr| -> Oid {
            let name = name.to_str().expect("ASCII").into_datum();
            pgrx::direct_function_call(pg_sys::to_regtype, &[name]).unwrap_or(pg_sys::InvalidOid)
        };
        let catalog = Catalog {
            schema,
            relations,
            ledger_key_index: find(c"ledger_idempotency_key"),
            ledger_history_index: find(c"ledger_account_created_at"),
            ledger_id_index: find(c"ledger_ids"),
            ledger_refund_index: find(c"ledger_refunds"),
            ledger_ids: compat::identity_sequence(relations[2], 1),
            transfer_ids: find(c"transfer_ids"),
            hold_indexes: HOLD_INDEXES.map(find),
            hold_ids: compat::identity_sequence(relations[6], 2),
            grant_indexes: GRANT_INDEXES.map(find),
            domains: DOMAINS.map(domain),
        };
        let complete = schema != pg_sys::InvalidOid
            && !relations.contains(&pg_sys::InvalidOid)
            && !catalog.domains.contains(&pg_sys::InvalidOid)
            && !catalog.hold_indexes.contains(&pg_sys::InvalidOid)
            && !catalog.grant_indexes.contains(&pg_sys::InvalidOid)
            && catalog.hold_ids != pg_sys::InvalidOid
            && catalog.ledger_key_index != pg_sys::InvalidOid
            && catalog.ledger_history_index != pg_sys::InvalidOid
            && catalog.ledger_id_index != pg_sys::InvalidOid
            && catalog.ledger_refund_index != pg_sys::InvalidOid
            && catalog.ledger_ids != pg_sys::InvalidOid
            && catalog.transfer_ids != pg_sys::InvalidOid;
        complete.then_some(catalog)
    }
}

impl Tables {
    unsafe fn open(also: Also) -> Option<Tables> {
        if let Some(catalog) = CATALOG.get() {
            if let Some(tables) = Tables::open_as(catalog, also) {
                return Some(tables);
            }
        }
        let catalog = Catalog::look_up()?;
        CATALOG.set(Some(catalog));
        Tables::open_as(catalog, also)
    }

    /// The tables, if they are where `catalog` says and as pg_credits made them.
    unsafe fn open_as(catalog: Catalog, also: Also) -> Option<Tables> {
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        // Tables and their primary keys, by their place in RELATIONS: those not wanted
        // stay null.
        let wanted = |i: usize| match i {
            0..4 => true,
            4..6 => also.slots,
            6..8 => also.holds,
            _ => also.grants,
        };
        let opened: Vec<pg_sys::Relation> = (0..RELATIONS.len())
            .map(|i| {
                let oid = catalog.relations[i];
                match (wanted(i), i % 2 == 0) {
                    (false, _) => std::ptr::null_mut(),
                    (true, true) => pg_sys::try_table_open(oid, lock),
                    (true, false) => pg_sys::try_index_open(oid, lock),
                }
            })
            .collect();
        let in_place = opened.iter().zip(RELATIONS).enumerate().all(|(i, (relation, name))| {
            !wanted(i)
                || (!relation.is_null()
                    && (*(**relation).rd_rel).relnamespace == catalog.schema
                    && CStr::from_ptr((*(**relation).rd_rel).relname.data.as_ptr()) == name)
        });
        let [_, accounts_pkey, _, ledger_pkey, _, slots_pkey, _, holds_pkey, _, grants_pkey] = catalog.relations;
        let [holds_id, holds_expiry, holds_due] = catalog.hold_indexes;
        let [burn_order, grants_expiry, grants_effective, grants_due, grants_id] = catalog.grant_indexes;
        let usable = in_place
            && pg_sys::get_rel_relkind(catalog.ledger_ids) == pg_sys::RELKIND_SEQUENCE as c_char
            && catalog.as_made(opened[0], &ACCOUNT_COLUMNS, &[accounts_pkey])
            && catalog.as_made(
                opened[2],
                &LEDGER_COLUMNS,
                &[
                    ledger_pkey,
                    catalog.ledger_key_index,
                    catalog.ledger_history_index,
                    catalog.ledger_id_index,
                    catalog.ledger_refund_index,
                ],
            )
            && only_ours(opened[0], pg_sys::TRIGGER_TYPE_UPDATE, &[c"guard_update"])
            && updates_replicate(opened[0])
            && only_ours(opened[2], pg_sys::TRIGGER_TYPE_INSERT, &[])
            && (!also.slots
                || (catalog.as_made(opened[4], &SLOT_COLUMNS, &[slots_pkey])
                    && only_ours(opened[4], pg_sys::TRIGGER_TYPE_UPDATE, &[c"refuse_direct_write"])
                    && updates_replicate(opened[4])))
            && (!also.holds
                || (pg_sys::get_rel_relkind(catalog.hold_ids) == pg_sys::RELKIND_SEQUENCE as c_char
                    && catalog.as_made(opened[6], &HOLD_COLUMNS, &[holds_pkey, holds_id, holds_expiry, holds_due])
                    && only_ours(opened[6], pg_sys::TRIGGER_TYPE_UPDATE, &[c"refuse_direct_write"])
                    && only_ours(opened[6], pg_sys::TRIGGER_TYPE_INSERT, &[c"reconcile_inserted_hold"])
                    && updates_replicate(opened[6])))
            && (!also.grants
                || (catalog.as_made(
                    opened[8],
                    &GRANT_COLUMNS,
                    &[grants_pkey, burn_order, grants_expiry, grants_effective, grants_due, grants_id],
                ) && only_ours(opened[8], pg_sys::TRIGGER_TYPE_UPDATE, &[c"refuse_direct_write"])
                    && updates_replicate(opened[8])));
        if !usable {
            for (index, relation) in opened.into_iter().enumerate() {
                if !relation.is_null() {
                    close(relation, index % 2 == 1);
                }
            }
            return None;
        }
        let table = |i: usize| Table { heap: opened[i], pkey: opened[i + 1] };
        Some(Tables {
            accounts: table(0),
            ledger: table(2),
            slots: also.slots.then(|| table(4)),
            // The index lists were checked above: these are the indexes named.
            holds: also.holds.then(|| Holds {
                table: table(6),
                by_id: pg_sys::index_open(holds_id, lock),
                expiry: pg_sys::index_open(holds_expiry, lock),
                due: pg_sys::index_open(holds_due, lock),
                ids: catalog.hold_ids,
            }),
            grants: also.grants.then(|| Grants {
                table: table(8),
                by_id: pg_sys::index_open(grants_id, lock),
                burn_order: pg_sys::index_open(burn_order, lock),
                expiry: pg_sys::index_open(grants_expiry, lock),
                effective: pg_sys::index_open(grants_effective, lock),
                due: pg_sys::index_open(grants_due, lock),
            }),
            ledger_keys: also.idempotency_keys.then(|| pg_sys::index_open(catalog.ledger_key_index, lock)),
            ledger_history: pg_sys::index_open(catalog.ledger_history_index, lock),
            ledger_id_ranges: pg_sys::index_open(catalog.ledger_id_index, lock),
            ledger_ids: catalog.ledger_ids,
            transfer_ids: catalog.transfer_ids,
        })
    }

    unsafe fn close(&self) {
        if let Some(index) = self.ledger_keys {
            close(index, true);
        }
        close(self.ledger_history, true);
        close(self.ledger_id_ranges, true);
        if let Some(holds) = &self.holds {
            for index in [holds.by_id, holds.expiry, holds.due] {
                close(index, true);
            }
        }
        if let Some(grants) = &self.grants {
            for index in [grants.by_id, grants.burn_order, grants.expiry, grants.effective, grants.due] {
                close(index, true);
            }
        }
        let holds = self.holds.as_ref().map(|holds| &holds.table);
        let grants = self.grants.as_ref().map(|grants| &grants.table);
        let tables = [Some(&self.accounts), Some(&self.ledger), self.slots.as_ref(), holds, grants];
        for table in tables.into_iter().flatten() {
            close(table.pkey, true);
            close(table.heap, false);
        }
    }

    unsafe fn charge(&self, entry: &Entry<'_>) -> Option<Charged> {
        if self.grants.is_some() {
            return self.charge_from_pools(entry);
        }
        let cost = &entry.amount.value;
        let account_datum = entry.account.into_datum().expect("text is never NULL");
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        if let Some(key) = entry.idempotency_key {
            if self.key_recorded(snapshot, account_datum, key) {
                pg_sys::UnregisterSnapshot(snapshot);
                return None;
            }
        }
        let mut found = None;
        self.accounts.scan(snapshot, &mut [text_key(self.accounts.pkey, 1, account_datum)], ACCOUNT_COLUMNS.len(), |values, nulls, version| {
            // No slots and no grants: the own balance is the only pool. Holds count,
            // lapsed or not (the SQL path writes the lapses and decides again).
            let plain = i32::from_datum(values[7], nulls[7]) == Some(0) && bool::from_datum(values[9], nulls[9]) == Some(false);
            let before = AnyNumeric::from_datum(values[1], nulls[1]).expect("balance is NOT NULL");
            let floor = AnyNumeric::from_datum(values[2], nulls[2]).expect("min_balance is NOT NULL");
            let after = canonical(before.clone() - cost.clone());
            // decide's rule, balance - held - cost >= min_balance, without numeric
            // arithmetic when nothing is held (a numeric 0 is its header alone, no digits),
            // which is nearly always: every operation on a numeric is a call into PostgreSQL.
            let nothing_held = pgrx::varlena::varsize_any_exhdr(values[8].cast_mut_ptr()) == 2;
            let pays = if nothing_held {
                after >= floor
            } else {
                let held = AnyNumeric::from_datum(values[8], nulls[8]).expect("held is NOT NULL");
                Figures { balance: before.clone(), held, min_balance: floor }.can_pay(cost)
            };
            if plain && pays {
                let threshold = AnyNumeric::from_datum(values[3], nulls[3]);
                values[1] = after.clone().into_datum().expect("a number");
                values[6] = now;
                let new_row = pg_sys::heap_form_tuple((*self.accounts.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
                found = Some((version, new_row, before, after, threshold));
            }
            false
        });
        pg_sys::UnregisterSnapshot(snapshot);
        let (mut version, new_row, before, balance, threshold) = found?;
        if !matches!(self.accounts.update(&mut version, new_row, &mut [account_datum], true), Update::Done(_)) {
            return None;
        }
        self.append_entry(entry, account_datum, Some(&balance), now);
        pg_sys::CommandCounterIncrement();
        let crossed = threshold.filter(|t| &before >= t && &balance < t);
        Some(Charged { balance, crossed_threshold: crossed })
    }

    unsafe fn take_from_slot(&self, entry: &Entry<'_>, preferred: i32, hop: bool) -> SlotCharge {
        let cost = &entry.amount.value;
        let slots = self.slots.as_ref().expect("opened for a slot charge");
        let account_datum = entry.account.into_datum().expect("text is never NULL");
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        // Every slot and the account row, as of one snapshot.
        let mut all: Vec<(i32, pg_sys::ItemPointerData, AnyNumeric)> = Vec::new();
        slots.scan(snapshot, &mut [text_key(slots.pkey, 1, account_datum)], SLOT_COLUMNS.len(), |values, nulls, version| {
            let slot = i32::from_datum(values[1], nulls[1]).expect("slot is NOT NULL");
            all.push((slot, version, AnyNumeric::from_datum(values[2], nulls[2]).expect("available is NOT NULL")));
            true
        });
        let mut row_balance = None;
        let mut threshold = None;
        self.accounts.scan(snapshot, &mut [text_key(self.accounts.pkey, 1, account_datum)], ACCOUNT_COLUMNS.len(), |values, nulls, _| {
            if i32::from_datum(values[7], nulls[7]).is_some_and(|slots| slots > 0) {
                row_balance = AnyNumeric::from_datum(values[1], nulls[1]);
                threshold = AnyNumeric::from_datum(values[3], nulls[3]);
            }
            false
        });
        pg_sys::UnregisterSnapshot(snapshot);
        let Some(row_balance) = row_balance.filter(|_| all.iter().any(|(slot, ..)| *slot == preferred)) else {
            // Not hot any more, or reshaped since this backend looked.
            return SlotCharge::StepAside;
        };
        let mut candidates: Vec<_> = all
            .iter()
            .filter(|(slot, _, available)| (hop || *slot == preferred) && available >= cost)
            .collect();
        if candidates.is_empty() {
            return SlotCharge::CannotPay;
        }
        candidates.sort_by_key(|(slot, ..)| (*slot < preferred, *slot));
        let balance = canonical(
            all.iter().fold(row_balance, |total, (_, _, available)| total + available.clone()) - cost.clone(),
        );
        // Without waiting first (passing over slots that are busy or changed since the
        // snapshot), then, every candidate passed over, waiting for the first.
        let attempts = candidates.iter().map(|candidate| (*candidate, false)).chain([(candidates[0], true)]);
        for (&(slot, mut version, ref available), wait) in attempts {
            let slot_datum = slot.into_datum().expect("an integer");
            let left = canonical(available.clone() - cost.clone());
            let mut values = [account_datum, slot_datum, left.into_datum().expect("a number")];
            let mut nulls = [false; 3];
            let new_row = pg_sys::heap_form_tuple((*slots.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            match slots.update(&mut version, new_row, &mut [account_datum, slot_datum], wait) {
                Update::Done(_) => {
                    self.append_entry(entry, account_datum, None, now);
                    pg_sys::CommandCounterIncrement();
                    return SlotCharge::Taken { balance, threshold, slot };
                }
                Update::Busy | Update::Lost if !wait => continue,
                Update::Busy | Update::Lost => return SlotCharge::StepAside,
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Whether the ledger has an entry for this account and idempotency key under
    /// `snapshot`. A charge asks with the snapshot whose account row version it then
    /// updates: every entry with a key is written together with an update of the account's
    /// row (or a slot, which a plain account has none of), so if that version is still the
    /// latest when it is updated, no entry with the key was committed since.
    unsafe fn key_recorded(&self, snapshot: pg_sys::Snapshot, account: Datum, key: &str) -> bool {
        let index = self.ledger_keys.expect("opened for entries with a key");
        let key = key.into_datum().expect("text is never NULL");
        let mut recorded = false;
        scan(self.ledger.heap, index, snapshot, &mut [text_key(index, 1, account), text_key(index, 2, key)], 1, |_, _, _| {
            recorded = true;
            false
        });
        recorded
    }

    unsafe fn settle(&self, accounts: &[Settled<'_>], entries: &[(Entry<'_>, AnyNumeric)]) {
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        for settled in accounts {
            let mut version = settled.version;
            let new_row = self.accounts.with_version(version, ACCOUNT_COLUMNS.len(), |values, nulls| {
                values[1] = settled.balance.clone().into_datum().expect("a number");
                values[6] = now;
                pg_sys::heap_form_tuple((*self.accounts.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr())
            });
            // The index key from our own copy of the id: the version's columns pointed
            // into its buffer, which other backends may prune and compact once unpinned.
            let account = settled.account.into_datum().expect("text is never NULL");
            // Locked by the caller: nobody else can have changed it, and heap_update does
            // not wait for our own lock.
            if !matches!(self.accounts.update(&mut version, new_row, &mut [account], true), Update::Done(_)) {
                pgrx::error!("pg_credits: an account row locked by charge_many changed under its lock");
            }
        }
        for (entry, balance_after) in entries {
            let account = entry.account.into_datum().expect("text is never NULL");
            self.append_entry(entry, account, Some(balance_after), now);
        }
        pg_sys::CommandCounterIncrement();
    }

    unsafe fn append_entry(&self, entry: &Entry<'_>, account: Datum, balance_after: Option<&AnyNumeric>, now: Datum) {
        let movement = NewEntry {
            amount: entry.movement.ledger_amount(&entry.amount.value),
            balance_after: balance_after.cloned(),
            kind: entry.movement.kind(),
            reason: entry.reason,
            idempotency_key: entry.idempotency_key,
            metadata: entry.metadata.as_ref(),
            grant_id: None,
            hold_id: None,
            held_amount: None,
            outcome: None,
            transfer_id: None,
        };
        self.append(&movement, account, now);
    }

    /// Appends an entry of `account` at `now`, as an INSERT would: its id from the
    /// ledger's identity sequence, and indexed in (account, id), (account, created_at),
    /// the block-range index of ids, and the partial (account, idempotency_key) index
    /// when it has a key.
    unsafe fn append(&self, entry: &NewEntry<'_>, account: Datum, now: Datum) {
        let id: i64 = pgrx::direct_function_call(pg_sys::nextval_oid, &[self.ledger_ids.into_datum()])
            .expect("nextval returns a value");
        let txid = pg_sys::GetTopFullTransactionId().value;
        let mut values = [
            id.into_datum(),
            Some(account),
            entry.amount.clone().into_datum(),
            entry.balance_after.clone().into_datum(),
            entry.kind.into_datum(),
            entry.reason.into_datum(),
            entry.idempotency_key.into_datum(),
            entry.metadata.map(|m| JsonB(m.0.clone())).into_datum(),
            Some(now),
            Some(Datum::from(txid)),
            entry.grant_id.into_datum(),
            entry.hold_id.into_datum(),
            entry.held_amount.clone().into_datum(),
            entry.outcome.clone().map(JsonB).into_datum(),
            entry.transfer_id.into_datum(),
            // refund_of: refunds are written by SQL (so no entry here goes into the
            // partial index of refunds).
            None,
        ];
        let mut nulls = values.map(|v| v.is_none());
        let mut datums = values.each_mut().map(|v| v.unwrap_or(Datum::from(0)));
        let row = pg_sys::heap_form_tuple((*self.ledger.heap).rd_att, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(self.ledger.heap, row);
        self.ledger.index(&mut [datums[1], datums[0]], row, false);
        insert_index_entry(self.ledger_history, self.ledger.heap, &mut [datums[1], datums[8]], row, false);
        insert_index_entry(self.ledger_id_ranges, self.ledger.heap, &mut [datums[0]], row, false);
        if entry.idempotency_key.is_some() {
            let keys = self.ledger_keys.expect("opened for entries with a key");
            insert_index_entry(keys, self.ledger.heap, &mut [datums[1], datums[6]], row, false);
        }
    }
}

/// The columns of a new ledger entry that are not the same for every entry (its id,
/// account, time and transaction).
struct NewEntry<'a> {
    amount: AnyNumeric,
    balance_after: Option<AnyNumeric>,
    kind: &'static str,
    reason: Option<&'a str>,
    idempotency_key: Option<&'a str>,
    metadata: Option<&'a JsonB>,
    grant_id: Option<i64>,
    hold_id: Option<i64>,
    held_amount: Option<AnyNumeric>,
    outcome: Option<serde_json::Value>,
    transfer_id: Option<i64>,
}

impl Table {
    /// Calls `each` with the columns and version of every row the primary key finds for
    /// `keys` under `snapshot`, until it returns false. `each` may change the columns it
    /// is given (to form a new row from them); they point into a pinned buffer.
    unsafe fn scan(
        &self,
        snapshot: pg_sys::Snapshot,
        keys: &mut [pg_sys::ScanKeyData],
        columns: usize,
        each: impl FnMut(&mut [Datum], &mut [bool], pg_sys::ItemPointerData) -> bool,
    ) {
        scan(self.heap, self.pkey, snapshot, keys, columns, each);
    }

    /// Replaces `version` with `new_row` if it is still the latest version. Another
    /// transaction writing it makes us wait for its end, or, if not `wait`, return `Busy`;
    /// nothing is written unless `Done` (and a failure leaves no lock behind).
    unsafe fn update(
        &self,
        version: &mut pg_sys::ItemPointerData,
        new_row: pg_sys::HeapTuple,
        key: &mut [Datum],
        wait: bool,
    ) -> Update {
        let mut failure = pg_sys::TM_FailureData::default();
        let mut lock_mode = pg_sys::LockTupleMode::LockTupleNoKeyExclusive;
        let (result, needs_index_entry) = compat::heap_update(
            self.heap,
            version,
            new_row,
            pg_sys::GetCurrentCommandId(true),
            wait,
            &mut failure,
            &mut lock_mode,
        );
        match result {
            pg_sys::TM_Result::TM_Ok => {}
            pg_sys::TM_Result::TM_BeingModified => return Update::Busy,
            _ => return Update::Lost,
        }
        if needs_index_entry {
            // Not a HOT update: the new version needs its own index entry.
            self.index(key, new_row, true);
        }
        Update::Done(needs_index_entry)
    }

    /// Locks row `version` as an UPDATE would (waiting for a transaction writing it);
    /// false, having locked nothing, when it is no longer the latest version.
    unsafe fn lock(&self, version: pg_sys::ItemPointerData) -> bool {
        let mut tuple = pg_sys::HeapTupleData { t_self: version, ..Default::default() };
        let mut buffer: pg_sys::Buffer = 0;
        let mut failure = pg_sys::TM_FailureData::default();
        let result = pg_sys::heap_lock_tuple(
            self.heap,
            &mut tuple,
            pg_sys::GetCurrentCommandId(true),
            pg_sys::LockTupleMode::LockTupleNoKeyExclusive,
            pg_sys::LockWaitPolicy::LockWaitBlock,
            false,
            &mut buffer,
            &mut failure,
        );
        pg_sys::ReleaseBuffer(buffer);
        result == pg_sys::TM_Result::TM_Ok
    }

    /// Indexes a written row in the primary key, whose columns are `key` (none NULL).
    unsafe fn index(&self, key: &mut [Datum], row: pg_sys::HeapTuple, key_unchanged: bool) {
        insert_index_entry(self.pkey, self.heap, key, row, key_unchanged);
    }

    /// Calls `f` with the columns of the row version at `version`, whatever its visibility
    /// (the caller holds its lock); they point into a pinned buffer until `f` returns.
    unsafe fn with_version<T>(
        &self,
        version: pg_sys::ItemPointerData,
        columns: usize,
        f: impl FnOnce(&mut [Datum], &mut [bool]) -> T,
    ) -> T {
        let mut tuple = pg_sys::HeapTupleData { t_self: version, ..Default::default() };
        let mut buffer: pg_sys::Buffer = 0;
        let any = std::ptr::addr_of_mut!(pg_sys::SnapshotAnyData);
        if !pg_sys::heap_fetch(self.heap, any, &mut tuple, &mut buffer, false) {
            pgrx::error!("pg_credits: a locked row version is missing");
        }
        let mut values = vec![Datum::from(0); columns];
        let mut nulls = vec![false; columns];
        pg_sys::heap_deform_tuple(&mut tuple, (*self.heap).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
        let result = f(&mut values, &mut nulls);
        pg_sys::ReleaseBuffer(buffer);
        result
    }
}

/// Whether an account row (its columns as [`ACCOUNT_COLUMNS`]) is plain (no slots, no
/// grants), and its figures.
fn plain_figures(values: &[Datum], nulls: &[bool]) -> (bool, Figures<AnyNumeric>) {
    // SAFETY: the columns are those of ACCOUNT_COLUMNS, of a row pinned by the caller.
    unsafe {
        let plain = i32::from_datum(values[7], nulls[7]) == Some(0) && bool::from_datum(values[9], nulls[9]) == Some(false);
        let figures = Figures {
            balance: AnyNumeric::from_datum(values[1], nulls[1]).expect("balance is NOT NULL"),
            held: AnyNumeric::from_datum(values[8], nulls[8]).expect("held is NOT NULL"),
            min_balance: AnyNumeric::from_datum(values[2], nulls[2]).expect("min_balance is NOT NULL"),
        };
        (plain, figures)
    }
}

/// Calls `each` with the columns and version of every row of `heap` that `index` finds
/// for `keys` under `snapshot`, until it returns false (see `Table::scan`).
unsafe fn scan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    keys: &mut [pg_sys::ScanKeyData],
    columns: usize,
    mut each: impl FnMut(&mut [Datum], &mut [bool], pg_sys::ItemPointerData) -> bool,
) {
    let scan = compat::index_beginscan(heap, index, snapshot, keys.len() as i32);
    pg_sys::index_rescan(scan, keys.as_mut_ptr(), keys.len() as i32, std::ptr::null_mut(), 0);
    let slot = pg_sys::table_slot_create(heap, std::ptr::null_mut());
    while pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
        pg_sys::slot_getsomeattrs_int(slot, columns as i32);
        let values = std::slice::from_raw_parts_mut((*slot).tts_values, columns);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, columns);
        if !each(values, nulls, (*slot).tts_tid) {
            break;
        }
    }
    pg_sys::ExecDropSingleTupleTableSlot(slot);
    pg_sys::index_endscan(scan);
}

/// Inserts a written row's entry into `index`, whose columns are `key` (none NULL).
unsafe fn insert_index_entry(
    index: pg_sys::Relation,
    heap: pg_sys::Relation,
    key: &mut [Datum],
    row: pg_sys::HeapTuple,
    key_unchanged: bool,
) {
    let mut nulls = vec![false; key.len()];
    compat::index_insert_once(
        index,
        key.as_mut_ptr(),
        nulls.as_mut_ptr(),
        &mut (*row).t_self,
        heap,
        if (*(*index).rd_index).indisunique {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES
        } else {
            pg_sys::IndexUniqueCheck::UNIQUE_CHECK_NO
        },
        key_unchanged,
    );
}

/// An equality key on text column `column` of `index`, compared under the index's own
/// collation: a B-tree is ordered by it, and a descent under another collation (the
/// idempotency key column has the database's) can miss entries that are there.
unsafe fn text_key(index: pg_sys::Relation, column: i16, value: Datum) -> pg_sys::ScanKeyData {
    equal_key(index, column, pg_sys::F_TEXTEQ, value)
}

unsafe fn equal_key(index: pg_sys::Relation, column: i16, equals: u32, value: Datum) -> pg_sys::ScanKeyData {
    let mut key = pg_sys::ScanKeyData::default();
    pg_sys::ScanKeyEntryInitialize(
        &mut key,
        0,
        column,
        pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
        pg_sys::InvalidOid,
        *(*index).rd_indcollation.add(column as usize - 1),
        pg_sys::RegProcedure::from(equals),
        value,
    );
    key
}

/// Closes a relation and keeps its lock to the end of the transaction, as the executor does.
unsafe fn close(relation: pg_sys::Relation, is_index: bool) {
    let keep_lock = pg_sys::NoLock as pg_sys::LOCKMODE;
    if is_index {
        pg_sys::index_close(relation, keep_lock);
    } else {
        pg_sys::table_close(relation, keep_lock);
    }
}

impl Catalog {
    /// The relation has exactly these columns (none dropped, each of its type, without a
    /// typmod, NOT NULL as made) and exactly these indexes, and no CHECK constraints,
    /// rules or forced row security.
    unsafe fn as_made(&self, relation: pg_sys::Relation, columns: &[Column], indexes: &[Oid]) -> bool {
        let class = &*(*relation).rd_rel;
        if class.relhasrules || class.relforcerowsecurity {
            return false;
        }
        let desc = &*(*relation).rd_att;
        if desc.natts as usize != columns.len() || desc.constr.as_ref().is_some_and(|c| c.num_check > 0) {
            return false;
        }
        let same_columns = columns.iter().enumerate().all(|(index, column)| {
            let attribute = compat::attribute((*relation).rd_att, index);
            let of = match column.of {
                Type::Builtin(oid) => oid,
                Type::Domain(index) => self.domains[index],
            };
            !attribute.attisdropped
                && attribute.atttypid == of
                && attribute.atttypmod == -1
                && attribute.attnotnull == column.not_null
                && CStr::from_ptr(attribute.attname.data.as_ptr()) == column.name
        });
        let list = pg_sys::RelationGetIndexList(relation);
        same_columns
            && pg_sys::list_length(list) as usize == indexes.len()
            && indexes.iter().all(|oid| pg_sys::list_member_oid(list, *oid))
    }
}

/// An UPDATE of the table passes the executor's replica identity check (what
/// CheckCmdReplicaIdentity refuses: a publication's row filter or column list that the
/// replica identity does not cover, or published updates without a replica identity).
/// The SQL path raises that error; the direct path steps aside for it.
unsafe fn updates_replicate(relation: pg_sys::Relation) -> bool {
    let mut publication = pg_sys::PublicationDesc::default();
    pg_sys::RelationBuildPublicationDesc(relation, &mut publication);
    if !publication.rf_valid_for_update || !publication.cols_valid_for_update {
        return false;
    }
    !publication.pubactions.pubupdate
        || pg_sys::RelationGetReplicaIndex(relation) != pg_sys::InvalidOid
        || (*(*relation).rd_rel).relreplident == pg_sys::REPLICA_IDENTITY_FULL as c_char
}

unsafe fn triggers(relation: pg_sys::Relation) -> Option<&'static pg_sys::TriggerDesc> {
    (*relation).trigdesc.as_ref()
}

/// No trigger an UPDATE or INSERT (`event`) of the table fires but pg_credits' own AFTER
/// row triggers named in `ours`, whose WHEN clause is false for pg_credits' writes.
unsafe fn only_ours(relation: pg_sys::Relation, event: u32, ours: &[&CStr]) -> bool {
    let Some(desc) = triggers(relation) else { return true };
    let other_kinds = if event == pg_sys::TRIGGER_TYPE_UPDATE {
        desc.trig_update_before_row
            || desc.trig_update_instead_row
            || desc.trig_update_before_statement
            || desc.trig_update_after_statement
    } else {
        desc.trig_insert_before_row
            || desc.trig_insert_instead_row
            || desc.trig_insert_before_statement
            || desc.trig_insert_after_statement
    };
    !other_kinds
        && std::slice::from_raw_parts(desc.triggers, desc.numtriggers as usize).iter().all(|trigger| {
            trigger.tgtype as u32 & event == 0 || ours.contains(&CStr::from_ptr(trigger.tgname))
        })
}

/// A decimal as a JSON number, digit for digit.
pub fn json_number(value: &AnyNumeric) -> serde_json::Value {
    serde_json::Value::Number(value.to_string().parse().expect("a decimal is a JSON number"))
}
