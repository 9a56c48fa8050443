\set key random(1, 1000000000000)
SELECT credits.charge('hot-slots', 1, idempotency_key => 'usage-' || :client_id || '-' || :key);
