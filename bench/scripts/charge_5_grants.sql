\set aid random(1, 1000)
BEGIN;
SELECT credits.charge('g5-' || :aid, 5);
ROLLBACK;
