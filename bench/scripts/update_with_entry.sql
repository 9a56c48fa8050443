\set aid random(1, 10000)
WITH moved AS (
    UPDATE bench.accounts SET balance = balance - 1, updated_at = now()
     WHERE account = 'acct-' || :aid AND balance - 1 >= min_balance
    RETURNING account, balance)
INSERT INTO bench.ledger (account, amount, balance_after, kind)
SELECT account, -1, balance, 'charge' FROM moved;
