\set aid random(1, 10000)
SELECT count(*) FROM credits.usage('use-' || :aid, now() - interval '30 days', now());
