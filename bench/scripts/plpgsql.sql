\set aid random(1, 10000)
SELECT bench.plpgsql_charge('acct-' || :aid, 1);
