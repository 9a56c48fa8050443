//! Refunds (`refund`): giving back what a charge or capture entry took, partially and
//! repeatedly, never more than it took (PT422), to the pool it was drawn from.
//!
//! A refund is an entry of kind `refund` linked to the entry it gives back (`refund_of`).
//! Under the account's lock, what the entry's earlier refunds gave back is summed from the
//! partial index of refunds, so refunds racing each other are decided one after the
//! other. The pool the entry was drawn from takes the money back: the own balance, or the
//! grant (a used-up grant opens again). A grant that has since expired or was voided
//! would let the refund revive credit that is gone: the money leaves it again at once with
//! an `expiry` entry, unless `reissue => true` gives it back as a new grant of the same
//! category and priority that never expires.
//!
//! An entry is found by its id alone through the ledger's block-range index of ids (see
//! `schema.sql`): a refund is rare, a charge is not, and a B-tree on id would cost every
//! charge an index entry.

use crate::accounts;
use crate::decide::{self, PoolState, RefundTo};
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::grants::{self, GrantEntry, Source, Terms};
use crate::input;
use crate::money::canonical;
use crate::plans::{OwnWrite, Statement, BOOL, INT8, JSONB, NUMERIC, TEXT, TIMESTAMPTZ};
use crate::{direct, hot, pools};
use pgrx::datetime::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};
use serde_json::json;

type Refunded = (i64, AnyNumeric, AnyNumeric, AnyNumeric);

/// Gives back `amount` (NULL: all that is left) of charge or capture entry `entry_id`;
/// returns the refund's entry, what it gave back, what is left to refund and the balance.
#[pg_extern(security_definer, volatile, parallel_unsafe)]
#[search_path(pg_catalog, @extschema@, pg_temp)]
fn refund(
    entry_id: Option<i64>,
    amount: default!(Option<AnyNumeric>, "NULL"),
    idempotency_key: default!(Option<&str>, "NULL"),
    reason: default!(Option<&str>, "NULL"),
    metadata: default!(Option<JsonB>, "NULL"),
    reissue: default!(Option<bool>, false),
) -> TableIterator<
    'static,
    (
        name!(refund_id, i64),
        name!(refunded, AnyNumeric),
        name!(refundable, AnyNumeric),
        name!(balance, AnyNumeric),
    ),
> {
    TableIterator::once(unwrap_or_raise(give_back(entry_id, amount, idempotency_key, reason, metadata, reissue)))
}

/// What is asked of a refund, checked.
struct Asked<'a> {
    entry_id: i64,
    amount: Option<AnyNumeric>,
    idempotency_key: Option<&'a str>,
    reason: Option<&'a str>,
    metadata: Option<JsonB>,
    reissue: bool,
}

fn give_back(
    entry_id: Option<i64>,
    amount: Option<AnyNumeric>,
    idempotency_key: Option<&str>,
    reason: Option<&str>,
    metadata: Option<JsonB>,
    reissue: Option<bool>,
) -> Result<Refunded> {
    let amount = match amount {
        None => None,
        Some(amount) => {
            let amount = input::amount("amount", Some(amount))?;
            if amount.is_zero() {
                return Err(CreditsError::bad_input(BadInput::Invalid, "amount", "must be positive (NULL: all that is left)"));
            }
            Some(amount.value)
        }
    };
    let asked = Asked {
        entry_id: input::required("entry_id", entry_id)?,
        amount,
        idempotency_key: input::idempotency_key(idempotency_key)?,
        reason: input::reason(reason)?,
        metadata: input::metadata(metadata)?,
        reissue: input::required("reissue", reissue)?,
    };
    Spi::connect_mut(|client| {
        let account: String = ENTRY_ACCOUNT
            .first_value(client, &[asked.entry_id.into()])
            .ok_or(CreditsError::EntryNotFound { entry_id: asked.entry_id })?;
        let row = accounts::lock(client, &account).ok_or_else(|| accounts::not_found(&account))?;
        if let Some(key) = asked.idempotency_key {
            if let Some(original) = pools::keyed(client, &account, key) {
                let same = original.kind == "refund"
                    && original.field::<i64>("entry_id") == Some(asked.entry_id)
                    && asked.amount.as_ref().is_none_or(|amount| original.amount == *amount);
                if !same {
                    let amount = asked.amount.clone().unwrap_or_else(|| AnyNumeric::from(0));
                    return Err(original.conflict(&account, key, "refund", amount));
                }
                return Ok((
                    original.field("refund_id").expect("a refund's outcome has its entry"),
                    original.field("refunded").expect("refunded"),
                    original.field("refundable").expect("refundable"),
                    original.field("balance").expect("balance"),
                ));
            }
        }
        let slots = row.slots;
        let now = input::now();
        let (row, figures) = hot::whole(client, &account, row, now);
        let result = write(client, &account, &row, &figures, &asked, now);
        hot::spread(client, &account, slots);
        result
    })
}

