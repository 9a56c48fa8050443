-- Holds and grants, as SQL in and text out. Times vary from run to run, so they are
-- shown as facts about them (set or not, how far apart), never as they are.
\set VERBOSITY sqlstate

-- A hold reserves without charging: the balance stays, what is available drops.
SELECT credits.create_account('llm', 100);
SELECT hold_id, amount, expires_at > now() AS expires, available FROM credits.hold('llm', 30, reason => 'gpt call');
SELECT credits.balance('llm'), credits.available('llm');
-- It counts against every charge: 70 are free, 71 are not.
SELECT credits.charge('llm', 71);
SELECT credits.can_afford('llm', 70), credits.can_afford('llm', 71);
-- And against a direct write, through the guard trigger.
UPDATE credits.accounts SET balance = 20 WHERE account = 'llm';
-- Capture what the call cost; the rest is released in the same statement.
SELECT * FROM credits.capture(1, 12.5);
SELECT credits.balance('llm'), credits.available('llm');
-- A hold resolves once.
SELECT * FROM credits.capture(1, 1);
SELECT * FROM credits.release(1);
SELECT kind, amount, balance_after, hold_id, held_amount FROM credits.ledger WHERE account = 'llm' ORDER BY id;

-- Partial captures leave the rest held; more than remains is PT422 unless charged.
SELECT hold_id FROM credits.hold('llm', 20);
SELECT hold_id, captured, released, status, balance FROM credits.capture(2, 5, final => false);
SELECT account, amount, captured, remaining FROM credits.active_holds;
SELECT * FROM credits.capture(2, 16);
SELECT hold_id, captured, released, status, balance FROM credits.capture(2, 16, overage => 'charge');
SELECT credits.balance('llm'), credits.available('llm');

-- Replays by key return the original result; a key reused for something else is PT409.
SELECT hold_id, amount, available FROM credits.hold('llm', 10, idempotency_key => 'call-9');
SELECT hold_id, amount, available FROM credits.hold('llm', 10, idempotency_key => 'call-9');
SELECT hold_id, amount, available FROM credits.hold('llm', 11, idempotency_key => 'call-9');
SELECT * FROM credits.capture(3, 4, idempotency_key => 'cap-9');
SELECT * FROM credits.capture(3, 4, idempotency_key => 'cap-9');
SELECT * FROM credits.capture(3, 5, idempotency_key => 'cap-9');

-- An expired hold stops counting at once, before its expiry entry is written.
SELECT hold_id FROM credits.hold('llm', 40, ttl => '1 millisecond');
SELECT pg_sleep(0.05);
SELECT credits.available('llm');
SELECT * FROM credits.capture(4);
SELECT credits.expire_holds();
SELECT kind, held_amount FROM credits.ledger WHERE account = 'llm' AND hold_id = 4 ORDER BY id;
-- ttl: positive, at most credits.max_hold_ttl (7 days by default); NULL: no expiry.
SELECT hold_id FROM credits.hold('llm', 1, ttl => '8 days');
SELECT hold_id FROM credits.hold('llm', 1, ttl => '-1 minute');
SELECT hold_id, expires_at FROM credits.hold('llm', 1, ttl => NULL);
SELECT credits.extend_hold(5, '1 hour') > now() AS extended;
SELECT * FROM credits.release(5, reason => 'call cancelled');
SELECT kind, amount, held_amount, reason FROM credits.ledger WHERE hold_id = 5 ORDER BY id;
SELECT * FROM credits.capture(999);
-- Every account: balance = sum(amount) and held = sum(held_amount).
SELECT a.account, a.balance = sum(l.amount) AS balance_reconciles, a.held = coalesce(sum(l.held_amount), 0) AS held_reconciles
  FROM credits.accounts a JOIN credits.ledger l USING (account) WHERE a.slots = 0
 GROUP BY a.account, a.balance, a.held ORDER BY 1;

-- Grants burn in one order: priority, then the soonest expiry, then promotional before
-- paid, then effective_at, then the grant id. The own balance (recharges) is a paid
-- grant of priority 50 that never expires.
SELECT credits.recharge('team', 50);
SELECT grant_id, remaining, balance FROM credits.grant('team', 10, 'promotional', expires_at => now() + interval '30 days');
SELECT grant_id, remaining, balance FROM credits.grant('team', 10, 'paid', expires_at => now() + interval '30 days');
SELECT grant_id, remaining, balance FROM credits.grant('team', 10, 'promotional');
SELECT grant_id, remaining, balance FROM credits.grant('team', 5, 'paid', priority => 10);
SELECT credits.charge('team', 22);
SELECT grant_id, amount, remaining, category, priority, status FROM credits.grants WHERE account = 'team' ORDER BY grant_id;
SELECT kind, amount, balance_after, grant_id FROM credits.ledger WHERE account = 'team' ORDER BY id;
-- A charge spanning pools replays by its key as one charge.
SELECT credits.charge('team', 10, idempotency_key => 'span');
SELECT credits.charge('team', 10, idempotency_key => 'span');
SELECT credits.charge('team', 11, idempotency_key => 'span');
-- The floor applies to all of it.
SELECT credits.charge('team', 54);

