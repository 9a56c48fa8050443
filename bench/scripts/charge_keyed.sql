\set aid random(1, 10000)
\set key random(1, 1000000000000)
SELECT credits.charge('acct-' || :aid, 1, idempotency_key => 'usage-' || :client_id || '-' || :key);