fn write(
    client: &SpiClient<'_>,
    account: &str,
    row: &accounts::Account,
    figures: &decide::Figures<AnyNumeric>,
    asked: &Asked<'_>,
    now: decide::Time,
) -> Result<Refunded> {
    let entry = ORIGINAL
        .first_row(client, &[account.into(), asked.entry_id.into()])
        .expect("the entry of the account it was found in");
    let kind: String = entry.column(1);
    if kind != "charge" && kind != "capture" {
        return Err(CreditsError::bad_input(
            BadInput::Invalid,
            "entry_id",
            format!("must be a charge or capture entry (this one is a {kind})"),
        ));
    }
    let charged = -entry.column::<AnyNumeric>(2);
    let pool: Option<i64> = entry.nullable_column(3);
    let refunded: AnyNumeric = entry.column(4);
    let given = decide::refund(&charged, &refunded, asked.amount.as_ref()).map_err(|refundable| {
        CreditsError::RefundExceedsCharge {
            entry_id: asked.entry_id,
            refundable: canonical(refundable),
            amount: asked.amount.clone().unwrap_or_else(|| AnyNumeric::from(0)),
        }
    })?;
    let refundable = canonical(charged - refunded - given.clone());
    let grant = pool.map(|id| {
        let grant = GRANT.first_row(client, &[account.into(), id.into()]).expect("an entry's grant");
        let closed: Option<String> = grant.nullable_column(1);
        let expires_at: TimestampWithTimeZone = grant.column(2);
        let spendable = input::time(expires_at) > now && closed.as_deref().is_none_or(|closed| closed == "depleted");
        let state = if spendable { PoolState::Spendable } else { PoolState::Closed };
        (state, grant.column::<String>(3), grant.column::<i32>(4))
    });
    let to = grant.as_ref().map_or(RefundTo::Pool, |(state, ..)| decide::refund_to(*state, asked.reissue));
    let balance = canonical(figures.balance.clone() + if to == RefundTo::PoolThenExpiry { AnyNumeric::from(0) } else { given.clone() });
    let refund_id: i64 = NEXT_ENTRY.first_value(client, &[]).expect("a sequence value");
    let outcome = asked.idempotency_key.map(|_| {
        json!({
            "amount": direct::json_number(&given),
            "entry_id": asked.entry_id,
            "refund_id": refund_id,
            "refunded": direct::json_number(&given),
            "refundable": direct::json_number(&refundable),
            "balance": direct::json_number(&balance),
        })
    });
    let _own = OwnWrite::begin(account);
    match (to, grant) {
        (RefundTo::Reissued, Some((_, category, priority))) => {
            let terms = Terms {
                category: decide::Category::parse(&category).expect("a known category"),
                priority,
                effective_at: None,
                expires_at: TimestampWithTimeZone::positive_infinity(),
            };
            let entry = GrantEntry {
                reason: asked.reason,
                idempotency_key: asked.idempotency_key,
                metadata: asked.metadata.as_ref(),
                source: Source::Refund { entry: asked.entry_id, id: refund_id, outcome },
            };
            grants::add(client, account, row, figures, &given, &terms, &entry, now);
        }
        (to, _) => {
            REFUND.first_row(
                client,
                &[
                    account.into(),
                    pool.into(),
                    given.clone().into(),
                    asked.reason.into(),
                    asked.idempotency_key.into(),
                    asked.metadata.as_ref().map(|m| JsonB(m.0.clone())).into(),
                    asked.entry_id.into(),
                    outcome.map(JsonB).into(),
                    (to == RefundTo::PoolThenExpiry).into(),
                    input::timestamp(now).into(),
                    refund_id.into(),
                ],
            );
        }
    }
    Ok((refund_id, given, refundable, balance))
}

