//! The decision core: the rules of the money path as pure functions over plain values.
//!
//! Why apart: a charge, a hold, a capture and a grant all decide, from the same few
//! figures (what each pool of credit holds, what is held, the floor, the time), what must
//! be written. Kept here, over any exact number type (`AnyNumeric` in the server, integers
//! in the tests), each rule exists once; the writers (SQL through SPI, or the direct heap
//! writes) only carry decisions out, and the rules are tested without a server.
//!
//! The account's money is in pools. A pool is a grant, or the account's own balance
//! (pool [`OWN_BALANCE`]: what recharges bring), which counts as a paid grant of priority
//! 50 that never expires and took effect before any other. Only the own balance may go
//! below zero (an overdraft down to the floor); a grant's remaining never does.
//!
//! Burn order, one total order: priority ascending, then the soonest expiry (never last),
//! then promotional before paid, then the earliest `effective_at`, then the pool's id.

use std::cmp::Ordering;
use std::fmt::Debug;
use std::ops::{Add, Sub};

/// An exact amount of credits.
pub trait Money: Clone + Ord + Debug + Add<Output = Self> + Sub<Output = Self> {
    fn zero() -> Self;

    fn is_positive(&self) -> bool {
        *self > Self::zero()
    }
}

/// Microseconds since 2000-01-01 UTC, PostgreSQL's timestamptz.
pub type Time = i64;
/// `infinity`: an expiry that never comes.
pub const NEVER: Time = i64::MAX;
/// `-infinity`: in effect since always.
pub const ALWAYS: Time = i64::MIN;

/// The pool id of the account's own balance (grant ids start at 1).
pub const OWN_BALANCE: i64 = 0;
pub const OWN_BALANCE_PRIORITY: i32 = 50;

/// Promotional credits burn before paid ones of the same priority and expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Promotional,
    Paid,
}

impl Category {
    pub fn parse(text: &str) -> Option<Category> {
        match text {
            "promotional" => Some(Category::Promotional),
            "paid" => Some(Category::Paid),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Category::Promotional => "promotional",
            Category::Paid => "paid",
        }
    }
}

/// One pool of credit, as a decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool<M> {
    pub id: i64,
    /// What the pool can still give: its money less what holds reserved of it.
    pub remaining: M,
    pub priority: i32,
    pub category: Category,
    pub effective_at: Time,
    pub expires_at: Time,
}

impl<M: Money> Pool<M> {
    /// The account's own balance with `remaining` free of holds.
    pub fn own_balance(remaining: M) -> Pool<M> {
        Pool {
            id: OWN_BALANCE,
            remaining,
            priority: OWN_BALANCE_PRIORITY,
            category: Category::Paid,
            effective_at: ALWAYS,
            expires_at: NEVER,
        }
    }

    pub fn in_effect(&self, now: Time) -> bool {
        self.effective_at <= now && now < self.expires_at
    }

    fn burn_key(&self) -> (i32, Time, Category, Time, i64) {
        (self.priority, self.expires_at, self.category, self.effective_at, self.id)
    }
}

/// The burn order of two pools.
pub fn burn_order<M: Money>(a: &Pool<M>, b: &Pool<M>) -> Ordering {
    a.burn_key().cmp(&b.burn_key())
}

/// The figures of an account that every spending decision starts from, once what has
/// lapsed is taken out (see [`lapsed`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Figures<M> {
    /// The money in effect: the ledger's sum less grants not yet in effect.
    pub balance: M,
    /// What active holds reserve.
    pub held: M,
    pub min_balance: M,
}

impl<M: Money> Figures<M> {
    /// What the account can still spend: balance − held − min_balance (may be negative
    /// after the floor was raised above it).
    pub fn available(&self) -> M {
        self.balance.clone() - self.held.clone() - self.min_balance.clone()
    }

    pub fn can_pay(&self, cost: &M) -> bool {
        *cost <= self.available()
    }
}

