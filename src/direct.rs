//! The direct charge: the common case of `credits.charge` (a plain account that can pay,
//! no idempotency key, nobody else updating the row) written straight to the tables
//! through PostgreSQL's heap and index access methods, without the SQL executor.
//!
//! Why: the executor's per-statement set-up (plan validation, executor state, one node
//! per table, snapshot and trigger bookkeeping) cost more than the writes themselves;
//! a charge is two row writes and must cost about what one UPDATE costs.
//!
//! What keeps it correct: it only ever does what the SQL path would have done, and steps
//! aside (returns `None`, having written nothing) for everything else.
//! - The tables must look exactly as pg_credits made them: the same columns, the same
//!   indexes, no rules, no forced row security, and no triggers that an UPDATE of an
//!   account or an INSERT into the ledger would fire other than pg_credits' own guard
//!   (which never fires for pg_credits' writes). Anything added by hand (a trigger, a
//!   foreign key, an index) sends every charge down the SQL path, which honours it.
//! - The account row is read with the snapshot a new statement would take and updated
//!   with `heap_update`, which succeeds only if that version is still the latest; the
//!   floor was checked on exactly that version. If another transaction updated it in the
//!   meantime, nothing was written and the SQL path takes over (it waits, re-reads, and
//!   raises a serialization failure where the isolation level requires one).
//! - The ledger entry gets its id from the ledger's identity sequence and is indexed
//!   like an INSERT would index it; a missing key means the partial idempotency index
//!   has no entry to get.
//! - SERIALIZABLE's read and write tracking happens inside the access methods used here.

use pgrx::pg_sys::{self, Datum, Oid};
use pgrx::{AnyNumeric, FromDatum, IntoDatum, JsonB};
use std::cell::Cell;
use std::ffi::{c_char, CStr};

const ACCOUNT_COLUMNS: [&CStr; 8] = [
    c"account",
    c"balance",
    c"min_balance",
    c"low_balance_threshold",
    c"metadata",
    c"created_at",
    c"updated_at",
    c"slots",
];

const LEDGER_COLUMNS: [&CStr; 10] = [
    c"id",
    c"account",
    c"amount",
    c"balance_after",
    c"kind",
    c"reason",
    c"idempotency_key",
    c"metadata",
    c"created_at",
    c"txid",
];

/// What a direct charge did.
pub struct Charged {
    pub balance: AnyNumeric,
    /// The account's low-balance threshold, when this charge crossed below it.
    pub crossed_threshold: Option<AnyNumeric>,
}

/// Charges `cost` (positive) to a plain account, or returns `None` having written nothing.
pub fn charge(
    account: &str,
    cost: &AnyNumeric,
    reason: Option<&str>,
    metadata: Option<&JsonB>,
) -> Option<Charged> {
    // SAFETY: every relation opened is closed (locks kept to the end of the transaction,
    // as the executor does), the scan and slot are released before any write, and every
    // tuple is formed from copies before the buffer it came from is let go.
    unsafe {
        let tables = Tables::open()?;
        let result = tables.charge(account, cost, reason, metadata);
        tables.close();
        result
    }
}

struct Tables {
    accounts: pg_sys::Relation,
    accounts_pkey: pg_sys::Relation,
    ledger: pg_sys::Relation,
    ledger_pkey: pg_sys::Relation,
    ledger_ids: Oid,
}

/// Where pg_credits' tables are, looked up once per backend (catalog scans cost more
/// than the charge) and checked on every open: a dropped and re-created extension
/// means new OIDs, which the check notices and looks up again.
#[derive(Clone, Copy, PartialEq)]
struct Catalog {
    schema: Oid,
    accounts: Oid,
    accounts_pkey: Oid,
    ledger: Oid,
    ledger_pkey: Oid,
    ledger_key_index: Oid,
    ledger_ids: Oid,
}

thread_local! {
    static CATALOG: Cell<Option<Catalog>> = const { Cell::new(None) };
}

impl Catalog {
    unsafe fn look_up() -> Option<Catalog> {
        let schema = pg_sys::get_namespace_oid(c"credits".as_ptr(), true);
        let find = |name: &CStr| pg_sys::get_relname_relid(name.as_ptr(), schema);
        let ledger = find(c"ledger");
        let catalog = Catalog {
            schema,
            accounts: find(c"accounts"),
            accounts_pkey: find(c"accounts_pkey"),
            ledger,
            ledger_pkey: find(c"ledger_pkey"),
            ledger_key_index: find(c"ledger_idempotency_key"),
            ledger_ids: pg_sys::getIdentitySequence(ledger, 1, true),
        };
        let oids = [
            catalog.schema,
            catalog.accounts,
            catalog.accounts_pkey,
            catalog.ledger,
            catalog.ledger_pkey,
            catalog.ledger_key_index,
            catalog.ledger_ids,
        ];
        (!oids.contains(&pg_sys::InvalidOid)).then_some(catalog)
    }
}

