//! `credits.charge_many`: settling metered usage in bulk.
//!
//! One call locks every plain account it names (in account order, so two batches never
//! deadlock on each other), looks up every idempotency key in one statement, decides
//! each item in order in memory (an account named twice pays its items one after the
//! other), then writes every balance and every ledger entry directly (`direct::settle`;
//! through one UPDATE and one INSERT when the tables were changed by hand).
//! Items of hot accounts go through the hot path one by one.
//!
//! Each item gets a result row; a failed item changes nothing and carries the same JSON
//! payload its single `charge` would have raised. With `all_or_nothing => true` the
//! first failed item is raised instead, with its SQLSTATE, and nothing is charged.

use crate::decide::Figures;
use crate::error::{unwrap_or_raise, BadInput, CreditsError, Result};
use crate::movement::{Applied, Entry, Movement};
use crate::plans::{OwnWrite, Statement, NUMERIC_ARRAY, TEXT, TEXT_ARRAY};
use crate::{direct, input, notify};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::{AnyNumeric, JsonB};
use std::collections::HashMap;

/// The most items one call takes: a batch is one transaction's worth of row locks.
pub const MAX_ITEMS: usize = 100_000;

/// item, account, cost, status, balance, error: the columns of `charge_many`.
type ItemRow = (i32, String, AnyNumeric, &'static str, Option<AnyNumeric>, Option<JsonB>);

/// Charges `costs[i]` to `accounts[i]` for every i, in order; one result row per item:
/// status `charged`, `replayed` (the idempotency key had already charged this cost) or
/// `failed` (then `error` is the JSON payload the single charge would have raised).
// pgrx reads the result's column names from the `name!`s in this signature, so the type
// cannot move into an alias.
#[allow(clippy::type_complexity)]
#[pg_extern(security_definer, volatile, parallel_unsafe)]
fn charge_many(
    accounts: Option<Vec<Option<String>>>,
    costs: Option<Vec<Option<AnyNumeric>>>,
    idempotency_keys: default!(Option<Vec<Option<String>>>, "NULL"),
    reason: default!(Option<&str>, "NULL"),
    all_or_nothing: default!(Option<bool>, false),
) -> TableIterator<
    'static,
    (
        name!(item, i32),
        name!(account, String),
        name!(cost, AnyNumeric),
        name!(status, &'static str),
        name!(balance, Option<AnyNumeric>),
        name!(error, Option<JsonB>),
    ),
> {
    let rows = unwrap_or_raise(charge_batch(accounts, costs, idempotency_keys, reason, all_or_nothing));
    TableIterator::new(rows)
}

struct Item {
    account: String,
    cost: input::Amount,
    key: Option<String>,
}

impl Item {
    /// This item as the charge it makes.
    fn entry<'a>(&'a self, reason: Option<&'a str>) -> Entry<'a> {
        Entry {
            movement: Movement::Charge,
            account: &self.account,
            amount: self.cost.clone(),
            reason,
            idempotency_key: self.key.as_deref(),
            metadata: None,
        }
    }
}

enum Outcome {
    Charged(AnyNumeric),
    Replayed(Option<AnyNumeric>),
    Failed(CreditsError),
}

/// A plain account's figures while the batch is decided.
struct Running {
    /// The locked row version: the final balance is written straight to it.
    version: pg_sys::ItemPointerData,
    balance: AnyNumeric,
    min_balance: AnyNumeric,
    threshold: Option<AnyNumeric>,
    started_at: AnyNumeric,
    /// A hot account, or one with grants or holds: its items go through the single
    /// charge's path, which draws from slots or pools and writes what has lapsed.
    one_by_one: bool,
}

static LOCK_ACCOUNTS: Statement = Statement {
    sql: "SELECT account::pg_catalog.text, balance, min_balance, slots, low_balance_threshold,
                 ctid, held, has_grants
            FROM credits.accounts WHERE account = ANY ($1) ORDER BY account FOR UPDATE",
    args: &[TEXT_ARRAY],
    generic: false,
};

static FIND_KEYS: Statement = Statement {
    sql: "SELECT l.account, l.idempotency_key, l.kind::pg_catalog.text,
                 coalesce((l.outcome ->> 'amount')::pg_catalog.numeric, l.amount),
                 coalesce((l.outcome ->> 'balance_after')::pg_catalog.numeric, l.balance_after)
            FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.text[])) AS k(account, key)
            JOIN credits.ledger l ON l.account = k.account AND l.idempotency_key = k.key",
    args: &[TEXT_ARRAY, TEXT_ARRAY],
    generic: false,
};

