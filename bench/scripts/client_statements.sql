\set aid random(1, 10000)
BEGIN;
UPDATE bench.accounts SET balance = balance - 1, updated_at = now()
 WHERE account = 'acct-' || :aid AND balance - 1 >= min_balance RETURNING balance \gset
INSERT INTO bench.ledger (account, amount, balance_after, kind)
VALUES ('acct-' || :aid, -1, :balance, 'charge');
COMMIT;
