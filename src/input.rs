//! Argument checks shared by every function: a bad argument is refused with a class-22
//! SQLSTATE before anything is read or written, never turned into NULL or zero.
//!
//! The limits keep every amount inside numeric(38,18), so balances stay exact and any
//! client language can hold them in a decimal type; text limits keep one account's rows
//! small enough that an oversized value cannot be used to bloat the ledger.
//!
//! Every amount pg_credits stores or returns is in one canonical form (`money::canonical`),
//! and its scale never exceeds the 18 places the limits allow.

use crate::decide::Time;
use crate::money::canonical;
use crate::error::{BadInput, CreditsError, Result};
use pgrx::datetime::TimestampWithTimeZone;
use pgrx::{AnyNumeric, JsonB};

/// The time decisions are made at: `clock_timestamp()`, not the transaction's start, so
/// that what expires stops counting at once, whenever the transaction began.
pub fn now() -> Time {
    // SAFETY: reads the clock.
    unsafe { pgrx::pg_sys::GetCurrentTimestamp() }
}

pub fn timestamp(time: Time) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(time).expect("a timestamp PostgreSQL produced")
}

pub fn time(value: TimestampWithTimeZone) -> Time {
    value.into()
}

pub const MAX_ACCOUNT_CHARS: usize = 256;
pub const MAX_KEY_CHARS: usize = 256;
pub const MAX_REASON_CHARS: usize = 1024;
pub const MAX_METADATA_BYTES: usize = 8192;
pub const MAX_INTEGER_DIGITS: usize = 20;
pub const MAX_FRACTION_DIGITS: usize = 18;

pub fn account(value: Option<&str>) -> Result<&str> {
    account_in("account", value)
}

/// An account id passed as argument `field` (`from_account`, `to_account`).
pub fn account_in<'a>(field: &'static str, value: Option<&'a str>) -> Result<&'a str> {
    let account = required(field, value)?;
    if account.is_empty() {
        return Err(CreditsError::bad_input(BadInput::Invalid, field, "must not be empty"));
    }
    if account.chars().count() > MAX_ACCOUNT_CHARS {
        return Err(too_long(field, MAX_ACCOUNT_CHARS));
    }
    if account.chars().any(char::is_control) {
        return Err(CreditsError::bad_input(BadInput::Invalid, field, "must not contain control characters"));
    }
    Ok(account)
}

/// A cost or an amount that passed [`amount`]; whether it is zero comes from the same
/// text the digit check read, so the money path asks PostgreSQL nothing more about it.
#[derive(Clone)]
pub struct Amount {
    pub value: AnyNumeric,
    zero: bool,
}

impl Amount {
    pub fn is_zero(&self) -> bool {
        self.zero
    }
}

/// A cost or an amount: finite, not negative, within numeric(38,18); canonical.
pub fn amount(field: &'static str, value: Option<AnyNumeric>) -> Result<Amount> {
    let value = canonical(required(field, value)?);
    let text = value.to_string();
    check_decimal(field, &text)?;
    if text.starts_with('-') {
        return Err(CreditsError::bad_input(BadInput::Invalid, field, "must not be negative"));
    }
    let zero = text.bytes().all(|b| b == b'0' || b == b'.');
    Ok(Amount { value, zero })
}

/// A balance, a floor or a threshold: finite and within numeric(38,18), any sign; canonical.
pub fn signed_amount(field: &'static str, value: Option<AnyNumeric>) -> Result<AnyNumeric> {
    let amount = canonical(required(field, value)?);
    check_decimal(field, &amount.to_string())?;
    Ok(amount)
}

pub fn optional_signed_amount(
    field: &'static str,
    value: Option<AnyNumeric>,
) -> Result<Option<AnyNumeric>> {
    value.map(|amount| signed_amount(field, Some(amount))).transpose()
}

/// Whether a balance stays within the 20 integer digits every amount is limited to.
pub fn fits(balance: &AnyNumeric) -> bool {
    let limit: AnyNumeric = format!("1e{MAX_INTEGER_DIGITS}").parse().expect("a decimal literal");
    balance.abs() < limit
}

fn check_decimal(field: &'static str, text: &str) -> Result<()> {
    match text {
        "NaN" => {
            return Err(CreditsError::bad_input(BadInput::Invalid, field, "must be a number, not NaN"))
        }
        "Infinity" | "-Infinity" => {
            return Err(CreditsError::bad_input(BadInput::OutOfRange, field, "must be finite"))
        }
        _ => {}
    }
    let digits = text.trim_start_matches('-');
    let (integer, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let integer_digits = integer.trim_start_matches('0').len();
    let fraction_digits = fraction.trim_end_matches('0').len();
    if integer_digits > MAX_INTEGER_DIGITS || fraction_digits > MAX_FRACTION_DIGITS {
        return Err(CreditsError::bad_input(
            BadInput::OutOfRange,
            field,
            format!(
                "must have at most {MAX_INTEGER_DIGITS} digits before the decimal point and \
                 {MAX_FRACTION_DIGITS} after it"
            ),
        ));
    }
    Ok(())
}

pub fn reason(value: Option<&str>) -> Result<Option<&str>> {
    optional_text("reason", value, MAX_REASON_CHARS)
}

pub fn idempotency_key(value: Option<&str>) -> Result<Option<&str>> {
    let key = optional_text("idempotency_key", value, MAX_KEY_CHARS)?;
    if key == Some("") {
        return Err(CreditsError::bad_input(
            BadInput::Invalid,
            "idempotency_key",
            "must not be empty (pass NULL for no key)",
        ));
    }
    Ok(key)
}

pub fn metadata(value: Option<JsonB>) -> Result<Option<JsonB>> {
    let Some(metadata) = value else { return Ok(None) };
    if !metadata.0.is_object() {
        return Err(CreditsError::bad_input(BadInput::Invalid, "metadata", "must be a JSON object"));
    }
    if metadata.0.to_string().len() > MAX_METADATA_BYTES {
        return Err(CreditsError::bad_input(
            BadInput::TooLong,
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes of JSON"),
        ));
    }
    Ok(Some(metadata))
}

fn optional_text<'a>(field: &'static str, value: Option<&'a str>, max: usize) -> Result<Option<&'a str>> {
    match value {
        Some(text) if text.chars().count() > max => Err(too_long(field, max)),
        _ => Ok(value),
    }
}

pub fn required<T>(field: &'static str, value: Option<T>) -> Result<T> {
    value.ok_or_else(|| CreditsError::bad_input(BadInput::Null, field, "must not be NULL"))
}

fn too_long(field: &'static str, max: usize) -> CreditsError {
    CreditsError::bad_input(BadInput::TooLong, field, format!("must be at most {max} characters"))
}