/// What `direct::settle` writes, for tables it cannot write directly (say, with a trigger
/// added by hand, which this statement fires). $1/$2: each charged account and its final
/// balance; $3…$6: the entries, in the order they are to get their ids.
static APPLY: Statement = Statement {
    sql: "WITH moved AS (
              UPDATE credits.accounts a SET balance = u.balance, updated_at = pg_catalog.now()
                FROM ROWS FROM (pg_catalog.unnest($1::pg_catalog.text[]), pg_catalog.unnest($2::pg_catalog.numeric[])) AS u(account, balance)
               WHERE a.account = u.account)
          INSERT INTO credits.ledger (account, amount, balance_after, kind, reason, idempotency_key)
          SELECT e.account, e.amount, e.balance_after, 'charge', $7, e.key
            FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.numeric[]),
                            pg_catalog.unnest($5::pg_catalog.numeric[]), pg_catalog.unnest($6::pg_catalog.text[]))
                 AS e(account, amount, balance_after, key)",
    args: &[TEXT_ARRAY, NUMERIC_ARRAY, TEXT_ARRAY, NUMERIC_ARRAY, NUMERIC_ARRAY, TEXT_ARRAY, TEXT],
    generic: false,
};

/// What an idempotency key already recorded, in the ledger or earlier in this batch.
struct Recorded {
    kind: String,
    amount: AnyNumeric,
    balance_after: Option<AnyNumeric>,
}

type Keys = HashMap<(String, String), Recorded>;

fn charge_batch(
    accounts: Option<Vec<Option<String>>>,
    costs: Option<Vec<Option<AnyNumeric>>>,
    keys: Option<Vec<Option<String>>>,
    reason: Option<&str>,
    all_or_nothing: Option<bool>,
) -> Result<Vec<ItemRow>> {
    let items = items(accounts, costs, keys)?;
    let reason = input::reason(reason)?;
    let all_or_nothing = all_or_nothing.unwrap_or(false);
    let mut outcomes = Spi::connect_mut(|client| {
        let mut running = lock_accounts(client, &items);
        let mut recorded = recorded_keys(client, &items);
        let outcomes: Vec<Outcome> = items
            .iter()
            .map(|item| decide(client, item, reason, &mut running, &mut recorded))
            .collect();
        let failed = outcomes.iter().any(|o| matches!(o, Outcome::Failed(_)));
        if !(all_or_nothing && failed) {
            write(client, &items, &outcomes, reason, &running);
        }
        outcomes
    });
    if all_or_nothing {
        if let Some(first) = outcomes.iter().position(|o| matches!(o, Outcome::Failed(_))) {
            if let Outcome::Failed(error) = outcomes.swap_remove(first) {
                return Err(error);
            }
        }
    }
    Ok(items
        .into_iter()
        .zip(outcomes)
        .enumerate()
        .map(|(index, (item, outcome))| {
            let (status, balance, error) = match outcome {
                Outcome::Charged(balance) => ("charged", Some(balance), None),
                Outcome::Replayed(balance) => ("replayed", balance, None),
                Outcome::Failed(error) => ("failed", None, Some(JsonB(error.detail()))),
            };
            (index as i32 + 1, item.account, item.cost.value, status, balance, error)
        })
        .collect())
}

