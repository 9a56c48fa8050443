//! The error contract: every SQLSTATE pg_credits raises, with the message, the JSON
//! DETAIL and the HINT that go with it, built here and nowhere else.
//!
//! Why the errors are raised by hand: pgrx re-raises every error through a closed
//! enum of SQLSTATEs (an unknown one becomes XX000) and appends a Rust backtrace to
//! DETAIL when `RUST_BACKTRACE` is set. Neither is acceptable for a contract whose
//! whole point is "SQLSTATE PT402 and a DETAIL that parses as JSON". So
//! [`CreditsError::raise`] calls PostgreSQL's `errstart` … `errfinish` itself.
//! `errfinish` longjmps: it must only be reached from the top-level SQL-callable
//! function, with every Rust value that owns memory already dropped, and never from
//! inside `Spi::connect` (pgrx would catch it there and re-raise it as XX000).

use crate::decide::Figures;
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::{AnyNumeric, PostgresGucEnum};
use serde_json::{json, Value};
use std::ffi::{c_char, c_int, CString};

pub const INSUFFICIENT_BALANCE_MESSAGE: &str =
    "Account balance not enough to run this query, please recharge.";

/// How errors reach the client: `standard` raises each error's own SQLSTATE with the
/// JSON payload in DETAIL; `postgrest` raises SQLSTATE PGRST, PostgREST's documented form
/// for a response chosen by the database (the message is the JSON body, the detail the
/// HTTP status and headers).
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorStyle {
    #[name = c"standard"]
    Standard,
    #[name = c"postgrest"]
    Postgrest,
}

pub static ERROR_STYLE: GucSetting<ErrorStyle> = GucSetting::<ErrorStyle>::new(ErrorStyle::Standard);

/// The longest a hold may last, in seconds (`SET credits.max_hold_ttl = '2d'`).
pub static MAX_HOLD_TTL: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);

/// Where a person recharges an account, `{account}` standing for its id (URL-encoded):
/// the next step an insufficient-balance error names.
static RECHARGE_URL: GucSetting<Option<std::ffi::CString>> = GucSetting::<Option<std::ffi::CString>>::new(None);

pub fn register_settings() {
    GucRegistry::define_int_guc(
        c"credits.max_hold_ttl",
        c"The longest ttl credits.hold accepts (default 7 days).",
        c"A hold with a longer ttl, or with none (ttl => NULL) while this is not 0, is refused; 0 allows any.",
        &MAX_HOLD_TTL,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_string_guc(
        c"credits.recharge_url",
        c"Where an account is recharged, {account} standing for its id: named by every insufficient-balance error.",
        c"For example https://example.com/billing?account={account}; unset, the errors name no URL.",
        &RECHARGE_URL,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"credits.error_style",
        c"How pg_credits raises errors: standard (SQLSTATE PT402 …) or postgrest (SQLSTATE PGRST).",
        c"postgrest makes PostgREST answer with the HTTP status, headers and JSON body pg_credits chooses.",
        &ERROR_STYLE,
        GucContext::Userset,
        GucFlags::default(),
    );
    // Until the library loads, `credits.error_style` is a placeholder that takes any
    // text; from here on the enum checks every SET, and a misspelt `credits.…` name is an
    // error rather than a new placeholder.
    // SAFETY: called from _PG_init, after the settings of the prefix are defined.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"credits".as_ptr()) };
}

/// Which rule a bad argument broke; each maps to one standard SQLSTATE of class 22.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadInput {
    /// 22004 null_value_not_allowed
    Null,
    /// 22023 invalid_parameter_value
    Invalid,
    /// 22003 numeric_value_out_of_range
    OutOfRange,
    /// 22001 string_data_right_truncation
    TooLong,
}

