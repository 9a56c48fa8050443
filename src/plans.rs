//! Prepared plans kept for the life of the backend, so the money path never re-parses
//! or re-plans its SQL: each statement is prepared on its first use in a session and
//! reused by every later call. PostgreSQL's plan cache still revalidates them when the
//! tables change underneath.
//!
//! Also the marker for the extension's own writes: the guard trigger on
//! `credits.accounts` records every balance change it did not expect as an adjustment,
//! and it expects exactly the row the running function is writing. The marker lives in
//! backend memory, so no SQL (no setting, no column) can fake it.

use pgrx::pg_sys::{BuiltinOid, PgOid};
use pgrx::datum::{DatumWithOid, FromDatum, IntoDatum};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiResult, SpiTupleTable};
use std::cell::RefCell;

pub const TEXT: PgOid = PgOid::BuiltIn(BuiltinOid::TEXTOID);
pub const NUMERIC: PgOid = PgOid::BuiltIn(BuiltinOid::NUMERICOID);
pub const JSONB: PgOid = PgOid::BuiltIn(BuiltinOid::JSONBOID);

/// One SQL statement of the extension, with the types of its parameters.
pub struct Statement {
    pub sql: &'static str,
    pub args: &'static [PgOid],
}

thread_local! {
    static PLANS: RefCell<Vec<(*const Statement, &'static OwnedPreparedStatement)>> =
        const { RefCell::new(Vec::new()) };
    static OWN_WRITE: RefCell<Option<String>> = const { RefCell::new(None) };
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
}

/// While alive, writes to `account` come from the extension itself; dropped on every
/// exit, unwinding from an SQL error included.
pub struct OwnWrite(());

impl OwnWrite {
    pub fn begin(account: &str) -> OwnWrite {
        OWN_WRITE.with_borrow_mut(|own| *own = Some(account.to_owned()));
        OwnWrite(())
    }
}

impl Drop for OwnWrite {
    fn drop(&mut self) {
        OWN_WRITE.with_borrow_mut(|own| *own = None);
    }
}

pub fn is_own_write(account: &str) -> bool {
    OWN_WRITE.with_borrow(|own| own.as_deref() == Some(account))
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

impl Statement {
    /// Runs the statement; `None` when it returned (or changed) no row.
    pub fn first_row<'conn>(
        &'static self,
        client: &SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> Option<Row<'conn>> {
        let plan = self.plan(client).expect("the extension's SQL prepares");
        let table = client.select(plan, None, args).expect("the extension's SQL runs");
        (!table.is_empty()).then(|| Row(table.first()))
    }

    pub fn first_value<T: FromDatum + IntoDatum>(
        &'static self,
        client: &SpiClient<'_>,
        args: &[DatumWithOid<'_>],
    ) -> Option<T> {
        self.first_row(client, args).map(|row| row.column(1))
    }
}
