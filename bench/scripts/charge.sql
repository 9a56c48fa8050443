\set aid random(1, 10000)
SELECT credits.charge('acct-' || :aid, 1);