#[derive(Debug)]
pub enum CreditsError {
    /// `balance` is the money in effect and `held` what active holds reserve of it.
    InsufficientBalance {
        account: String,
        balance: AnyNumeric,
        held: AnyNumeric,
        min_balance: AnyNumeric,
        cost: AnyNumeric,
    },
    HoldNotFound {
        hold_id: i64,
    },
    GrantNotFound {
        grant_id: i64,
    },
    /// A second capture or release of a hold that was captured in full or released.
    HoldFinalized {
        hold_id: i64,
        status: &'static str,
    },
    HoldExpired {
        hold_id: i64,
    },
    CaptureExceedsHold {
        hold_id: i64,
        remaining: AnyNumeric,
        amount: AnyNumeric,
    },
    /// No ledger entry has this id.
    EntryNotFound {
        entry_id: i64,
    },
    /// A refund of more than the entry still has to give back.
    RefundExceedsCharge {
        entry_id: i64,
        refundable: AnyNumeric,
        amount: AnyNumeric,
    },
    AccountNotFound {
        account: String,
    },
    AccountExists {
        account: String,
    },
    IdempotencyConflict {
        account: String,
        idempotency_key: String,
        original_kind: String,
        original_amount: AnyNumeric,
        kind: &'static str,
        amount: AnyNumeric,
    },
    ForbiddenWrite {
        message: &'static str,
    },
    /// A call pg_credits refuses for what the account is (hot, or with grants), not a
    /// write to its tables: the same SQLSTATE and name, its own explanation and way out.
    Refused {
        message: &'static str,
        hint: &'static str,
    },
    /// Under REPEATABLE READ or SERIALIZABLE: the key was used by a transaction that
    /// committed after this one's snapshot, which therefore can neither replay nor reuse it.
    ConcurrentKeyUse {
        account: String,
        idempotency_key: String,
    },
    BadInput {
        rule: BadInput,
        field: &'static str,
        problem: String,
    },
}

pub type Result<T> = std::result::Result<T, CreditsError>;

impl CreditsError {
    pub fn bad_input(rule: BadInput, field: &'static str, problem: impl Into<String>) -> Self {
        CreditsError::BadInput { rule, field, problem: problem.into() }
    }

    /// The same error, said of one item of a batch (1-based).
    pub fn at_item(self, item: usize) -> Self {
        match self {
            CreditsError::BadInput { rule, field, problem } => {
                CreditsError::BadInput { rule, field, problem: format!("(item {item}) {problem}") }
            }
            other => other,
        }
    }

    /// PT402 for a spend the figures cannot cover.
    pub fn insufficient(account: &str, figures: &Figures<AnyNumeric>, cost: &AnyNumeric) -> Self {
        CreditsError::InsufficientBalance {
            account: account.to_owned(),
            balance: figures.balance.clone(),
            held: figures.held.clone(),
            min_balance: figures.min_balance.clone(),
            cost: cost.clone(),
        }
    }