fn items(
    accounts: Option<Vec<Option<String>>>,
    costs: Option<Vec<Option<AnyNumeric>>>,
    keys: Option<Vec<Option<String>>>,
) -> Result<Vec<Item>> {
    let null = |field| CreditsError::bad_input(BadInput::Null, field, "must not be NULL");
    let accounts = accounts.ok_or_else(|| null("accounts"))?;
    let costs = costs.ok_or_else(|| null("costs"))?;
    let count = accounts.len();
    if count > MAX_ITEMS {
        return Err(CreditsError::bad_input(
            BadInput::Invalid,
            "accounts",
            format!("must have at most {MAX_ITEMS} items"),
        ));
    }
    let same_length = |field| {
        CreditsError::bad_input(BadInput::Invalid, field, format!("must have as many items as accounts ({count})"))
    };
    if costs.len() != count {
        return Err(same_length("costs"));
    }
    let keys = match keys {
        None => vec![None; count],
        Some(keys) if keys.len() == count => keys,
        Some(_) => return Err(same_length("idempotency_keys")),
    };
    accounts
        .into_iter()
        .zip(costs)
        .zip(keys)
        .enumerate()
        .map(|(index, ((account, cost), key))| {
            let at = |error: CreditsError| error.at_item(index + 1);
            Ok(Item {
                account: input::account(account.as_deref()).map_err(at)?.to_owned(),
                cost: input::amount("cost", cost).map_err(at)?,
                key: input::idempotency_key(key.as_deref()).map_err(at)?.map(str::to_owned),
            })
        })
        .collect()
}

