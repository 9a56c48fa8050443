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
    CONSTRAINT account_id_valid
        CHECK (length(account) BETWEEN 1 AND 256 AND account !~ '[[:cntrl:]]'),
    CONSTRAINT balance_finite CHECK (balance > '-Infinity' AND balance < 'Infinity'),
    CONSTRAINT min_balance_finite CHECK (min_balance > '-Infinity' AND min_balance < 'Infinity'),
    CONSTRAINT low_balance_threshold_finite CHECK (
        low_balance_threshold > '-Infinity' AND low_balance_threshold < 'Infinity'),
    CONSTRAINT metadata_is_object CHECK (jsonb_typeof(metadata) = 'object')
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
    CONSTRAINT ledger_kind CHECK (kind IN ('charge', 'recharge', 'adjustment', 'opening'))
);

COMMENT ON TABLE @extschema@.ledger IS
    'Append-only journal: one signed entry per balance change; for every account, balance = sum(amount).';
