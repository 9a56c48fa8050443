-- The public contract of pg_credits, as SQL in and text out.
CREATE EXTENSION pg_credits;
\set VERBOSITY sqlstate

-- Opening an account records its initial balance as the first ledger entry.
SELECT credits.create_account('acme', 10.00, low_balance_threshold => 2);
SELECT credits.charge('acme', 2.50, 'GET /v1/search');
SELECT credits.recharge('acme', 5, 'invoice 2026-11');
SELECT credits.balance('acme');
SELECT credits.can_afford('acme', 12.50), credits.can_afford('acme', 12.51);
SELECT credits.charge('acme', 12.50);

-- The 402: SQLSTATE PT402, the fixed message, a JSON DETAIL and a HINT.
\set VERBOSITY verbose
SELECT credits.charge('acme', 0.75);
\set VERBOSITY sqlstate
SELECT credits.charge('acme', 0.75);

-- The DETAIL parses as JSON as it comes.
\set VERBOSITY terse
DO $$
DECLARE detail text;
BEGIN
    PERFORM credits.charge('acme', 0.75);
EXCEPTION WHEN SQLSTATE 'PT402' THEN
    GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'shortfall % of %', detail::jsonb->>'shortfall', detail::jsonb->>'cost';
END $$;
\set VERBOSITY sqlstate

-- A missing account is never a zero balance.
SELECT credits.charge('nobody', 1);
SELECT credits.balance('nobody');
SELECT credits.can_afford('nobody', 0);
-- A recharge opens it.
SELECT credits.recharge('nobody', 3);

-- Idempotency: the same key replays the original result; another operation is PT409.
SELECT credits.charge('nobody', 1, idempotency_key => 'req-1');
SELECT credits.charge('nobody', 1, idempotency_key => 'req-1');
SELECT credits.charge('nobody', 2, idempotency_key => 'req-1');
SELECT credits.recharge('nobody', 1, idempotency_key => 'req-1');
SELECT credits.create_account('nobody');

-- An overdraft allowance: min_balance below zero.
SELECT credits.create_account('postpaid', 0, min_balance => -100);
SELECT credits.charge('postpaid', 100);
SELECT credits.charge('postpaid', 0.01);
SELECT credits.set_limits('postpaid', 0);
SELECT credits.set_limits('postpaid', -200, -150);
SELECT account, balance, min_balance, low_balance_threshold FROM credits.accounts ORDER BY account;

SELECT account, amount, balance_after, kind, reason, idempotency_key
  FROM credits.ledger ORDER BY account, id;
