-- Bad input: each class has its SQLSTATE, and nothing is written.
\set VERBOSITY sqlstate
SELECT credits.create_account('inputs', 10);
SELECT credits.charge(NULL, 1);
SELECT credits.charge('inputs', NULL);
SELECT credits.charge('inputs', -1);
SELECT credits.charge('inputs', 'NaN');
SELECT credits.charge('inputs', 'Infinity');
SELECT credits.charge('inputs', '-Infinity');
SELECT credits.recharge('inputs', 100000000000000000000);
SELECT credits.recharge('max', 99999999999999999999.999999999999999999);
SELECT credits.recharge('max', 0.000000000000000001);
SELECT credits.charge('max', 99999999999999999999.999999999999999999);
SELECT credits.charge('inputs', 0.0000000000000000001);
SELECT credits.charge('inputs', 0.0000000000000000010);
SELECT credits.recharge('inputs', 0.0000000000000000010);
SELECT credits.charge('', 1);
SELECT credits.charge(repeat('x', 257), 1);
SELECT credits.charge('inputs', 1, idempotency_key => '');
SELECT credits.charge('inputs', 1, metadata => '"not an object"');
SELECT credits.create_account('inputs-2', 1, min_balance => 2);
\set VERBOSITY verbose
SELECT credits.charge('inputs', -1);
\set VERBOSITY sqlstate
-- Zero cost is allowed and charges nothing.
SELECT credits.charge('inputs', 0);
SELECT balance, (SELECT count(*) FROM credits.ledger WHERE account = 'inputs') AS entries
  FROM credits.accounts WHERE account = 'inputs';
-- pg_catalog.charge("char", "char") exists: qualify, or type the arguments.
SET search_path = credits, public;
SELECT charge('inputs'::text, 1::numeric);
SELECT charge('inputs', 1);
RESET search_path;
