//! Prepared plans kept for the life of the backend, so the money path never re-parses
//! or re-plans its SQL: each statement is prepared on its first use in a session and
//! reused by every later call. PostgreSQL's plan cache still revalidates them when the
//! tables change underneath.
//!
//! Every statement runs with the search path pinned to `pg_catalog` alone (tables are
//! always written `credits.…`), whatever the caller's search_path: nothing a caller
//! creates can stand in for an operator or a function. The hot functions pin it here,
//! per statement, instead of with `SET search_path` on the function, which PostgreSQL
//! applies through the full GUC machinery on every call (a tenth of a charge's time).
//!
//! Also the marker for the extension's own writes: the guards on `credits.accounts` and
//! `credits.account_slots` fire only for rows no pg_credits function is writing. The
//! marker lives in backend memory, so no SQL (no setting, no column) can fake it.

use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::pg_sys::{BuiltinOid, PgOid};
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};
use std::cell::RefCell;
use std::collections::HashSet;

pub const TEXT: PgOid = PgOid::BuiltIn(BuiltinOid::TEXTOID);
pub const NUMERIC: PgOid = PgOid::BuiltIn(BuiltinOid::NUMERICOID);
pub const JSONB: PgOid = PgOid::BuiltIn(BuiltinOid::JSONBOID);
pub const BOOL: PgOid = PgOid::BuiltIn(BuiltinOid::BOOLOID);
pub const INT4: PgOid = PgOid::BuiltIn(BuiltinOid::INT4OID);
pub const INT8: PgOid = PgOid::BuiltIn(BuiltinOid::INT8OID);
pub const INT8_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::INT8ARRAYOID);
pub const TIMESTAMPTZ: PgOid = PgOid::BuiltIn(BuiltinOid::TIMESTAMPTZOID);
pub const TIMESTAMPTZ_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::TIMESTAMPTZARRAYOID);
pub const INTERVAL: PgOid = PgOid::BuiltIn(BuiltinOid::INTERVALOID);
pub const TEXT_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::TEXTARRAYOID);
pub const NUMERIC_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::NUMERICARRAYOID);
pub const INT4_ARRAY: PgOid = PgOid::BuiltIn(BuiltinOid::INT4ARRAYOID);

/// One SQL statement of the extension, with the types of its parameters.
pub struct Statement {
    pub sql: &'static str,
    pub args: &'static [PgOid],
    /// Always run its generic plan (see [`GenericPlan`]); otherwise PostgreSQL chooses.
    pub generic: bool,
}

thread_local! {
    static PLANS: RefCell<Vec<(*const Statement, &'static OwnedPreparedStatement)>> =
        const { RefCell::new(Vec::new()) };
    static OWN_WRITES: RefCell<HashSet<String>> = RefCell::new(HashSet::new());
}

impl Statement {
    /// The kept plan of this statement, prepared on first use in this backend.
    fn plan(&'static self, client: &SpiClient<'_>) -> SpiResult<&'static OwnedPreparedStatement> {
        let key = self as *const Statement;
        if let Some(plan) = PLANS.with_borrow(|plans| {
            plans.iter().find(|(statement, _)| *statement == key).map(|(_, plan)| *plan)
        }) {
            return Ok(plan);
        }
        // Prepared as "mutating" so SPI takes a fresh snapshot for every execution: a
        // read after a row lock must see what the lock holder committed.
        let plan: &'static OwnedPreparedStatement =
            Box::leak(Box::new(client.prepare_mut(self.sql, self.args)?.keep()));
        PLANS.with_borrow_mut(|plans| plans.push((key, plan)));
        Ok(plan)
    }

    /// Runs the statement; `None` when it returned (or changed) no row.
    pub fn first_row<'conn>(
        &'static self,
        client: &SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> Option<Row<'conn>> {
        let table = self.all_rows(client, args);
        (!table.is_empty()).then(|| Row(table.first()))
    }

    pub fn first_value<T: FromDatum + IntoDatum>(
        &'static self,
        client: &SpiClient<'_>,
        args: &[DatumWithOid<'_>],
    ) -> Option<T> {
        self.first_row(client, args).map(|row| row.column(1))
    }

    /// Runs the statement and returns every row it produced.
    pub fn all_rows<'conn>(
        &'static self,
        client: &SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> SpiTupleTable<'conn> {
        crate::compat::with_pinned_search_path(|| {
            let plan = self.plan(client).expect("the extension's SQL prepares");
            let _generic = self.generic.then(GenericPlan::force);
            client.select(plan, None, args).expect("the extension's SQL runs")
        })
    }
}

/// While alive, the plan cache uses each statement's generic plan. Why: PostgreSQL plans
/// a prepared statement afresh for every execution while it estimates a custom plan
/// cheaper, and for a statement over a few array elements (one per pool a charge draws
/// from) the custom plan, which knows their number, always looks cheaper: re-planning cost
/// a charge of an account with grants four times its execution. Not for every statement:
/// over thousands of elements (charge_many's accounts) the custom plan is the better one.
/// The setting is restored on every exit (an error unwinds through the drop).
struct GenericPlan(std::ffi::c_int);

impl GenericPlan {
    fn force() -> GenericPlan {
        // SAFETY: plan_cache_mode is the backend's GUC variable, read by the plan cache
        // when it chooses a plan; this backend is single-threaded.
        unsafe {
            let saved = pgrx::pg_sys::plan_cache_mode;
            pgrx::pg_sys::plan_cache_mode = pgrx::pg_sys::PlanCacheMode::PLAN_CACHE_MODE_FORCE_GENERIC_PLAN as std::ffi::c_int;
            GenericPlan(saved)
        }
    }
}

impl Drop for GenericPlan {
    fn drop(&mut self) {
        // SAFETY: see force.
        unsafe { pgrx::pg_sys::plan_cache_mode = self.0 };
    }
}

/// While alive, writes to these accounts come from the extension itself; dropped on
/// every exit, unwinding from an SQL error included. Markers nest: each one takes back
/// only the accounts it added.
pub struct OwnWrite(Vec<String>);

impl OwnWrite {
    pub fn begin(account: &str) -> OwnWrite {
        OwnWrite::begin_many([account])
    }

    pub fn begin_many<'a>(accounts: impl IntoIterator<Item = &'a str>) -> OwnWrite {
        OWN_WRITES.with_borrow_mut(|own| {
            OwnWrite(accounts.into_iter().filter(|a| own.insert((*a).to_owned())).map(str::to_owned).collect())
        })
    }
}

impl Drop for OwnWrite {
    fn drop(&mut self) {
        OWN_WRITES.with_borrow_mut(|own| {
            for account in &self.0 {
                own.remove(account);
            }
        });
    }
}

/// Whether a change to this account's rows comes from outside pg_credits' functions:
/// the WHEN clause of every guard trigger.
#[pg_extern(volatile, parallel_restricted)]
pub fn is_direct_write(account: &str) -> bool {
    !OWN_WRITES.with_borrow(|own| own.contains(account))
}

/// The first row a statement returned.
pub struct Row<'conn>(SpiTupleTable<'conn>);

impl Row<'_> {
    /// A column that cannot be NULL (ordinals start at 1).
    pub fn column<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> T {
        self.nullable_column(ordinal).expect("column is NOT NULL")
    }

    pub fn nullable_column<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Option<T> {
        self.0.get(ordinal).expect("the statement returns this column")
    }
}
