-- Tables of pg_credits. Every primary key and unique index starts with `account`, so the
-- tables can later be distributed by account (Citus) without changing a constraint.

CREATE TABLE @extschema@.accounts (
    account               text        NOT NULL,
    balance               numeric     NOT NULL,
    min_balance           numeric     NOT NULL DEFAULT 0,
    low_balance_threshold numeric,
    metadata              jsonb,
    created_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    CONSTRAINT accounts_pkey PRIMARY KEY (account),
    CONSTRAINT account_id_valid CHECK (
        pg_catalog.length(account) OPERATOR(pg_catalog.>=) 1
        AND pg_catalog.length(account) OPERATOR(pg_catalog.<=) 256
        AND account OPERATOR(pg_catalog.!~) '[[:cntrl:]]'),
    CONSTRAINT balance_finite CHECK (
        balance OPERATOR(pg_catalog.>) '-Infinity'::pg_catalog.numeric
        AND balance OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.numeric),
    CONSTRAINT min_balance_finite CHECK (
        min_balance OPERATOR(pg_catalog.>) '-Infinity'::pg_catalog.numeric
        AND min_balance OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.numeric),
    CONSTRAINT low_balance_threshold_finite CHECK (
        low_balance_threshold OPERATOR(pg_catalog.>) '-Infinity'::pg_catalog.numeric
        AND low_balance_threshold OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.numeric),
    CONSTRAINT metadata_is_object CHECK (
        pg_catalog.jsonb_typeof(metadata) OPERATOR(pg_catalog.=) 'object')
);

COMMENT ON TABLE @extschema@.accounts IS
    'Prepaid credit accounts. balance never goes below min_balance; every change of balance has a ledger entry.';

CREATE TABLE @extschema@.ledger (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    account         text        NOT NULL,
    amount          numeric     NOT NULL,
    balance_after   numeric     NOT NULL,
    kind            text        NOT NULL,
    reason          text,
    idempotency_key text,
    metadata        jsonb,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    txid            xid8        NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    CONSTRAINT ledger_pkey PRIMARY KEY (account, id),
    CONSTRAINT ledger_idempotency_key UNIQUE (account, idempotency_key),
    CONSTRAINT ledger_kind CHECK (
        kind OPERATOR(pg_catalog.=) ANY (ARRAY['charge', 'recharge', 'adjustment', 'opening']))
);

COMMENT ON TABLE @extschema@.ledger IS
    'Append-only journal: one signed entry per balance change; for every account, balance = sum(amount).';
