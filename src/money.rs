//! Money as PostgreSQL's `numeric`: the decision core's arithmetic over it, and the one
//! canonical form every amount pg_credits stores or returns is in: the same value always
//! reads the same (`97`, never `97.0` or `97.000000000000000000`).

use crate::decide::Money;
use pgrx::{AnyNumeric, IntoDatum};

impl Money for AnyNumeric {
    fn zero() -> Self {
        AnyNumeric::from(0)
    }
}

/// The canonical form of an amount: without trailing zeros after the point (what SQL's
/// `pg_catalog.trim_scale` gives, which the SQL statements use for the same purpose).
/// NaN and the infinities come back as they are, for the checks to refuse.
pub fn canonical(value: AnyNumeric) -> AnyNumeric {
    // SAFETY: numeric_trim_scale takes one numeric and returns a new one.
    unsafe { pgrx::direct_function_call(pgrx::pg_sys::numeric_trim_scale, &[value.into_datum()]) }
        .expect("trim_scale of a numeric is a numeric")
}
