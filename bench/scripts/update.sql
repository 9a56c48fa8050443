\set aid random(1, 10000)
UPDATE bench.accounts SET balance = balance - 1 WHERE account = 'acct-' || :aid;