/// Part of a decision: `amount` taken from (or given back to) pool `pool`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draw<M> {
    pub pool: i64,
    pub amount: M,
}

/// The refusal of a spend the account cannot cover; PT402.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shortfall<M> {
    pub available: M,
}

/// Which pools pay `cost` (a charge, or what a hold reserves): the pools in effect with
/// money left, in burn order, each as far as it goes; what they cannot cover is an
/// overdraft of the own balance, allowed down to the floor. `pools` must hold every pool
/// in effect with money left up to the one that completes the cost (the rest may be left
/// out), and the own balance. One draw per pool, in burn order.
pub fn draw<M: Money>(figures: &Figures<M>, cost: &M, pools: &[Pool<M>], now: Time) -> Result<Vec<Draw<M>>, Shortfall<M>> {
    if !figures.can_pay(cost) {
        return Err(Shortfall { available: figures.available() });
    }
    let mut ordered: Vec<&Pool<M>> = pools.iter().filter(|pool| pool.in_effect(now)).collect();
    ordered.sort_by(|a, b| burn_order(a, b));
    let mut draws: Vec<Draw<M>> = Vec::new();
    let mut need = cost.clone();
    for pool in ordered {
        if !need.is_positive() {
            break;
        }
        if pool.remaining.is_positive() {
            let amount = if pool.remaining < need { pool.remaining.clone() } else { need.clone() };
            need = need - amount.clone();
            draws.push(Draw { pool: pool.id, amount });
        }
    }
    if need.is_positive() {
        match draws.iter_mut().find(|draw| draw.pool == OWN_BALANCE) {
            Some(own) => own.amount = own.amount.clone() + need,
            None => draws.push(Draw { pool: OWN_BALANCE, amount: need }),
        }
    }
    Ok(draws)
}

/// Whether the pools given to [`draw`] are enough for it: they cover `cost` with money
/// in effect, or they are every pool there is. A writer that reads pools in burn order
/// reads until this holds.
pub fn covers<M: Money>(cost: &M, pools: &[Pool<M>], now: Time) -> bool {
    let mut covered = M::zero();
    for pool in pools.iter().filter(|pool| pool.in_effect(now) && pool.remaining.is_positive()) {
        covered = covered + pool.remaining.clone();
        if covered >= *cost {
            return true;
        }
    }
    false
}

/// What a grant of `amount` does when the own balance is `own_remaining` free of holds:
/// an overdraft is repaid first, and the grant keeps the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted<M> {
    pub repaid: M,
    pub remaining: M,
}

pub fn grant<M: Money>(own_remaining: &M, amount: &M) -> Granted<M> {
    let debt = if own_remaining.is_positive() || *own_remaining == M::zero() {
        M::zero()
    } else {
        M::zero() - own_remaining.clone()
    };
    let repaid = if debt < *amount { debt } else { amount.clone() };
    Granted { remaining: amount.clone() - repaid.clone(), repaid }
}

/// The state of the pool a refund gives back to, when the refund is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolState {
    /// Open, or used up but not past its expiry: it takes the money back (a used-up one
    /// opens again).
    Spendable,
    /// Expired or voided (or used up and past its expiry): what comes back to it leaves
    /// again at once, unless the refund reissues it.
    Closed,
}

/// Where a refund's money goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundTo {
    /// Back into the pool the entry was drawn from.
    Pool,
    /// Into the pool, then out again with an expiry entry: the balance does not change.
    PoolThenExpiry,
    /// Into a new grant of the closed pool's category and priority, without expiry.
    Reissued,
}

/// What a refund of an entry that took `charged` (of which `refunded` already came back)
/// gives back: `asked`, or the rest when `None`. Refusal: what is left to refund, when the
/// refund asks for more or nothing is left.
pub fn refund<M: Money>(charged: &M, refunded: &M, asked: Option<&M>) -> Result<M, M> {
    let refundable = charged.clone() - refunded.clone();
    match asked {
        None if refundable.is_positive() => Ok(refundable),
        Some(asked) if asked.is_positive() && *asked <= refundable => Ok(asked.clone()),
        _ => Err(refundable),
    }
}

