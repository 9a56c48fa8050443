\set aid random(1, 20)
SELECT credits.charge('g1-' || :aid, 0.01);
