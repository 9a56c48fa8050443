\set aid random(1, 1000)
BEGIN;
SELECT credits.charge('acct-' || :aid, 5);
ROLLBACK;