impl Tables {
    unsafe fn open() -> Option<Tables> {
        if let Some(catalog) = CATALOG.get() {
            if let Some(tables) = Tables::open_as(catalog) {
                return Some(tables);
            }
        }
        let catalog = Catalog::look_up()?;
        CATALOG.set(Some(catalog));
        Tables::open_as(catalog)
    }

    /// The tables, if they are where `catalog` says and as pg_credits made them.
    unsafe fn open_as(catalog: Catalog) -> Option<Tables> {
        let lock = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
        let opened = [
            pg_sys::try_table_open(catalog.accounts, lock),
            pg_sys::try_index_open(catalog.accounts_pkey, lock),
            pg_sys::try_table_open(catalog.ledger, lock),
            pg_sys::try_index_open(catalog.ledger_pkey, lock),
        ];
        let names = [c"accounts", c"accounts_pkey", c"ledger", c"ledger_pkey"];
        let in_place = opened.iter().zip(names).all(|(relation, name)| {
            !relation.is_null()
                && (*(**relation).rd_rel).relnamespace == catalog.schema
                && CStr::from_ptr((*(**relation).rd_rel).relname.data.as_ptr()) == name
        });
        let usable = in_place
            && pg_sys::get_rel_relkind(catalog.ledger_ids) == pg_sys::RELKIND_SEQUENCE as c_char
            && as_made(opened[0], &ACCOUNT_COLUMNS, &[catalog.accounts_pkey])
            && as_made(opened[2], &LEDGER_COLUMNS, &[catalog.ledger_pkey, catalog.ledger_key_index])
            && only_our_guard_on_update(opened[0])
            && no_insert_triggers(opened[2]);
        if !usable {
            for (index, relation) in opened.into_iter().enumerate() {
                if !relation.is_null() {
                    close(relation, index % 2 == 1);
                }
            }
            return None;
        }
        Some(Tables {
            accounts: opened[0],
            accounts_pkey: opened[1],
            ledger: opened[2],
            ledger_pkey: opened[3],
            ledger_ids: catalog.ledger_ids,
        })
    }

    unsafe fn close(&self) {
        close(self.accounts_pkey, true);
        close(self.ledger_pkey, true);
        close(self.accounts, false);
        close(self.ledger, false);
    }

    unsafe fn charge(
        &self,
        account: &str,
        cost: &AnyNumeric,
        reason: Option<&str>,
        metadata: Option<&JsonB>,
    ) -> Option<Charged> {
        let account_datum = account.into_datum().expect("text is never NULL");
        let now = Datum::from(pg_sys::GetCurrentTransactionStartTimestamp());
        let snapshot = pg_sys::RegisterSnapshot(pg_sys::GetTransactionSnapshot());
        let read = self.read_account(snapshot, account_datum, cost, now);
        pg_sys::UnregisterSnapshot(snapshot);
        let (mut version, new_row, before, balance, threshold) = read?;

        let mut failure = pg_sys::TM_FailureData::default();
        let mut lock_mode = pg_sys::LockTupleMode::LockTupleNoKeyExclusive;
        let result = pg_sys::heap_update(
            self.accounts,
            &mut version,
            new_row,
            pg_sys::GetCurrentCommandId(true),
            std::ptr::null_mut(),
            true,
            &mut failure,
            &mut lock_mode,
        );
        if result != pg_sys::TM_Result::TM_Ok {
            // Someone else changed the row since our snapshot: nothing was written.
            return None;
        }
        if !pg_sys::HeapTupleHeaderIsHeapOnly((*new_row).t_data) {
            // Not a HOT update: the new version needs its own index entry.
            index_entry(self.accounts_pkey, self.accounts, &mut [account_datum], new_row, true);
        }
        self.append_entry(account_datum, cost, &balance, reason, metadata, now);
        pg_sys::CommandCounterIncrement();
        let crossed = threshold.filter(|t| &before >= t && &balance < t);
        Some(Charged { balance, crossed_threshold: crossed })
    }