    pub fn sqlstate(&self) -> &'static str {
        match self {
            CreditsError::InsufficientBalance { .. } => "PT402",
            CreditsError::AccountNotFound { .. }
            | CreditsError::HoldNotFound { .. }
            | CreditsError::GrantNotFound { .. }
            | CreditsError::EntryNotFound { .. } => "PT404",
            CreditsError::AccountExists { .. }
            | CreditsError::IdempotencyConflict { .. }
            | CreditsError::HoldFinalized { .. } => "PT409",
            CreditsError::HoldExpired { .. } => "PT410",
            CreditsError::CaptureExceedsHold { .. } | CreditsError::RefundExceedsCharge { .. } => "PT422",
            CreditsError::ForbiddenWrite { .. } | CreditsError::Refused { .. } => "PT403",
            CreditsError::ConcurrentKeyUse { .. } => "40001",
            CreditsError::BadInput { rule, .. } => match rule {
                BadInput::Null => "22004",
                BadInput::Invalid => "22023",
                BadInput::OutOfRange => "22003",
                BadInput::TooLong => "22001",
            },
        }
    }

    /// The payload's `name`, `code` (HTTP status) and `status_code` (ours, finer-grained).
    fn identity(&self) -> (&'static str, u16, u32) {
        match self {
            CreditsError::InsufficientBalance { .. } => ("InsufficientBalanceError", 402, 40203),
            CreditsError::AccountNotFound { .. } => ("AccountNotFoundError", 404, 40401),
            CreditsError::HoldNotFound { .. } => ("HoldNotFoundError", 404, 40402),
            CreditsError::GrantNotFound { .. } => ("GrantNotFoundError", 404, 40403),
            CreditsError::HoldFinalized { .. } => ("HoldFinalizedError", 409, 40904),
            CreditsError::HoldExpired { .. } => ("HoldExpiredError", 410, 41001),
            CreditsError::CaptureExceedsHold { .. } => ("CaptureExceedsHoldError", 422, 42201),
            CreditsError::EntryNotFound { .. } => ("EntryNotFoundError", 404, 40404),
            CreditsError::RefundExceedsCharge { .. } => ("RefundExceedsChargeError", 422, 42202),
            CreditsError::AccountExists { .. } => ("AccountExistsError", 409, 40901),
            CreditsError::IdempotencyConflict { .. } => ("IdempotencyConflictError", 409, 40902),
            CreditsError::ForbiddenWrite { .. } | CreditsError::Refused { .. } => ("ForbiddenWriteError", 403, 40301),
            CreditsError::ConcurrentKeyUse { .. } => ("ConcurrentKeyUseError", 409, 40903),
            CreditsError::BadInput { .. } => ("InvalidInputError", 400, 40000),
        }
    }

    pub fn message(&self) -> String {
        match self {
            CreditsError::InsufficientBalance { .. } => INSUFFICIENT_BALANCE_MESSAGE.to_string(),
            CreditsError::AccountNotFound { .. } => "Account not found.".to_string(),
            CreditsError::HoldNotFound { .. } => "Hold not found.".to_string(),
            CreditsError::GrantNotFound { .. } => "Grant not found.".to_string(),
            CreditsError::HoldFinalized { .. } => "Hold already captured or released.".to_string(),
            CreditsError::HoldExpired { .. } => "Hold expired.".to_string(),
            CreditsError::CaptureExceedsHold { .. } => "Capture exceeds what the hold reserves.".to_string(),
            CreditsError::EntryNotFound { .. } => "Ledger entry not found.".to_string(),
            CreditsError::RefundExceedsCharge { .. } => "Refund exceeds what the entry charged.".to_string(),
            CreditsError::AccountExists { .. } => "Account already exists.".to_string(),
            CreditsError::IdempotencyConflict { .. } => {
                "Idempotency key already used for a different operation.".to_string()
            }
            CreditsError::ForbiddenWrite { message } | CreditsError::Refused { message, .. } => message.to_string(),
            CreditsError::ConcurrentKeyUse { .. } => {
                "Could not serialize access due to a concurrent use of the idempotency key.".to_string()
            }
            CreditsError::BadInput { field, problem, .. } => format!("{field} {problem}"),
        }
    }

    /// The JSON payload carried in DETAIL: the common envelope plus the error's own fields.
    pub fn detail(&self) -> Value {
        let (name, code, status_code) = self.identity();
        let message = self.message();
        let mut payload = json!({
            "code": code,
            "name": name,
            "status_code": status_code,
            "message": message,
            "readable_message": self.readable_message(),
        });
        let fields = match self {
            CreditsError::InsufficientBalance { account, balance, held, min_balance, cost } => {
                let mut fields = json!({
                    "account": account,
                    "balance": balance.to_string(),
                    "held": held.to_string(),
                    "available": available(balance, held, min_balance).to_string(),
                    "min_balance": min_balance.to_string(),
                    "cost": cost.to_string(),
                    "shortfall": shortfall(balance, held, min_balance, cost).to_string(),
                });
                if let Some(url) = recharge_url(account) {
                    fields["recharge_url"] = Value::String(url);
                }
                fields
            }
            CreditsError::HoldNotFound { hold_id } | CreditsError::HoldExpired { hold_id } => {
                json!({ "hold_id": hold_id })
            }
            CreditsError::GrantNotFound { grant_id } => json!({ "grant_id": grant_id }),
            CreditsError::HoldFinalized { hold_id, status } => json!({ "hold_id": hold_id, "status": status }),
            CreditsError::CaptureExceedsHold { hold_id, remaining, amount } => json!({
                "hold_id": hold_id,
                "remaining": remaining.to_string(),
                "amount": amount.to_string(),
            }),
            CreditsError::EntryNotFound { entry_id } => json!({ "entry_id": entry_id }),
            CreditsError::RefundExceedsCharge { entry_id, refundable, amount } => json!({
                "entry_id": entry_id,
                "refundable": refundable.to_string(),
                "amount": amount.to_string(),
            }),
            CreditsError::AccountNotFound { account } | CreditsError::AccountExists { account } => {
                json!({ "account": account })
            }
            CreditsError::ConcurrentKeyUse { account, idempotency_key } => {
                json!({ "account": account, "idempotency_key": idempotency_key })
            }
            CreditsError::IdempotencyConflict {
                account,
                idempotency_key,
                original_kind,
                original_amount,
                kind,
                amount,
            } => json!({
                "account": account,
                "idempotency_key": idempotency_key,
                "original": { "kind": original_kind, "amount": original_amount.to_string() },
                "attempted": { "kind": kind, "amount": amount.to_string() },
            }),
            CreditsError::ForbiddenWrite { .. } | CreditsError::Refused { .. } => json!({}),
            CreditsError::BadInput { field, .. } => json!({ "field": field }),
        };
        if let (Value::Object(envelope), Value::Object(extra)) = (&mut payload, fields) {
            envelope.extend(extra);
        }
        payload
    }

    fn readable_message(&self) -> String {
        match self {
            CreditsError::InsufficientBalance { account, balance, held, min_balance, cost } => {
                let missing = shortfall(balance, held, min_balance, cost);
                let floor = if min_balance.sign() == pgrx::datum::numeric::Sign::Zero {
                    String::new()
                } else {
                    format!(" (it may go down to {min_balance})")
                };
                let holds = if held.sign() == pgrx::datum::numeric::Sign::Zero {
                    String::new()
                } else {
                    format!(", {held} of it reserved by holds,")
                };
                let at = recharge_url(account).map(|url| format!(" at {url}")).unwrap_or_default();
                format!(
                    "Account '{account}' has a balance of {balance}{holds}{floor} and this query costs \
                     {cost}: {missing} more credits are needed. Recharge the account with at least \
                     {missing} credits{at}, then retry the query."
                )
            }
            CreditsError::HoldNotFound { hold_id } => format!("There is no hold {hold_id}."),
            CreditsError::GrantNotFound { grant_id } => format!("There is no grant {grant_id}."),
            CreditsError::HoldFinalized { hold_id, status } => format!(
                "Hold {hold_id} is {status}: a hold is captured or released at most once."
            ),
            CreditsError::HoldExpired { hold_id } => format!(
                "Hold {hold_id} expired: what it reserved is available again. Place a new hold or charge directly."
            ),
            CreditsError::CaptureExceedsHold { hold_id, remaining, amount } => format!(
                "Hold {hold_id} still reserves {remaining}, less than the {amount} to capture. Capture at most \
                 {remaining}, or pass overage => 'charge' to charge the excess."
            ),
            CreditsError::EntryNotFound { entry_id } => format!("There is no ledger entry {entry_id}."),
            CreditsError::RefundExceedsCharge { entry_id, refundable, amount } => format!(
                "Entry {entry_id} has {refundable} left to refund, less than the {amount} asked. Refund at most \
                 {refundable} (amount => NULL refunds all of it)."
            ),
            CreditsError::AccountNotFound { account } => format!(
                "There is no account '{account}'. Create it with credits.create_account or \
                 credits.recharge before charging it."
            ),
            CreditsError::AccountExists { account } => format!(
                "An account '{account}' already exists; use credits.recharge to add credits to it."
            ),
            CreditsError::IdempotencyConflict {
                account,
                idempotency_key,
                original_kind,
                original_amount,
                kind,
                amount,
            } => format!(
                "The idempotency key '{idempotency_key}' of account '{account}' was first used for \
                 a {original_kind} of {original_amount}; it cannot be reused for a {kind} of \
                 {amount}. Use a new key for a new operation."
            ),
            CreditsError::ForbiddenWrite { message } => format!(
                "{message} The credits ledger is append-only so that every balance can be \
                 explained by its entries."
            ),
            CreditsError::Refused { message, .. } => message.to_string(),
            CreditsError::ConcurrentKeyUse { account, idempotency_key } => format!(
                "The idempotency key '{idempotency_key}' of account '{account}' was used by a \
                 transaction that committed after this one's snapshot was taken. Retry the \
                 transaction: it will replay that use."
            ),
            CreditsError::BadInput { field, problem, .. } => {
                format!("The argument '{field}' {problem}; nothing was changed.")
            }
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            CreditsError::InsufficientBalance { account, .. } => Some(format!(
                "Recharge the account, e.g. SELECT credits.recharge('{}', <amount>); then retry.",
                account.replace('\'', "''")
            )),
            CreditsError::AccountNotFound { .. } => {
                Some("Create the account with credits.create_account(account, initial).".into())
            }
            CreditsError::IdempotencyConflict { .. } => {
                Some("Each distinct operation needs its own idempotency key.".into())
            }
            CreditsError::ForbiddenWrite { .. } => Some(
                "Correct a balance with an UPDATE of credits.accounts.balance (recorded as an \
                 adjustment) or with credits.recharge."
                    .into(),
            ),
            CreditsError::Refused { hint, .. } => Some(hint.to_string()),
            CreditsError::ConcurrentKeyUse { .. } => Some("Retry the transaction.".into()),
            CreditsError::HoldExpired { .. } => Some("Place a new hold with credits.hold.".into()),
            CreditsError::AccountExists { .. }
            | CreditsError::BadInput { .. }
            | CreditsError::HoldNotFound { .. }
            | CreditsError::GrantNotFound { .. }
            | CreditsError::HoldFinalized { .. }
            | CreditsError::CaptureExceedsHold { .. }
            | CreditsError::EntryNotFound { .. }
            | CreditsError::RefundExceedsCharge { .. } => None,
        }
    }

    /// Headers a client can act on, for the PostgREST style.
    fn headers(&self) -> Value {
        match self {
            CreditsError::InsufficientBalance { balance, cost, .. } => json!({
                "X-Credits-Balance": balance.to_string(),
                "X-Credits-Required": cost.to_string(),
            }),
            _ => json!({}),
        }
    }

    /// SQLSTATE, MESSAGE and DETAIL in the style the session asked for.
    fn report(&self) -> (&'static str, String, String) {
        match ERROR_STYLE.get() {
            ErrorStyle::Standard => (self.sqlstate(), self.message(), self.detail().to_string()),
            ErrorStyle::Postgrest => {
                let (_, status, _) = self.identity();
                let body = json!({
                    "code": self.sqlstate(),
                    "message": self.message(),
                    "details": self.detail().to_string(),
                    "hint": self.hint(),
                });
                let response = json!({ "status": status, "headers": self.headers() });
                ("PGRST", body.to_string(), response.to_string())
            }
        }
    }

    /// Raises this error in PostgreSQL and does not return.
    ///
    /// Call it only as the last act of a top-level SQL-callable function (see the module
    /// docs): it drops every Rust-owned value it built before `errfinish` longjmps.
    pub fn raise(self) -> ! {
        let (sqlstate, message, detail) = self.report();
        let sqlstate = make_sqlstate(sqlstate);
        let message = c_string(message);
        let detail = c_string(detail);
        let hint = self.hint().map(c_string);
        drop(self);
        // SAFETY: errstart/errcode/errmsg/errdetail/errhint copy their arguments into
        // ErrorContext, so the CStrings may be freed before errfinish, which never returns
        // for ERROR and leaves no Rust destructor pending in this frame.
        unsafe {
            if errstart(pgrx::pg_sys::PGERROR as c_int, std::ptr::null()) {
                errcode(sqlstate);
                errmsg(c"%s".as_ptr(), message.as_ptr());
                errdetail(c"%s".as_ptr(), detail.as_ptr());
                if let Some(hint) = &hint {
                    errhint(c"%s".as_ptr(), hint.as_ptr());
                }
                drop(message);
                drop(detail);
                drop(hint);
                // A constant location keeps verbose error output stable across edits of this file.
                errfinish(c"pg_credits".as_ptr(), 0, c"raise".as_ptr());
            }
        }
        unreachable!("errfinish returned from an ERROR")
    }
}

