\set aid random(1, 20)
SELECT credits.charge('g1000-' || :aid, 0.01);