-- Expiry removes what a grant has left, from the moment it expires.
SELECT credits.set_grant_expiry(3, clock_timestamp());
SELECT grant_id, remaining, status FROM credits.grants WHERE grant_id = 3;
-- A grant used up is closed as depleted: it can no longer expire or be voided.
SELECT grant_id, remaining, status FROM credits.grants WHERE grant_id = 2;
SELECT credits.set_grant_expiry(2, clock_timestamp());
SELECT kind, amount, grant_id FROM credits.ledger WHERE account = 'team' AND kind = 'expiry';
SELECT credits.balance('team');
-- A grant not in effect yet does not count.
SELECT grant_id, remaining, balance FROM credits.grant('team', 100, effective_at => now() + interval '1 day');
SELECT credits.balance('team'), credits.available('team');
SELECT grant_id, status FROM credits.grants WHERE account = 'team' AND status = 'pending';
-- Voiding takes back what is left.
SELECT * FROM credits.void_grant(5, 'support reversal');
SELECT * FROM credits.void_grant(5);
SELECT * FROM credits.void_grant(999);

-- A held part of a grant stays with its hold when the grant expires, and expires when
-- the hold gives it back.
SELECT grant_id FROM credits.grant('burst', 10, 'promotional', priority => 0);
SELECT hold_id, available FROM credits.hold('burst', 4);
SELECT credits.set_grant_expiry(6, clock_timestamp());
SELECT grant_id, remaining, held, status FROM credits.grants WHERE grant_id = 6;
SELECT credits.balance('burst'), credits.available('burst');
SELECT hold_id, captured, released, status, balance FROM credits.capture(6, 1);
SELECT credits.balance('burst'), credits.available('burst');
SELECT kind, amount, grant_id, held_amount FROM credits.ledger WHERE account = 'burst' ORDER BY id;

-- A grant to an account in overdraft repays the debt first.
SELECT credits.create_account('debtor', 0, min_balance => -50);
SELECT credits.charge('debtor', 30);
SELECT grant_id, remaining, balance FROM credits.grant('debtor', 40, 'promotional');
SELECT kind, amount, balance_after, grant_id FROM credits.ledger WHERE account = 'debtor' ORDER BY id;

-- Hot accounts take no grants, and accounts with grants cannot be made hot.
SELECT credits.create_account('hot', 10);
SELECT credits.set_slots('hot', 2);
SELECT grant_id FROM credits.grant('hot', 5);
SELECT credits.set_slots('team', 2);
-- Holds on a hot account leave the held money on the account row, outside the slots.
SELECT hold_id, available FROM credits.hold('hot', 6);
SELECT slot, available FROM credits.account_slots WHERE account = 'hot' ORDER BY slot;
SELECT credits.charge('hot', 5);
SELECT hold_id, captured, balance FROM credits.capture(7);
SELECT credits.balance('hot'), credits.available('hot');

-- Bad terms are refused before anything is written.
SELECT grant_id FROM credits.grant('team', 0);
SELECT grant_id FROM credits.grant('team', 1, 'free');
SELECT grant_id FROM credits.grant('team', 1, priority => 101);
SELECT grant_id FROM credits.grant('team', 1, expires_at => now() - interval '1 day');
SELECT grant_id FROM credits.grant('team', 1, effective_at => now() + interval '2 days', expires_at => now() + interval '1 day');
SELECT hold_id FROM credits.hold('team', 0);
SELECT * FROM credits.capture(6, overage => 'maybe');

-- A hold captured in full, not finally, stays active with nothing left; its release
-- writes an entry all the same, so that its key replays.
SELECT credits.create_account('spent', 5);
SELECT hold_id AS spent_hold FROM credits.hold('spent', 2) \gset
SELECT captured, released, status FROM credits.capture(:spent_hold, 2, final => false);
SELECT captured, released, status FROM credits.release(:spent_hold, idempotency_key => 'release-spent');
SELECT captured, released, status FROM credits.release(:spent_hold, idempotency_key => 'release-spent');
SELECT kind, amount, held_amount, idempotency_key FROM credits.ledger WHERE account = 'spent' ORDER BY id;

-- Grants and holds change only through pg_credits.
UPDATE credits.account_grants SET remaining = 1000 WHERE grant_id = 2;
DELETE FROM credits.holds WHERE hold_id = 1;
UPDATE credits.accounts SET held = 0 WHERE account = 'llm';
-- Per grant, remaining + held = the sum of its entries; per account, both sums hold.
SELECT g.grant_id, g.remaining + g.held = coalesce(sum(l.amount), 0) AS reconciles
  FROM credits.account_grants g LEFT JOIN credits.ledger l ON l.account = g.account AND l.grant_id = g.grant_id
 WHERE g.grant_id <> 0 GROUP BY g.grant_id, g.remaining, g.held ORDER BY 1;
SELECT a.account, a.balance = sum(l.amount) AS balance_reconciles, a.held = coalesce(sum(l.held_amount), 0) AS held_reconciles
  FROM credits.accounts a JOIN credits.ledger l USING (account) WHERE a.slots = 0
 GROUP BY a.account, a.balance, a.held ORDER BY 1;
