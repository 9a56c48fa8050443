//! The guard triggers: whatever writes the tables (raw SQL, an ORM, an admin session),
//! no account goes below its `min_balance`, every balance change is in the ledger, and
//! the ledger is append-only. The extension's own functions keep these rules by
//! construction; the triggers make them hold for everyone else.
//!
//! The UPDATE guard is an AFTER trigger whose WHEN clause skips the rows pg_credits'
//! own functions are writing (`is_direct_write`), so the money path never runs it; for a
//! direct write it refuses a balance below the floor (the statement fails), records the
//! change as an adjustment, and sends the low-balance alert if the balance crossed its
//! threshold. OLD is the row version the UPDATE replaced, so the adjustment is exact
//! under concurrency.
//!
//! Direct balance changes are recorded as `adjustment` entries: for an UPDATE from that
//! trigger, for an INSERT at commit, as the difference between the
//! balance and the account's ledger (so an `INSERT … ON CONFLICT DO UPDATE` that did not
//! insert records nothing twice, and a restore of both tables records nothing at all).
//!
//! The same reconciliation at commit is what lets a restore bring hot accounts back: an
//! inserted account row may have slots, and slot rows may be inserted (only inserted: an
//! UPDATE or DELETE of a slot is refused at once), as long as at commit every account
//! touched has exactly its slots 0 … n-1, whose money counts in its balance.

use crate::decide::Figures;
use crate::error::{self, CreditsError};
use crate::input;
use crate::money::canonical;
use crate::{notify, pools};
use crate::plans::{is_direct_write, Statement, NUMERIC, TEXT};
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::prelude::*;
use pgrx::{AllocatedByPostgres, AnyNumeric};
use std::convert::Infallible;

type TriggerRow<'a> = Option<PgHeapTuple<'a, AllocatedByPostgres>>;

/// BEFORE INSERT, and AFTER a direct UPDATE, of credits.accounts.
#[pg_trigger]
fn guard_accounts<'a>(trigger: &'a PgTrigger<'a>) -> std::result::Result<TriggerRow<'a>, Infallible> {
    match guard_row(trigger) {
        Ok(row) => Ok(row),
        Err(error) => error.raise(),
    }
}

/// Deferred to COMMIT after a direct INSERT of credits.accounts (with a balance or slots)
/// or of credits.account_slots: checks that the account's slots are exactly the ones its
/// slot count says (PT403 otherwise), and records `balance - sum(ledger)` for it, its
/// slots included, as an adjustment. Deferred so that a restore, which loads the tables
/// one after the other, finds them consistent and records nothing; an ordinary INSERT
/// gets its adjustment at commit.
#[pg_trigger]
fn reconcile_inserted_account<'a>(
    trigger: &'a PgTrigger<'a>,
) -> std::result::Result<TriggerRow<'a>, Infallible> {
    match reconcile(trigger) {
        Ok(()) => Ok(None),
        Err(error) => error.raise(),
    }
}

fn reconcile(trigger: &PgTrigger<'_>) -> error::Result<()> {
    let new = trigger.new().expect("an AFTER INSERT row trigger has NEW");
    let account: String = column(&new, "account");
    let slots_as_counted = Spi::connect_mut(|client| {
        RECONCILE.first_value::<bool>(client, &[account.as_str().into()]).expect("one row")
    });
    if slots_as_counted {
        Ok(())
    } else {
        Err(CreditsError::ForbiddenWrite {
            message: "An inserted account must come with exactly its slots, its active holds and (with has_grants) its pools: \
                      they change only through pg_credits.",
        })
    }
}

/// Refuses the write it fires for: UPDATE, DELETE or TRUNCATE of the ledger, TRUNCATE of
/// the accounts, DELETE of an account whose balance is not zero, a direct UPDATE or DELETE
/// of a slot, and UPDATE of an event.
#[pg_trigger]
fn refuse_write<'a>(trigger: &'a PgTrigger<'a>) -> std::result::Result<TriggerRow<'a>, Infallible> {
    let table = trigger.table_name().unwrap_or_default();
    let message = match (table.as_str(), trigger.op()) {
        ("accounts", Ok(PgTriggerOperation::Truncate)) => {
            "credits.accounts cannot be truncated: balances would vanish without ledger entries."
        }
        ("accounts", _) => {
            "An account whose balance is not zero, or that has slots, holds or grants, cannot be deleted."
        }
        ("account_slots", _) => {
            "The slots of a hot account change only through pg_credits: use credits.set_slots."
        }
        ("account_grants", _) => {
            "Grants change only through pg_credits: use credits.grant, void_grant or set_grant_expiry."
        }
        ("holds", _) => "Holds change only through pg_credits: use credits.capture, release or extend_hold.",
        ("events", _) => "credits.events is append-only: events cannot be updated (delete old ones to prune it).",
        _ => "The credits ledger is append-only: entries cannot be updated, deleted or truncated.",
    };
    // raise() longjmps: nothing owned may be left in this frame.
    drop(table);
    CreditsError::ForbiddenWrite { message }.raise()
}

