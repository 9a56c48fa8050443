-- The yardsticks pg_credits is measured against, in their own schema and tables (same
-- columns and indexes as credits.accounts and credits.ledger, no triggers). Benchmark
-- only: never installed by the extension.
CREATE SCHEMA bench;
CREATE TABLE bench.accounts (LIKE credits.accounts INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
CREATE TABLE bench.ledger (LIKE credits.ledger INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING IDENTITY);

-- A PL/pgSQL charge with the same contract: guarded UPDATE … RETURNING, ledger INSERT,
-- PT402 with a JSON detail when the account cannot pay.
CREATE FUNCTION bench.plpgsql_charge(p_account text, p_cost numeric) RETURNS numeric
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, bench AS $$
DECLARE
    new_balance numeric;
BEGIN
    UPDATE bench.accounts SET balance = balance - p_cost, updated_at = now()
     WHERE account = p_account AND balance - p_cost >= min_balance
    RETURNING balance INTO new_balance;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT402',
            MESSAGE = 'Account balance not enough to run this query, please recharge.',
            DETAIL = json_build_object('code', 402, 'account', p_account)::text;
    END IF;
    INSERT INTO bench.ledger (account, amount, balance_after, kind)
    VALUES (p_account, -p_cost, new_balance, 'charge');
    RETURN new_balance;
END $$;

INSERT INTO credits.accounts (account, balance)
SELECT 'acct-' || i, 1e15 FROM generate_series(1, 10000) i;
INSERT INTO bench.accounts (account, balance)
SELECT 'acct-' || i, 1e15 FROM generate_series(1, 10000) i;
INSERT INTO credits.accounts (account, balance) VALUES ('hot', 1e15);
-- The same busy customer in hot mode: one slot per client of the 32-client row, and
-- the 16 of the README's example.
INSERT INTO credits.accounts (account, balance) VALUES ('hot-slots', 1e15), ('hot-16-slots', 1e15);
SELECT credits.set_slots('hot-slots', 32), credits.set_slots('hot-16-slots', 16);
