-- Raw SQL meets the same rules: no overdraft, every change in the ledger, append-only.
\set VERBOSITY sqlstate
SELECT credits.create_account('guarded', 10);
UPDATE credits.accounts SET balance = balance - 11 WHERE account = 'guarded';
\set VERBOSITY verbose
UPDATE credits.accounts SET balance = balance - 11 WHERE account = 'guarded';
\set VERBOSITY sqlstate
UPDATE credits.accounts SET min_balance = 20 WHERE account = 'guarded';
UPDATE credits.accounts SET balance = 25 WHERE account = 'guarded';
INSERT INTO credits.accounts (account, balance) VALUES ('raw', 7);
INSERT INTO credits.accounts (account, balance) VALUES ('raw', 9)
    ON CONFLICT (account) DO UPDATE SET balance = EXCLUDED.balance;
UPDATE credits.accounts SET account = 'renamed' WHERE account = 'guarded';
UPDATE credits.ledger SET amount = 0;
DELETE FROM credits.ledger;
TRUNCATE credits.ledger;
TRUNCATE credits.accounts;
DELETE FROM credits.accounts WHERE account = 'guarded';
UPDATE credits.accounts SET balance = 'NaN' WHERE account = 'guarded';
SELECT account, amount, balance_after, kind FROM credits.ledger
 WHERE account IN ('guarded', 'raw') ORDER BY account, id;
-- The invariant: for every account, balance = sum(ledger.amount).
SELECT a.account, a.balance, sum(l.amount) AS ledger_sum
  FROM credits.accounts a JOIN credits.ledger l USING (account)
 GROUP BY a.account, a.balance ORDER BY a.account;