/// Whether account $1's slots are exactly 0 … slots-1 (no account: no slots), and if so
/// the adjustment that makes its ledger add up to its whole balance.
static RECONCILE: Statement = Statement {
    sql: "WITH account AS (
              SELECT account, balance, slots, held, has_grants FROM credits.accounts WHERE account = $1 FOR UPDATE),
          slots AS (
              SELECT pg_catalog.count(*) AS n, coalesce(pg_catalog.sum(available), 0) AS available,
                     coalesce(pg_catalog.max(slot), -1) AS last, coalesce(pg_catalog.min(slot), 0) AS first
                FROM credits.account_slots WHERE account = $1),
          checked AS (
              SELECT coalesce((SELECT slots FROM account), 0) = s.n AND s.first >= 0 AND s.last = s.n - 1
                     AND coalesce((SELECT held FROM account), 0) = (
                         SELECT coalesce(pg_catalog.sum(p.part), 0)
                           FROM credits.holds h, pg_catalog.unnest(h.parts) AS p(part)
                          WHERE h.account = $1 AND h.status = 'active')
                     AND CASE WHEN coalesce((SELECT has_grants FROM account), false)
                              THEN EXISTS (SELECT FROM credits.account_grants WHERE account = $1 AND grant_id = 0)
                                   AND (SELECT balance FROM account) + s.available = (
                                       SELECT coalesce(pg_catalog.sum(remaining + held), 0)
                                         FROM credits.account_grants WHERE account = $1)
                              ELSE NOT EXISTS (SELECT FROM credits.account_grants WHERE account = $1) END AS ok
                FROM slots s),
          gap AS (
              SELECT a.account, pg_catalog.trim_scale(a.balance + s.available) AS balance,
                     pg_catalog.trim_scale(a.balance + s.available - coalesce(
                         (SELECT pg_catalog.sum(l.amount) FROM credits.ledger l WHERE l.account = $1), 0)) AS amount
                FROM account a, slots s, checked c WHERE c.ok),
          adjusted AS (
              INSERT INTO credits.ledger (account, amount, balance_after, kind, reason)
              SELECT account, amount, balance, 'adjustment', 'direct insert into credits.accounts'
                FROM gap WHERE amount <> 0)
          SELECT ok FROM checked",
    args: &[TEXT],
    generic: false,
};

static ADJUSTMENT: Statement = Statement {
    sql: "INSERT INTO credits.ledger (account, amount, balance_after, kind, reason)
          VALUES ($1, $2, $3, 'adjustment', 'direct write to credits.accounts') RETURNING id",
    args: &[TEXT, NUMERIC, NUMERIC],
    generic: false,
};

fn guard_row<'a>(trigger: &'a PgTrigger<'a>) -> error::Result<TriggerRow<'a>> {
    let new = trigger.new().expect("a BEFORE INSERT or UPDATE row trigger has NEW");
    let account: String = column(&new, "account");
    if !is_direct_write(&account) {
        return Ok(Some(new));
    }
    let new_balance: AnyNumeric = canonical(column(&new, "balance"));
    let min_balance: AnyNumeric = canonical(column(&new, "min_balance"));
    let slots: i32 = column(&new, "slots");
    let old_balance = match trigger.old() {
        Some(old) => {
            if column::<String>(&old, "account") != account {
                return Err(CreditsError::ForbiddenWrite {
                    message: "An account's id cannot be changed: its ledger entries refer to it.",
                });
            }
            if column::<i32>(&old, "slots") != slots {
                return Err(SLOTS_CHANGED);
            }
            if column::<AnyNumeric>(&old, "held") != column::<AnyNumeric>(&new, "held")
                || column::<bool>(&old, "has_grants") != column::<bool>(&new, "has_grants")
            {
                return Err(CreditsError::ForbiddenWrite {
                    message: "An account's held and has_grants change only through pg_credits' holds and grants.",
                });
            }
            Some(canonical(column(&old, "balance")))
        }
        // An inserted hot account (a restore): its slots are checked at commit.
        None => None,
    };
    let held: AnyNumeric = canonical(column(&new, "held"));
    let has_grants: bool = column(&new, "has_grants");
    // Holds count against a direct write as against a charge (lapsed ones too: this
    // trigger does not write their expiry); grants not in effect yet do not pay for it.
    let pending = if has_grants && old_balance.is_some() {
        Spi::connect(|client| pools::pending(client, &account, input::now()))
    } else {
        AnyNumeric::from(0)
    };
    let after = Figures { balance: canonical(new_balance.clone() - pending.clone()), held, min_balance };
    if !after.can_pay(&AnyNumeric::from(0)) {
        // Reported as a charge of the amount the write takes away, from the balance it
        // started at: shortfall = cost - available before = what the write overdraws.
        let (balance, cost) = match old_balance {
            Some(old) if new_balance < old => {
                let taken = old.clone() - new_balance;
                (canonical(old - pending), taken)
            }
            _ => (after.balance.clone(), AnyNumeric::from(0)),
        };
        return Err(CreditsError::insufficient(&account, &Figures { balance, ..after }, &cost));
    }
    if let Some(old) = old_balance {
        if new_balance != old {
            let threshold: Option<AnyNumeric> =
                new.get_by_name("low_balance_threshold").expect("credits.accounts has this column");
            Spi::connect_mut(|client| {
                let amount = canonical(new_balance.clone() - old.clone());
                if has_grants {
                    pools::adjust_own_balance(client, &account, &amount);
                }
                ADJUSTMENT.first_row(client, &[account.as_str().into(), amount.into(), new_balance.clone().into()]);
                if notify::crossed(&old, &new_balance, threshold.as_ref()) {
                    notify::low_balance(client, &account, &new_balance, threshold.as_ref().expect("crossed"));
                }
            });
        }
    }
    Ok(Some(new))
}

const SLOTS_CHANGED: CreditsError = CreditsError::ForbiddenWrite {
    message: "An account's slots change only through credits.set_slots, which moves the money with them.",
};

fn column<T>(row: &PgHeapTuple<'_, AllocatedByPostgres>, name: &str) -> T
where
    T: pgrx::datum::FromDatum + pgrx::datum::IntoDatum + for<'t> pgrx::datum::UnboxDatum<As<'t> = T>,
{
    row.get_by_name(name)
        .expect("credits.accounts has this column")
        .expect("credits.accounts declares this column NOT NULL")
}