fn available(balance: &AnyNumeric, held: &AnyNumeric, min_balance: &AnyNumeric) -> AnyNumeric {
    Figures { balance: balance.clone(), held: held.clone(), min_balance: min_balance.clone() }.available()
}

/// How much the account is missing: cost - available.
fn shortfall(balance: &AnyNumeric, held: &AnyNumeric, min_balance: &AnyNumeric, cost: &AnyNumeric) -> AnyNumeric {
    crate::money::canonical(cost.clone() - available(balance, held, min_balance))
}

/// `credits.recharge_url` for `account`, if set.
fn recharge_url(account: &str) -> Option<String> {
    let template = RECHARGE_URL.get()?;
    let template = template.to_str().ok().filter(|url| !url.is_empty())?;
    let encoded: String = account
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect();
    Some(template.replace("{account}", &encoded))
}

fn c_string(text: String) -> CString {
    CString::new(text.replace('\0', "")).expect("NUL bytes were removed")
}

/// PostgreSQL's MAKE_SQLSTATE: five characters packed six bits each.
fn make_sqlstate(code: &str) -> c_int {
    code.bytes()
        .enumerate()
        .map(|(i, ch)| (((ch - b'0') & 0x3F) as c_int) << (6 * i))
        .sum()
}

/// Unwraps a result in a top-level SQL-callable function, raising the error otherwise.
pub fn unwrap_or_raise<T>(result: Result<T>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => error.raise(),
    }
}

// pgrx deliberately leaves these out of pg_sys (its own path maps SQLSTATEs through a
// closed enum), so pg_credits declares them itself.
unsafe extern "C-unwind" {
    fn errstart(elevel: c_int, domain: *const c_char) -> bool;
    fn errcode(sqlerrcode: c_int) -> c_int;
    fn errmsg(fmt: *const c_char, ...) -> c_int;
    fn errdetail(fmt: *const c_char, ...) -> c_int;
    fn errhint(fmt: *const c_char, ...) -> c_int;
    fn errfinish(filename: *const c_char, lineno: c_int, funcname: *const c_char);
}

#[cfg(test)]
mod tests {
    use super::make_sqlstate;

    #[test]
    fn sqlstates_pack_like_postgres() {
        // ERRCODE_DIVISION_BY_ZERO is MAKE_SQLSTATE('2','2','0','1','2') = 33816706.
        assert_eq!(make_sqlstate("22012"), 33816706);
        assert_ne!(make_sqlstate("PT402"), make_sqlstate("PT404"));
    }
}