    /// The account's visible row, checked, and the row to replace it with:
    /// (its version, the new row, balance before, balance after, threshold).
    #[allow(clippy::type_complexity)]
    unsafe fn read_account(
        &self,
        snapshot: pg_sys::Snapshot,
        account: Datum,
        cost: &AnyNumeric,
        now: Datum,
    ) -> Option<(pg_sys::ItemPointerData, pg_sys::HeapTuple, AnyNumeric, AnyNumeric, Option<AnyNumeric>)> {
        let mut key = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyInit(
            &mut key,
            1,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::RegProcedure::from(pg_sys::F_TEXTEQ),
            account,
        );
        let scan = pg_sys::index_beginscan(self.accounts, self.accounts_pkey, snapshot, 1, 0);
        pg_sys::index_rescan(scan, &mut key, 1, std::ptr::null_mut(), 0);
        let slot = pg_sys::table_slot_create(self.accounts, std::ptr::null_mut());
        let mut found = None;
        if pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot) {
            pg_sys::slot_getsomeattrs_int(slot, ACCOUNT_COLUMNS.len() as i32);
            let values = std::slice::from_raw_parts_mut((*slot).tts_values, ACCOUNT_COLUMNS.len());
            let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, ACCOUNT_COLUMNS.len());
            let plain = i32::from_datum(values[7], nulls[7]) == Some(0);
            let before = AnyNumeric::from_datum(values[1], nulls[1]).expect("balance is NOT NULL");
            let floor = AnyNumeric::from_datum(values[2], nulls[2]).expect("min_balance is NOT NULL");
            let after = before.clone() - cost.clone();
            if plain && after >= floor {
                let threshold = AnyNumeric::from_datum(values[3], nulls[3]);
                let mut new_values = values.to_vec();
                new_values[1] = after.clone().into_datum().expect("a number");
                new_values[6] = now;
                let new_row = pg_sys::heap_form_tuple((*self.accounts).rd_att, new_values.as_mut_ptr(), nulls.as_mut_ptr());
                found = Some(((*slot).tts_tid, new_row, before, after, threshold));
            }
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
        pg_sys::index_endscan(scan);
        found
    }

    unsafe fn append_entry(
        &self,
        account: Datum,
        cost: &AnyNumeric,
        balance_after: &AnyNumeric,
        reason: Option<&str>,
        metadata: Option<&JsonB>,
        now: Datum,
    ) {
        let id: i64 = pgrx::direct_function_call(pg_sys::nextval_oid, &[self.ledger_ids.into_datum()])
            .expect("nextval returns a value");
        let txid = pg_sys::GetTopFullTransactionId().value;
        let mut values = [
            id.into_datum(),
            Some(account),
            (-cost.clone()).into_datum(),
            balance_after.clone().into_datum(),
            "charge".into_datum(),
            reason.into_datum(),
            None,
            metadata.map(|m| JsonB(m.0.clone())).into_datum(),
            Some(now),
            Some(Datum::from(txid)),
        ];
        let mut nulls = values.map(|v| v.is_none());
        let mut datums = values.each_mut().map(|v| v.unwrap_or(Datum::from(0)));
        let entry = pg_sys::heap_form_tuple((*self.ledger).rd_att, datums.as_mut_ptr(), nulls.as_mut_ptr());
        pg_sys::simple_heap_insert(self.ledger, entry);
        // (account, id); the idempotency index is partial and has no entry for a NULL key.
        index_entry(self.ledger_pkey, self.ledger, &mut [datums[1], datums[0]], entry, false);
    }
}

/// Indexes a written row in a unique index whose key columns are `key` (none NULL).
unsafe fn index_entry<const N: usize>(
    index: pg_sys::Relation,
    table: pg_sys::Relation,
    key: &mut [Datum; N],
    row: pg_sys::HeapTuple,
    key_unchanged: bool,
) {
    let mut nulls = [false; N];
    pg_sys::index_insert(
        index,
        key.as_mut_ptr(),
        nulls.as_mut_ptr(),
        &mut (*row).t_self,
        table,
        pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES,
        key_unchanged,
        pg_sys::BuildIndexInfo(index),
    );
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

/// The relation has exactly these columns (none dropped) and exactly these indexes,
/// and no rules or forced row security.
unsafe fn as_made(relation: pg_sys::Relation, columns: &[&CStr], indexes: &[Oid]) -> bool {
    let class = &*(*relation).rd_rel;
    if class.relhasrules || class.relforcerowsecurity {
        return false;
    }
    let desc = &*(*relation).rd_att;
    if desc.natts as usize != columns.len() {
        return false;
    }
    let attributes = desc.attrs.as_slice(columns.len());
    let same_columns = attributes.iter().zip(columns).all(|(attribute, name)| {
        !attribute.attisdropped && CStr::from_ptr(attribute.attname.data.as_ptr()) == *name
    });
    let list = pg_sys::RelationGetIndexList(relation);
    same_columns
        && pg_sys::list_length(list) as usize == indexes.len()
        && indexes.iter().all(|oid| pg_sys::list_member_oid(list, *oid))
}

unsafe fn triggers(relation: pg_sys::Relation) -> Option<&'static pg_sys::TriggerDesc> {
    (*relation).trigdesc.as_ref()
}

/// No trigger an UPDATE of an account fires, except pg_credits' AFTER guard.
unsafe fn only_our_guard_on_update(accounts: pg_sys::Relation) -> bool {
    let Some(desc) = triggers(accounts) else { return true };
    if desc.trig_update_before_row
        || desc.trig_update_instead_row
        || desc.trig_update_before_statement
        || desc.trig_update_after_statement
    {
        return false;
    }
    std::slice::from_raw_parts(desc.triggers, desc.numtriggers as usize).iter().all(|trigger| {
        trigger.tgtype as u32 & pg_sys::TRIGGER_TYPE_UPDATE == 0
            || CStr::from_ptr(trigger.tgname) == c"guard_update"
    })
}

unsafe fn no_insert_triggers(ledger: pg_sys::Relation) -> bool {
    triggers(ledger).is_none_or(|desc| {
        !(desc.trig_insert_before_row
            || desc.trig_insert_after_row
            || desc.trig_insert_instead_row
            || desc.trig_insert_before_statement
            || desc.trig_insert_after_statement)
    })
}
