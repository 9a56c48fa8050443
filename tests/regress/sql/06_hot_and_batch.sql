-- Hot accounts and charge_many, as SQL in and text out.
\set VERBOSITY sqlstate

-- A hot account spreads what it can spend over its slots; the floor stays on the row.
SELECT credits.create_account('busy', 100, min_balance => -20);
SELECT credits.set_slots('busy', 4);
SELECT slot, available FROM credits.account_slots WHERE account = 'busy' ORDER BY slot;
SELECT balance, slots FROM credits.accounts WHERE account = 'busy';
SELECT credits.balance('busy');

-- A charge one slot can pay takes it from a slot: no balance_after in its entry.
SELECT credits.charge('busy', 10);
-- One no slot can pay (none has more than 30) but the total can: gathered, then spread.
SELECT credits.charge('busy', 50);
SELECT slot, available FROM credits.account_slots WHERE account = 'busy' ORDER BY slot;
-- More than the total down to the floor: the usual 402, with the whole balance.
SELECT credits.charge('busy', 60.01);
\set VERBOSITY terse
SELECT credits.charge('busy', 60.01);
\set VERBOSITY sqlstate
SELECT credits.charge('busy', 60);
SELECT credits.balance('busy'), credits.can_afford('busy', 0.01);
SELECT kind, amount, balance_after FROM credits.ledger WHERE account = 'busy' ORDER BY id;

-- Recharges land on the row and are spread at once.
SELECT credits.recharge('busy', 40);
SELECT slot, available FROM credits.account_slots WHERE account = 'busy' ORDER BY slot;
-- Back to a plain account: the balance does not move.
SELECT credits.set_slots('busy', 0);
SELECT balance, slots FROM credits.accounts WHERE account = 'busy';
SELECT count(*) FROM credits.account_slots WHERE account = 'busy';

-- Slots: between 0 and 64, and written only by pg_credits.
SELECT credits.set_slots('busy', 65);
SELECT credits.set_slots('no such account', 2);
SELECT credits.set_slots('busy', 2);
UPDATE credits.account_slots SET available = available + 1;
UPDATE credits.accounts SET slots = 3 WHERE account = 'busy';
DELETE FROM credits.accounts WHERE account = 'busy';

-- charge_many: one row per item, in order; an account named twice pays twice.
SELECT credits.create_account('small', 5);
SELECT item, account, cost, status, balance, error->>'name' AS error
  FROM credits.charge_many(ARRAY['small', 'busy', 'small', 'ghost', 'small'],
                           ARRAY[2, 1, 2, 1, 2]::numeric[]);
-- The failed item's payload is the one charge would have raised.
SELECT jsonb_pretty(error - 'readable_message')
  FROM credits.charge_many(ARRAY['small'], ARRAY[2]::numeric[]) WHERE status = 'failed';
-- Idempotency keys: replayed within the batch and across calls, refused for another cost.
SELECT credits.recharge('small', 10);
SELECT item, status, balance, error->>'name' AS error
  FROM credits.charge_many(ARRAY['small', 'small', 'small'], ARRAY[1, 1, 2]::numeric[],
                           ARRAY['usage-1', 'usage-1', 'usage-1']);
SELECT item, status, balance
  FROM credits.charge_many(ARRAY['small'], ARRAY[1]::numeric[], ARRAY['usage-1']);
-- The same for a hot account (its slot entries record no balance: the current one is shown).
SELECT item, status, balance
  FROM credits.charge_many(ARRAY['busy', 'busy'], ARRAY[1, 1]::numeric[], ARRAY['usage-2', 'usage-2']);
SELECT item, status, balance
  FROM credits.charge_many(ARRAY['busy'], ARRAY[1]::numeric[], ARRAY['usage-2']);
-- All or nothing: the first failure is raised with its SQLSTATE and nothing is charged.
SELECT * FROM credits.charge_many(ARRAY['small', 'small'], ARRAY[1, 100]::numeric[], all_or_nothing => true);
SELECT credits.balance('small');
-- Bad arguments fail the whole call.
SELECT * FROM credits.charge_many(ARRAY['small'], ARRAY[1, 2]::numeric[]);
SELECT * FROM credits.charge_many(ARRAY['small', NULL], ARRAY[1, 2]::numeric[]);
SELECT * FROM credits.charge_many(ARRAY['small'], ARRAY[-1]::numeric[]);