fn lock_accounts(client: &SpiClient<'_>, items: &[Item]) -> HashMap<String, Running> {
    let mut names: Vec<&str> = items.iter().map(|item| item.account.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    LOCK_ACCOUNTS
        .all_rows(client, &[names.into()])
        .map(|row| {
            let account: String = row.get(1).unwrap().expect("account is NOT NULL");
            let balance: AnyNumeric = row.get(2).unwrap().expect("balance is NOT NULL");
            let slots: i32 = row.get(4).unwrap().expect("slots is NOT NULL");
            let held: AnyNumeric = row.get(7).unwrap().expect("held is NOT NULL");
            let has_grants: bool = row.get(8).unwrap().expect("has_grants is NOT NULL");
            let running = Running {
                version: row.get(6).unwrap().expect("every row has a ctid"),
                started_at: balance.clone(),
                balance,
                min_balance: row.get(3).unwrap().expect("min_balance is NOT NULL"),
                threshold: row.get(5).unwrap(),
                one_by_one: slots > 0 || has_grants || held != AnyNumeric::from(0),
            };
            (account, running)
        })
        .collect()
}

fn recorded_keys(client: &SpiClient<'_>, items: &[Item]) -> Keys {
    let (accounts, keys): (Vec<&str>, Vec<&str>) = items
        .iter()
        .filter_map(|item| item.key.as_deref().map(|key| (item.account.as_str(), key)))
        .unzip();
    if keys.is_empty() {
        return Keys::new();
    }
    FIND_KEYS
        .all_rows(client, &[accounts.into(), keys.into()])
        .map(|row| {
            let account: String = row.get(1).unwrap().expect("NOT NULL");
            let key: String = row.get(2).unwrap().expect("joined on the key");
            let recorded = Recorded {
                kind: row.get(3).unwrap().expect("kind is NOT NULL"),
                amount: row.get(4).unwrap().expect("amount is NOT NULL"),
                balance_after: row.get(5).unwrap(),
            };
            ((account, key), recorded)
        })
        .collect()
}

fn decide(
    client: &SpiClient<'_>,
    item: &Item,
    reason: Option<&str>,
    running: &mut HashMap<String, Running>,
    recorded: &mut Keys,
) -> Outcome {
    let Some(account) = running.get_mut(&item.account) else {
        return Outcome::Failed(CreditsError::AccountNotFound { account: item.account.clone() });
    };
    if account.one_by_one {
        return match crate::charge::apply(client, &item.entry(reason)) {
            Ok(Applied::Moved(balance)) => Outcome::Charged(balance),
            Ok(Applied::Replayed(balance)) => Outcome::Replayed(Some(balance)),
            Err(error) => Outcome::Failed(error),
        };
    }
    let cost = &item.cost.value;
    let ledger_amount = Movement::Charge.ledger_amount(cost);
    if let Some(key) = &item.key {
        if let Some(previous) = recorded.get(&(item.account.clone(), key.clone())) {
            if previous.kind == Movement::Charge.kind() && previous.amount == ledger_amount {
                return Outcome::Replayed(previous.balance_after.clone());
            }
            return Outcome::Failed(CreditsError::IdempotencyConflict {
                account: item.account.clone(),
                idempotency_key: key.clone(),
                original_kind: previous.kind.clone(),
                original_amount: previous.amount.clone(),
                kind: Movement::Charge.kind(),
                amount: ledger_amount,
            });
        }
    }
    if item.cost.is_zero() {
        return Outcome::Charged(account.balance.clone());
    }
    // Accounts that hold anything go one by one (above): here held is 0, and decide's rule
    // balance - held - cost >= min_balance is one comparison per item.
    let after = crate::money::canonical(account.balance.clone() - cost.clone());
    if after < account.min_balance {
        let figures = Figures {
            balance: account.balance.clone(),
            held: AnyNumeric::from(0),
            min_balance: account.min_balance.clone(),
        };
        return Outcome::Failed(CreditsError::insufficient(&item.account, &figures, cost));
    }
    account.balance = after.clone();
    if let Some(key) = &item.key {
        let charged = Recorded { kind: Movement::Charge.kind().into(), amount: ledger_amount, balance_after: Some(after.clone()) };
        recorded.insert((item.account.clone(), key.clone()), charged);
    }
    Outcome::Charged(after)
}

/// Writes the charged items of plain accounts: their final balances, then their ledger
/// entries, by account (the ledger's primary key order) and in item order within one.
fn write(
    client: &SpiClient<'_>,
    items: &[Item],
    outcomes: &[Outcome],
    reason: Option<&str>,
    running: &HashMap<String, Running>,
) {
    let mut entries: Vec<(Entry<'_>, AnyNumeric)> = items
        .iter()
        .zip(outcomes)
        .filter_map(|(item, outcome)| match outcome {
            Outcome::Charged(balance_after) if !running[&item.account].one_by_one && !item.cost.is_zero() => {
                Some((item.entry(reason), balance_after.clone()))
            }
            _ => None,
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    // Stable: an account's entries keep their item order (and so their ids).
    entries.sort_by(|a, b| a.0.account.cmp(b.0.account));
    let charged: Vec<(&str, &Running)> = running
        .iter()
        .filter(|(_, account)| !account.one_by_one && account.balance != account.started_at)
        .map(|(name, account)| (name.as_str(), account))
        .collect();
    let finals: Vec<direct::Settled<'_>> = charged
        .iter()
        .map(|(name, account)| direct::Settled { version: account.version, account: name, balance: account.balance.clone() })
        .collect();
    if !direct::settle(&finals, &entries) {
        let _own = OwnWrite::begin_many(charged.iter().map(|(name, _)| *name));
        let names: Vec<&str> = charged.iter().map(|(name, _)| *name).collect();
        let balances: Vec<AnyNumeric> = finals.into_iter().map(|settled| settled.balance).collect();
        let entry_accounts: Vec<&str> = entries.iter().map(|(entry, _)| entry.account).collect();
        let amounts: Vec<AnyNumeric> =
            entries.iter().map(|(entry, _)| Movement::Charge.ledger_amount(&entry.amount.value)).collect();
        let balances_after: Vec<AnyNumeric> = entries.iter().map(|(_, after)| after.clone()).collect();
        let keys: Vec<Option<&str>> = entries.iter().map(|(entry, _)| entry.idempotency_key).collect();
        APPLY.all_rows(
            client,
            &[
                names.into(),
                balances.into(),
                entry_accounts.into(),
                amounts.into(),
                balances_after.into(),
                keys.into(),
                reason.into(),
            ],
        );
    }
    for (name, account) in charged {
        if notify::crossed(&account.started_at, &account.balance, account.threshold.as_ref()) {
            let threshold = account.threshold.as_ref().expect("crossed");
            notify::low_balance(client, name, &account.balance, threshold);
        }
    }
}
