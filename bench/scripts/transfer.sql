\set a random(1, 10000)
SELECT transfer_id FROM credits.transfer('acct-' || :a, 'acct-' || (:a % 10000 + 1), 1);
