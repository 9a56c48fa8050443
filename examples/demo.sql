\set VERBOSITY verbose
\echo '-- an account with 10 credits, charged 3 per request'
SELECT credits.create_account('acme', 10);
SELECT credits.charge('acme', 3, 'GET /v1/search');
SELECT credits.charge('acme', 3, 'GET /v1/search');
SELECT credits.charge('acme', 3, 'GET /v1/search');
\echo '-- the fourth request cannot be paid: SQLSTATE PT402, JSON in DETAIL'
SELECT credits.charge('acme', 3, 'GET /v1/search');
\echo '-- the same failure, caught in PL/pgSQL: SQLSTATE and the parsed payload'
DO $$
DECLARE state text; payload text;
BEGIN
    PERFORM credits.charge('acme', 3);
EXCEPTION WHEN SQLSTATE 'PT402' THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, payload = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'SQLSTATE %, payload %', state, jsonb_pretty(payload::jsonb);
END $$;
\echo '-- recharge and carry on'
SELECT credits.recharge('acme', 20, 'top-up');
SELECT credits.charge('acme', 3, 'GET /v1/search');
SELECT id, amount, balance_after, kind, reason FROM credits.ledger WHERE account = 'acme' ORDER BY id;
\echo '-- a busy customer: spread over 8 slots so parallel charges do not queue on one row'
SELECT credits.create_account('bigco', 1000);
SELECT credits.set_slots('bigco', 8);
SELECT credits.charge('bigco', 2.5, 'POST /v1/embed'), credits.balance('bigco');
\echo '-- settle metered usage in bulk: one result per item'
SELECT item, account, cost, status, balance, error->>'name' AS error
  FROM credits.charge_many(ARRAY['acme', 'bigco', 'acme', 'nobody'], ARRAY[5, 40, 20, 1]::numeric[]);