/// Where a refund to a pool in `state` goes, reissued or not.
pub fn refund_to(state: PoolState, reissue: bool) -> RefundTo {
    match (state, reissue) {
        (PoolState::Spendable, _) => RefundTo::Pool,
        (PoolState::Closed, false) => RefundTo::PoolThenExpiry,
        (PoolState::Closed, true) => RefundTo::Reissued,
    }
}

/// How a capture treats an amount beyond what the hold still reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overage {
    /// PT422.
    Refuse,
    /// The excess is charged like a plain charge (PT402 if it cannot be paid).
    Charge,
}

impl Overage {
    pub fn parse(text: &str) -> Option<Overage> {
        match text {
            "refuse" => Some(Overage::Refuse),
            "charge" => Some(Overage::Charge),
            _ => None,
        }
    }
}

/// Where a hold stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldStatus {
    Active,
    Captured,
    Released,
    Expired,
}

impl HoldStatus {
    pub fn parse(text: &str) -> Option<HoldStatus> {
        match text {
            "active" => Some(HoldStatus::Active),
            "captured" => Some(HoldStatus::Captured),
            "released" => Some(HoldStatus::Released),
            "expired" => Some(HoldStatus::Expired),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HoldStatus::Active => "active",
            HoldStatus::Captured => "captured",
            HoldStatus::Released => "released",
            HoldStatus::Expired => "expired",
        }
    }
}

/// A hold as a decision needs it: what it still reserves, per pool, in the burn order it
/// was drawn in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold<M> {
    pub status: HoldStatus,
    pub expires_at: Time,
    pub parts: Vec<Draw<M>>,
}

/// Why a hold cannot be captured or released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HoldRefusal<M> {
    /// PT409: it was captured in full or released already.
    Finalized(HoldStatus),
    /// PT410: it expired (whether or not its expiry entry was written yet).
    Expired,
    /// PT422: more than it still reserves.
    Exceeds { remaining: M },
}

impl<M: Money> Hold<M> {
    pub fn remaining(&self) -> M {
        self.parts.iter().fold(M::zero(), |sum, part| sum + part.amount.clone())
    }

    /// An active hold past its expiry: it no longer counts, and its expiry is due.
    pub fn lapsed(&self, now: Time) -> bool {
        self.status == HoldStatus::Active && self.expires_at <= now
    }

    /// Whether it can still be captured, released or extended now.
    pub fn resolvable(&self, now: Time) -> Result<(), HoldRefusal<M>> {
        match self.status {
            HoldStatus::Active if self.lapsed(now) => Err(HoldRefusal::Expired),
            HoldStatus::Active => Ok(()),
            HoldStatus::Expired => Err(HoldRefusal::Expired),
            finished => Err(HoldRefusal::Finalized(finished)),
        }
    }

    /// What capturing `amount` (None: all it still reserves) does: the parts taken (in
    /// burn order), the parts given back to their pools when `last`, and the excess to
    /// charge when the overage is charged.
    pub fn capture(&self, amount: Option<&M>, last: bool, overage: Overage, now: Time) -> Result<Captured<M>, HoldRefusal<M>> {
        self.resolvable(now)?;
        let remaining = self.remaining();
        let amount = amount.cloned().unwrap_or_else(|| remaining.clone());
        let excess = if amount > remaining {
            match overage {
                Overage::Refuse => return Err(HoldRefusal::Exceeds { remaining }),
                Overage::Charge => amount.clone() - remaining.clone(),
            }
        } else {
            M::zero()
        };
        let mut need = if amount > remaining { remaining } else { amount };
        let mut taken = Vec::new();
        let mut left = Vec::new();
        for part in &self.parts {
            let take = if part.amount < need { part.amount.clone() } else { need.clone() };
            need = need - take.clone();
            let rest = part.amount.clone() - take.clone();
            if take.is_positive() {
                taken.push(Draw { pool: part.pool, amount: take });
            }
            if rest.is_positive() {
                left.push(Draw { pool: part.pool, amount: rest });
            }
        }
        let (released, still_held) = if last { (left, Vec::new()) } else { (Vec::new(), left) };
        let status = if !last {
            HoldStatus::Active
        } else if released.is_empty() {
            HoldStatus::Captured
        } else if taken.is_empty() && !excess.is_positive() {
            HoldStatus::Released
        } else {
            HoldStatus::Captured
        };
        Ok(Captured { taken, released, still_held, excess, status })
    }
}

