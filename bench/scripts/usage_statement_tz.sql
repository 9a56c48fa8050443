\set aid random(1, 10000)
SELECT count(*) FROM credits.statement('use-' || :aid, now() - interval '30 days', now(), 'day', 'Europe/Paris');
