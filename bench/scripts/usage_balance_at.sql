\set aid random(1, 10000)
SELECT credits.balance_at('use-' || :aid, now() - interval '45 days');
