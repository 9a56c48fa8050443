\set aid random(1, 10000)
INSERT INTO bench.ledger (account, amount, balance_after, kind) VALUES ('acct-' || :aid, -1, 1, 'charge');
