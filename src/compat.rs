//! What differs between PostgreSQL 15, 16, 17 and 18 for pg_credits, in one place: each
//! function here hides one change of a server API, so the rest of the code reads the same
//! on every version. The version is the Cargo feature the extension is built with
//! (`pg15`, the default, `pg16`, `pg17` or `pg18`).

use pgrx::pg_sys::{self, Oid};

/// `heap_update`, and whether the new version needs entries in the table's indexes (it is
/// not a HOT update). 16 returns that through an out-parameter; 15 leaves it to be read
/// off the new tuple's header.
#[allow(clippy::too_many_arguments)]
pub unsafe fn heap_update(
    relation: pg_sys::Relation,
    version: &mut pg_sys::ItemPointerData,
    new_row: pg_sys::HeapTuple,
    command: pg_sys::CommandId,
    wait: bool,
    failure: &mut pg_sys::TM_FailureData,
    lock_mode: &mut pg_sys::LockTupleMode::Type,
) -> (pg_sys::TM_Result::Type, bool) {
    #[cfg(feature = "pg15")]
    {
        let result =
            pg_sys::heap_update(relation, version, new_row, command, std::ptr::null_mut(), wait, failure, lock_mode);
        (result, !pg_sys::HeapTupleHeaderIsHeapOnly((*new_row).t_data))
    }
    #[cfg(not(feature = "pg15"))]
    {
        let mut indexes = pg_sys::TU_UpdateIndexes::TU_None;
        let result = pg_sys::heap_update(
            relation,
            version,
            new_row,
            command,
            std::ptr::null_mut(),
            wait,
            failure,
            lock_mode,
            &mut indexes,
        );
        // TU_Summarizing asks only for summarizing (BRIN) indexes, which pg_credits'
        // tables do not have as made (anything added sends the direct path to SQL).
        (result, indexes == pg_sys::TU_UpdateIndexes::TU_All)
    }
}

/// `index_beginscan` without instrumentation (18 added the argument).
pub unsafe fn index_beginscan(
    heap: pg_sys::Relation,
    index: pg_sys::Relation,
    snapshot: pg_sys::Snapshot,
    keys: i32,
) -> pg_sys::IndexScanDesc {
    #[cfg(not(feature = "pg18"))]
    {
        pg_sys::index_beginscan(heap, index, snapshot, keys, 0)
    }
    #[cfg(feature = "pg18")]
    {
        pg_sys::index_beginscan(heap, index, snapshot, std::ptr::null_mut(), keys, 0)
    }
}

/// Inserts an index entry as the executor does, `info` built for this one insert: from
/// PostgreSQL 17 an access method may keep state in it across inserts (BRIN keeps its
/// range map pinned), which `index_insert_cleanup` releases, as the executor does when it
/// closes the index.
#[allow(clippy::too_many_arguments)]
pub unsafe fn index_insert_once(
    index: pg_sys::Relation,
    values: *mut pg_sys::Datum,
    nulls: *mut bool,
    tid: pg_sys::ItemPointer,
    heap: pg_sys::Relation,
    unique: pg_sys::IndexUniqueCheck::Type,
    unchanged: bool,
) {
    let info = pg_sys::BuildIndexInfo(index);
    pg_sys::index_insert(index, values, nulls, tid, heap, unique, unchanged, info);
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    pg_sys::index_insert_cleanup(index, info);
}

/// The sequence behind identity column `column` of `table` (17 takes the opened relation).
pub unsafe fn identity_sequence(table: Oid, column: i16) -> Oid {
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    {
        pg_sys::getIdentitySequence(table, column, true)
    }
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    {
        let relation = pg_sys::try_table_open(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        if relation.is_null() {
            return pg_sys::InvalidOid;
        }
        let sequence = pg_sys::getIdentitySequence(relation, column, true);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        sequence
    }
}

/// This backend's local transaction id (17 moved it into `PGPROC.vxid`).
pub fn local_transaction_id() -> u32 {
    // SAFETY: MyProc is set for every backend before it runs queries.
    unsafe {
        #[cfg(any(feature = "pg15", feature = "pg16"))]
        {
            (*pg_sys::MyProc).lxid
        }
        #[cfg(not(any(feature = "pg15", feature = "pg16")))]
        {
            (*pg_sys::MyProc).vxid.lxid
        }
    }
}

/// Column `index` (0-based) of a tuple descriptor (18 keeps them behind `TupleDescAttr`).
pub unsafe fn attribute(desc: pg_sys::TupleDesc, index: usize) -> &'static pg_sys::FormData_pg_attribute {
    #[cfg(not(feature = "pg18"))]
    {
        &(*desc).attrs.as_slice(index + 1)[index]
    }
    #[cfg(feature = "pg18")]
    {
        &*pg_sys::TupleDescAttr(desc, index as i32)
    }
}

/// Runs `f` with `pg_catalog` as the only schema searched. When `f` fails with an SQL
/// error nothing is undone here: PostgreSQL unwinds the override (15, 16) or the GUC
/// nesting level (17, 18) when the (sub)transaction aborts.
pub fn with_pinned_search_path<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(any(feature = "pg15", feature = "pg16"))]
    {
        let mut path = pg_sys::OverrideSearchPath {
            schemas: std::ptr::null_mut(),
            addCatalog: true,
            addTemp: false,
            generation: 0,
        };
        // SAFETY: PushOverrideSearchPath copies what it needs into TopMemoryContext.
        unsafe { pg_sys::PushOverrideSearchPath(&mut path) };
        let result = f();
        unsafe { pg_sys::PopOverrideSearchPath() };
        result
    }
    #[cfg(not(any(feature = "pg15", feature = "pg16")))]
    {
        // 17 removed override search paths; what PostgreSQL itself now does for a
        // restricted search_path is a GUC nesting level with the setting saved in it.
        // SAFETY: the level is closed on success below, by the abort otherwise.
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            let result = f();
            pg_sys::AtEOXact_GUC(true, level);
            result
        }
    }
}
