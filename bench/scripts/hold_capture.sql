\set aid random(1, 10000)
SELECT hold_id FROM credits.hold('acct-' || :aid, 5) \gset
SELECT status FROM credits.capture(:hold_id, 3);