/// The account of entry $1, through the block-range index of ids.
static ENTRY_ACCOUNT: Statement = Statement {
    sql: "SELECT account FROM credits.ledger WHERE id = $1",
    args: &[INT8],
    generic: true,
};

/// Entry $2 of account $1: its kind, amount and pool, and what its refunds gave back.
static ORIGINAL: Statement = Statement {
    sql: "SELECT l.kind, l.amount, l.grant_id,
                 (SELECT coalesce(pg_catalog.sum(r.amount), 0) FROM credits.ledger r
                   WHERE r.account = $1 AND r.refund_of = $2 AND r.kind = 'refund')
            FROM credits.ledger l WHERE l.account = $1 AND l.id = $2",
    args: &[TEXT, INT8],
    generic: true,
};

static GRANT: Statement = Statement {
    sql: "SELECT closed, expires_at, category, priority FROM credits.account_grants WHERE account = $1 AND grant_id = $2",
    args: &[TEXT, INT8],
    generic: true,
};

/// The refund's entry id, taken before it is written so that its outcome can name it.
static NEXT_ENTRY: Statement = Statement {
    sql: "SELECT pg_catalog.nextval('credits.ledger_id_seq')",
    args: &[],
    generic: true,
};

/// Gives $3 back to pool $2 of account $1 (NULL: the own balance, pool 0 once it has
/// grants; a used-up grant opens again), as entry $11 refunding $7; with $9 the pool is
/// closed and the money leaves it again at once (an expiry entry at $10).
static REFUND: Statement = Statement {
    sql: concat!(
        "WITH pool AS (
             UPDATE credits.account_grants g
                SET remaining = CASE WHEN $9 THEN g.remaining ELSE pg_catalog.trim_scale(g.remaining + $3) END,
                    closed = CASE WHEN g.closed = 'depleted' AND NOT $9 THEN NULL ELSE g.closed END,
                    closed_at = CASE WHEN g.closed = 'depleted' AND NOT $9 THEN NULL ELSE g.closed_at END
              WHERE g.account = $1 AND g.grant_id = coalesce($2, 0)),
         moved AS (
             UPDATE credits.accounts a
                SET balance = CASE WHEN $9 THEN a.balance ELSE pg_catalog.trim_scale(a.balance + $3) END,
                    updated_at = pg_catalog.now()
              WHERE a.account = $1
          RETURNING a.balance, ", row_is_whole!(), " AS whole)
         INSERT INTO credits.ledger (id, account, amount, balance_after, kind, reason, idempotency_key, metadata, grant_id,
                                     refund_of, outcome, created_at)
         OVERRIDING SYSTEM VALUE
         SELECT $11, $1, $3, CASE WHEN moved.whole THEN moved.balance + CASE WHEN $9 THEN $3 ELSE 0 END END, 'refund',
                $4, $5, $6, $2, $7, $8, pg_catalog.now()
           FROM moved
         UNION ALL
         SELECT pg_catalog.nextval('credits.ledger_id_seq'), $1, -$3, CASE WHEN moved.whole THEN moved.balance END,
                'expiry', 'refunded to a closed grant', NULL, NULL, $2, NULL, NULL, $10
           FROM moved WHERE $9"
    ),
    args: &[TEXT, INT8, NUMERIC, TEXT, TEXT, JSONB, INT8, JSONB, BOOL, TIMESTAMPTZ, INT8],
    generic: true,
};