/// The decision of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured<M> {
    pub taken: Vec<Draw<M>>,
    pub released: Vec<Draw<M>>,
    /// What the hold reserves after it (empty when it was the last capture).
    pub still_held: Vec<Draw<M>>,
    pub excess: M,
    pub status: HoldStatus,
}

impl<M: Money> Captured<M> {
    pub fn captured(&self) -> M {
        sum(&self.taken) + self.excess.clone()
    }

    pub fn released_total(&self) -> M {
        sum(&self.released)
    }
}

pub fn sum<M: Money>(draws: &[Draw<M>]) -> M {
    draws.iter().fold(M::zero(), |total, draw| total + draw.amount.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl Money for i128 {
        fn zero() -> Self {
            0
        }
    }

    const NOW: Time = 1_000_000;

    fn grant_pool(id: i64, remaining: i128, priority: i32, category: Category, expires_at: Time) -> Pool<i128> {
        Pool { id, remaining, priority, category, effective_at: 0, expires_at }
    }

    fn figures(pools: &[Pool<i128>], held: i128, min_balance: i128) -> Figures<i128> {
        let balance = pools.iter().filter(|p| p.in_effect(NOW)).map(|p| p.remaining).sum::<i128>() + held;
        Figures { balance, held, min_balance }
    }

    fn drawn(draws: &[Draw<i128>]) -> Vec<(i64, i128)> {
        draws.iter().map(|d| (d.pool, d.amount)).collect()
    }

    #[test]
    fn a_refund_gives_back_at_most_what_is_left_of_the_charge() {
        let cases: [(i128, i128, Option<i128>, Result<i128, i128>); 7] = [
            (10, 0, None, Ok(10)),
            (10, 4, None, Ok(6)),
            (10, 4, Some(6), Ok(6)),
            (10, 4, Some(7), Err(6)),
            (10, 10, None, Err(0)),
            (10, 10, Some(1), Err(0)),
            (10, 0, Some(0), Err(10)),
        ];
        for (charged, refunded, asked, expected) in cases {
            assert_eq!(refund(&charged, &refunded, asked.as_ref()), expected, "{charged} {refunded} {asked:?}");
        }
        assert_eq!(refund_to(PoolState::Spendable, true), RefundTo::Pool);
        assert_eq!(refund_to(PoolState::Closed, false), RefundTo::PoolThenExpiry);
        assert_eq!(refund_to(PoolState::Closed, true), RefundTo::Reissued);
    }

    proptest! {
        /// However a charge is refunded, piece by piece, the refunds never add up to more
        /// than it took, and asking for the rest always empties it.
        #[test]
        fn refunds_never_exceed_the_charge(charged in 1i128..1_000, asks in proptest::collection::vec(proptest::option::of(0i128..400), 0..12)) {
            let mut refunded = 0;
            for asked in asks {
                if let Ok(given) = refund(&charged, &refunded, asked.as_ref()) {
                    prop_assert!(given > 0);
                    refunded += given;
                }
                prop_assert!(refunded <= charged);
            }
            if let Ok(rest) = refund(&charged, &refunded, None) {
                prop_assert_eq!(refunded + rest, charged);
            }
        }
    }

    #[test]
    fn burn_order_is_priority_then_expiry_then_category_then_effective_then_id() {
        let base = grant_pool(9, 1, 50, Category::Paid, NEVER);
        let cases = [
            (Pool { priority: 10, ..base.clone() }, base.clone()),
            (Pool { expires_at: 5_000, ..base.clone() }, base.clone()),
            (Pool { category: Category::Promotional, ..base.clone() }, base.clone()),
            (Pool { effective_at: -1, ..base.clone() }, base.clone()),
            (Pool { id: 3, ..base.clone() }, base.clone()),
            (Pool::own_balance(1), base.clone()),
        ];
        for (first, second) in cases {
            assert_eq!(burn_order(&first, &second), Ordering::Less, "{first:?} before {second:?}");
            assert_eq!(burn_order(&second, &first), Ordering::Greater);
        }
    }

    #[test]
    fn draws_promotional_and_expiring_credit_before_the_own_balance() {
        let pools = [
            Pool::own_balance(100),
            grant_pool(1, 30, 50, Category::Promotional, NEVER),
            grant_pool(2, 20, 50, Category::Paid, 2_000_000),
            grant_pool(3, 50, 10, Category::Paid, NEVER),
        ];
        let f = figures(&pools, 0, 0);
        assert_eq!(drawn(&draw(&f, &90, &pools, NOW).unwrap()), [(3, 50), (2, 20), (1, 20)]);
        assert_eq!(drawn(&draw(&f, &200, &pools, NOW).unwrap()), [(3, 50), (2, 20), (1, 30), (0, 100)]);
        assert_eq!(draw(&f, &201, &pools, NOW), Err(Shortfall { available: 200 }));
    }

    #[test]
    fn pools_out_of_effect_are_not_drawn() {
        let pools = [
            Pool::own_balance(10),
            Pool { effective_at: NOW + 1, ..grant_pool(1, 30, 0, Category::Paid, NEVER) },
            grant_pool(2, 30, 0, Category::Paid, NOW),
        ];
        let f = figures(&pools, 0, 0);
        assert_eq!(f.balance, 10);
        assert_eq!(drawn(&draw(&f, &10, &pools, NOW).unwrap()), [(0, 10)]);
        assert!(draw(&f, &11, &pools, NOW).is_err());
    }

    #[test]
    fn an_overdraft_comes_last_and_only_from_the_own_balance() {
        let pools = [Pool::own_balance(5), grant_pool(1, 10, 90, Category::Paid, NEVER)];
        let f = figures(&pools, 0, -20);
        // The own balance burns first (priority 50), the grant next, then the overdraft.
        assert_eq!(drawn(&draw(&f, &30, &pools, NOW).unwrap()), [(0, 20), (1, 10)]);
        assert!(draw(&f, &36, &pools, NOW).is_err());
    }

    #[test]
    fn holds_count_against_a_spend() {
        let pools = [Pool::own_balance(60)];
        let f = Figures { balance: 100, held: 40, min_balance: 0 };
        assert_eq!(f.available(), 60);
        assert!(draw(&f, &60, &pools, NOW).is_ok());
        assert_eq!(draw(&f, &61, &pools, NOW), Err(Shortfall { available: 60 }));
    }

    #[test]
    fn a_positive_floor_is_never_spent() {
        let pools = [Pool::own_balance(50), grant_pool(1, 50, 0, Category::Promotional, NEVER)];
        let f = figures(&pools, 0, 30);
        assert_eq!(drawn(&draw(&f, &70, &pools, NOW).unwrap()), [(1, 50), (0, 20)]);
        assert!(draw(&f, &71, &pools, NOW).is_err());
    }

    #[test]
    fn covers_needs_money_in_effect() {
        let pools = [grant_pool(1, 5, 0, Category::Paid, NEVER), grant_pool(2, 5, 0, Category::Paid, NOW)];
        assert!(covers(&5, &pools, NOW));
        assert!(!covers(&6, &pools, NOW));
    }

    #[test]
    fn a_grant_repays_an_overdraft_first() {
        let cases = [(-30, 50, 30, 20), (-30, 10, 10, 0), (0, 10, 0, 10), (40, 10, 0, 10)];
        for (own, amount, repaid, remaining) in cases {
            assert_eq!(grant(&own, &amount), Granted { repaid, remaining }, "own {own}, grant {amount}");
        }
    }

    fn hold(parts: &[(i64, i128)]) -> Hold<i128> {
        Hold {
            status: HoldStatus::Active,
            expires_at: NOW + 10,
            parts: parts.iter().map(|&(pool, amount)| Draw { pool, amount }).collect(),
        }
    }

    #[test]
    fn captures_take_parts_in_order_and_release_the_rest() {
        let h = hold(&[(3, 5), (0, 10)]);
        let c = h.capture(Some(&7), true, Overage::Refuse, NOW).unwrap();
        assert_eq!((drawn(&c.taken), drawn(&c.released), c.excess, c.status), (vec![(3, 5), (0, 2)], vec![(0, 8)], 0, HoldStatus::Captured));
        let c = h.capture(Some(&7), false, Overage::Refuse, NOW).unwrap();
        assert_eq!((drawn(&c.released), drawn(&c.still_held), c.status), (vec![], vec![(0, 8)], HoldStatus::Active));
        let c = h.capture(None, true, Overage::Refuse, NOW).unwrap();
        assert_eq!((c.captured(), c.released_total(), c.status), (15, 0, HoldStatus::Captured));
        let c = h.capture(Some(&0), true, Overage::Refuse, NOW).unwrap();
        assert_eq!((c.captured(), c.released_total(), c.status), (0, 15, HoldStatus::Released));
        assert_eq!(h.capture(Some(&16), true, Overage::Refuse, NOW), Err(HoldRefusal::Exceeds { remaining: 15 }));
        let c = h.capture(Some(&16), true, Overage::Charge, NOW).unwrap();
        assert_eq!((c.captured(), c.excess, c.status), (16, 1, HoldStatus::Captured));
    }

    #[test]
    fn a_hold_resolves_once_and_not_after_expiry() {
        let mut h = hold(&[(0, 10)]);
        assert_eq!(h.capture(None, true, Overage::Refuse, NOW + 10), Err(HoldRefusal::Expired));
        assert!(h.lapsed(NOW + 10) && !h.lapsed(NOW + 9));
        for status in [HoldStatus::Captured, HoldStatus::Released] {
            h.status = status;
            assert_eq!(h.resolvable(NOW), Err(HoldRefusal::Finalized(status)));
        }
        h.status = HoldStatus::Expired;
        assert_eq!(h.resolvable(NOW), Err(HoldRefusal::Expired));
    }

    fn any_pool() -> impl Strategy<Value = Pool<i128>> {
        (1i64..1000, 0i128..1000, 0i32..=100, any::<bool>(), prop_oneof![Just(NEVER), NOW - 5..NOW + 5], NOW - 5..NOW + 5)
            .prop_map(|(id, remaining, priority, paid, expires_at, effective_at)| Pool {
                id,
                remaining,
                priority,
                category: if paid { Category::Paid } else { Category::Promotional },
                effective_at,
                expires_at,
            })
    }

    fn any_account() -> impl Strategy<Value = (Vec<Pool<i128>>, i128, i128, i128)> {
        (prop::collection::vec(any_pool(), 0..12), -500i128..1000, 0i128..300, -300i128..300).prop_map(
            |(mut pools, own, held, min_balance)| {
                pools.sort_by_key(|p| p.id);
                pools.dedup_by_key(|p| p.id);
                pools.push(Pool::own_balance(own));
                (pools, held, min_balance, own)
            },
        )
    }

    proptest! {
        #[test]
        fn a_draw_pays_exactly_never_below_the_floor_in_burn_order(
            (pools, held, min_balance, _own) in any_account(),
            cost in 0i128..3000,
        ) {
            let f = figures(&pools, held, min_balance);
            match draw(&f, &cost, &pools, NOW) {
                Err(Shortfall { available }) => {
                    prop_assert!(cost > available);
                    prop_assert_eq!(available, f.available());
                }
                Ok(draws) => {
                    // Σ draws = cost = the balance's change, and the floor holds after.
                    prop_assert_eq!(sum(&draws), cost);
                    prop_assert!(f.balance - cost - f.held >= f.min_balance);
                    // One draw per pool, each from a pool in effect, within what a grant has.
                    let mut seen = std::collections::HashSet::new();
                    for d in &draws {
                        prop_assert!(seen.insert(d.pool));
                        prop_assert!(d.amount > 0);
                        let pool = pools.iter().find(|p| p.id == d.pool).unwrap();
                        prop_assert!(pool.in_effect(NOW));
                        if d.pool != OWN_BALANCE {
                            prop_assert!(d.amount <= pool.remaining);
                        }
                    }
                    // Burn order: a pool is drawn from only once every pool before it that
                    // had money is empty; an overdraft only once every grant is.
                    let mut ordered: Vec<&Pool<i128>> = pools.iter().filter(|p| p.in_effect(NOW) && p.remaining > 0).collect();
                    ordered.sort_by(|a, b| burn_order(a, b));
                    let taken = |id: i64| draws.iter().find(|d| d.pool == id).map_or(0, |d| d.amount);
                    let mut later_drawn = false;
                    for pool in ordered.iter().rev() {
                        if later_drawn {
                            prop_assert!(taken(pool.id) >= pool.remaining, "{:?} not emptied before a later pool", pool);
                        }
                        later_drawn |= taken(pool.id) > 0;
                    }
                    let own = pools.iter().find(|p| p.id == OWN_BALANCE).unwrap();
                    if taken(OWN_BALANCE) > own.remaining.max(0) {
                        for pool in &ordered {
                            prop_assert!(taken(pool.id) >= pool.remaining);
                        }
                    }
                }
            }
        }

        #[test]
        fn a_draw_is_deterministic_whatever_order_the_pools_come_in(
            (pools, held, min_balance, _own) in any_account(),
            cost in 0i128..3000,
            seed in any::<u64>(),
        ) {
            let f = figures(&pools, held, min_balance);
            let mut shuffled = pools.clone();
            let n = shuffled.len();
            for i in 0..n {
                shuffled.swap(i, (seed.rotate_left(i as u32) as usize) % n);
            }
            prop_assert_eq!(draw(&f, &cost, &pools, NOW), draw(&f, &cost, &shuffled, NOW));
        }

        #[test]
        fn a_capture_moves_exactly_what_the_hold_reserved(
            parts in prop::collection::vec((0i64..20, 1i128..100), 1..6),
            amount in prop::option::of(0i128..400),
            last in any::<bool>(),
            charge_overage in any::<bool>(),
        ) {
            let h = hold(&parts);
            let overage = if charge_overage { Overage::Charge } else { Overage::Refuse };
            match h.capture(amount.as_ref(), last, overage, NOW) {
                Err(HoldRefusal::Exceeds { remaining }) => {
                    prop_assert!(!charge_overage && amount.unwrap() > remaining);
                }
                Err(other) => prop_assert!(false, "{:?}", other),
                Ok(c) => {
                    let asked = amount.unwrap_or(h.remaining());
                    prop_assert_eq!(c.captured(), asked);
                    prop_assert_eq!(sum(&c.taken) + c.released_total() + sum(&c.still_held), h.remaining());
                    prop_assert!(last || c.released.is_empty());
                    prop_assert!(!last || c.still_held.is_empty());
                    prop_assert_eq!(c.status == HoldStatus::Active, !last);
                }
            }
        }

        #[test]
        fn a_grant_never_creates_or_loses_money(own in -1000i128..1000, amount in 0i128..1000) {
            let g = grant(&own, &amount);
            prop_assert_eq!(g.repaid + g.remaining, amount);
            prop_assert!(g.repaid >= 0 && g.remaining >= 0);
            prop_assert!(own + g.repaid <= 0 || g.repaid == 0);
        }
    }
}
