-- Tables of pg_credits. Every primary key and unique index starts with `account`, so the
-- tables can later be distributed by account (Citus) without changing a constraint.
--
-- The value rules live in domains, not in table CHECK constraints: PostgreSQL re-reads a
-- table's CHECK constraints from their stored text on every execution of a statement
-- (which cost the money path a third of its time), while domain checks come ready from
-- the type cache. The rules hold for every writer all the same.

-- Account ids compare byte by byte (COLLATE "C"): they are identifiers, not words, and
-- every lookup of the money path compares them; a linguistic collation costs a strcoll
-- per comparison.
CREATE DOMAIN @extschema@.account_id AS text COLLATE "C"
    CONSTRAINT account_id_valid CHECK (
        pg_catalog.length(VALUE) OPERATOR(pg_catalog.>=) 1
        AND pg_catalog.length(VALUE) OPERATOR(pg_catalog.<=) 256
        AND VALUE OPERATOR(pg_catalog.!~) '[[:cntrl:]]');

CREATE DOMAIN @extschema@.amount AS numeric
    CONSTRAINT amount_finite CHECK (
        VALUE OPERATOR(pg_catalog.>) '-Infinity'::pg_catalog.numeric
        AND VALUE OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.numeric);

-- What one slot of a hot account can still spend: never negative, so the slots together
-- can never take the account below its floor.
CREATE DOMAIN @extschema@.slot_amount AS numeric
    CONSTRAINT slot_amount_not_negative CHECK (
        VALUE OPERATOR(pg_catalog.>=) 0
        AND VALUE OPERATOR(pg_catalog.<) 'Infinity'::pg_catalog.numeric);

CREATE DOMAIN @extschema@.entry_kind AS text
    CONSTRAINT entry_kind_known CHECK (
        VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['charge', 'recharge', 'adjustment', 'opening',
                                                'grant', 'void', 'hold', 'capture', 'release', 'expiry',
                                                'transfer_out', 'transfer_in', 'refund']));

CREATE DOMAIN @extschema@.json_object AS jsonb
    CONSTRAINT json_object_is_object CHECK (
        pg_catalog.jsonb_typeof(VALUE) OPERATOR(pg_catalog.=) 'object');

CREATE TABLE @extschema@.accounts (
    account               @extschema@.account_id  NOT NULL,
    balance               @extschema@.amount      NOT NULL,
    min_balance           @extschema@.amount      NOT NULL DEFAULT 0,
    low_balance_threshold @extschema@.amount,
    metadata              @extschema@.json_object,
    created_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at            timestamptz NOT NULL DEFAULT pg_catalog.now(),
    slots                 integer     NOT NULL DEFAULT 0,
    held                  @extschema@.amount NOT NULL DEFAULT 0,
    has_grants            boolean     NOT NULL DEFAULT false,
    CONSTRAINT accounts_pkey PRIMARY KEY (account)
);

COMMENT ON TABLE @extschema@.accounts IS
    'Prepaid credit accounts. balance never goes below min_balance; every change of balance has a ledger entry. '
    'For a hot account (slots > 0), balance is the part not spread over credits.account_slots: use credits.balance(). '
    'held is what active holds reserve; with has_grants the money is in credits.account_grants.';

CREATE TABLE @extschema@.ledger (
    id              bigint      GENERATED ALWAYS AS IDENTITY,
    account         text COLLATE "C" NOT NULL,
    amount          @extschema@.amount     NOT NULL,
    balance_after   @extschema@.amount,
    kind            @extschema@.entry_kind NOT NULL,
    reason          text,
    idempotency_key text,
    metadata        @extschema@.json_object,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    txid            xid8        NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    grant_id        bigint,
    hold_id         bigint,
    held_amount     @extschema@.amount,
    outcome         jsonb,
    transfer_id     bigint,
    refund_of       bigint,
    CONSTRAINT ledger_pkey PRIMARY KEY (account, id)
);

-- One transfer's entries, in both accounts, share its id.
CREATE SEQUENCE @extschema@.transfer_ids AS bigint;

-- Partial: most charges carry no key, and they then cost no entry in this index.
CREATE UNIQUE INDEX ledger_idempotency_key ON @extschema@.ledger (account, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- An account's history by time (statements, usage over a period) without reading the
-- rest of its entries. created_at is the writing transaction's start time, now().
CREATE INDEX ledger_account_created_at ON @extschema@.ledger (account, created_at);

-- An entry by its id alone (credits.refund): a block-range index costs an insert next to
-- nothing (the newest range stays unsummarized until autovacuum summarizes it), where a
-- B-tree would cost every charge an index entry. Entries are appended in id order, so a
-- range's ids are close together and a look-up reads one range (and the unsummarized tail).
CREATE INDEX ledger_ids ON @extschema@.ledger USING brin (id) WITH (pages_per_range = 32, autosummarize = on);
-- The refunds of an entry, to never refund more than it charged: only refunds are in it.
CREATE INDEX ledger_refunds ON @extschema@.ledger (account, refund_of) WHERE refund_of IS NOT NULL;

COMMENT ON TABLE @extschema@.ledger IS
    'Append-only journal: one signed entry per balance change; for every account, balance = sum(amount). '
    'balance_after is NULL for entries a hot account took from one of its slots. '
    'grant_id: the grant an entry moved (0: the own balance; NULL before grants); for every account held = sum(held_amount). '
    'outcome: the result a keyed operation of several entries replays, on its first entry. '
    'transfer_id: the transfer a transfer_out or transfer_in entry belongs to, in both accounts. '
    'refund_of: the charge or capture entry a refund gives back.';

-- The sub-balances of a hot account: charges spread over them so that parallel charges
-- do not queue on one row lock. Together with accounts.balance they make the balance.
CREATE TABLE @extschema@.account_slots (
    account   text COLLATE "C"         NOT NULL,
    slot      integer                  NOT NULL,
    available @extschema@.slot_amount  NOT NULL,
    CONSTRAINT account_slots_pkey PRIMARY KEY (account, slot)
);

COMMENT ON TABLE @extschema@.account_slots IS
    'Written only by pg_credits: what each slot of a hot account can spend.';

-- The durable side of alerts (see notify.rs): one row per alert, written in the transaction
-- that raised it, so a consumer sees exactly the alerts of committed transactions, also
-- those of prepared (two-phase) transactions, which send no NOTIFY. Consumers read in
-- (txid, id) order up to the oldest running transaction (README, "Events").
CREATE TABLE @extschema@.events (
    id         bigint           GENERATED ALWAYS AS IDENTITY,
    kind       text             NOT NULL,
    account    text COLLATE "C" NOT NULL,
    payload    jsonb            NOT NULL,
    created_at timestamptz      NOT NULL DEFAULT pg_catalog.now(),
    txid       xid8             NOT NULL DEFAULT pg_catalog.pg_current_xact_id(),
    CONSTRAINT events_pkey PRIMARY KEY (account, id)
);

CREATE INDEX events_in_commit_order ON @extschema@.events (txid, id);

COMMENT ON TABLE @extschema@.events IS
    'Append-only outbox of alerts (kind low_balance), one row per alert, in the transaction that raised it. '
    'Read committed events in (txid, id) order, below pg_snapshot_xmin(pg_current_snapshot()).';

-- Holds and grants (0.3.0). A grant is a pool of credit with its own priority, category
-- and validity; the account's own balance (what recharges bring) becomes pool 0 here when
-- the account receives its first grant (accounts.has_grants), so an account that never
-- does has no row here and pays nothing for the feature. See decide.rs for the rules.
CREATE DOMAIN @extschema@.grant_category AS text
    CONSTRAINT grant_category_known CHECK (VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['paid', 'promotional']));

CREATE DOMAIN @extschema@.grant_priority AS integer
    CONSTRAINT grant_priority_range CHECK (VALUE OPERATOR(pg_catalog.>=) 0 AND VALUE OPERATOR(pg_catalog.<=) 100);

CREATE DOMAIN @extschema@.hold_status AS text
    CONSTRAINT hold_status_known CHECK (
        VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['active', 'captured', 'released', 'expired']));

CREATE TABLE @extschema@.account_grants (
    account      text COLLATE "C"            NOT NULL,
    grant_id     bigint                      GENERATED ALWAYS AS IDENTITY,
    amount       @extschema@.amount          NOT NULL,
    remaining    @extschema@.amount          NOT NULL,
    held         @extschema@.amount          NOT NULL DEFAULT 0,
    category     @extschema@.grant_category  NOT NULL,
    priority     @extschema@.grant_priority  NOT NULL,
    effective_at timestamptz                 NOT NULL,
    expires_at   timestamptz                 NOT NULL,
    closed       text,
    closed_at    timestamptz,
    created_at   timestamptz                 NOT NULL DEFAULT pg_catalog.now(),
    reason       text,
    metadata     @extschema@.json_object,
    CONSTRAINT account_grants_pkey PRIMARY KEY (account, grant_id)
);

COMMENT ON TABLE @extschema@.account_grants IS
    'Written only by pg_credits: the pools of credit of an account with grants (grant_id 0: its own balance). '
    'remaining is free to spend, held reserved by holds; closed is expired, voided or depleted (nothing left, nothing held). '
    'Read credits.grants.';

-- A spend reads the open pools in burn order and stops when they cover it. Open, not
-- "with money": a predicate on remaining would make every draw a non-HOT update, with a
-- new entry in every index; a grant that has nothing left and nothing held is closed as
-- depleted instead, once.
CREATE INDEX account_grants_burn_order ON @extschema@.account_grants
    (account, priority, expires_at, (category OPERATOR(pg_catalog.=) 'paid'), effective_at, grant_id)
    WHERE closed IS NULL;
-- What has expired and what is not in effect yet, without reading the other grants.
CREATE INDEX account_grants_expiry ON @extschema@.account_grants (account, expires_at) WHERE closed IS NULL;
CREATE INDEX account_grants_effective ON @extschema@.account_grants (account, effective_at) WHERE closed IS NULL;
CREATE INDEX account_grants_due ON @extschema@.account_grants (expires_at) WHERE closed IS NULL;
CREATE INDEX account_grants_id ON @extschema@.account_grants (grant_id);

CREATE TABLE @extschema@.holds (
    account     text COLLATE "C"          NOT NULL,
    hold_id     bigint                    GENERATED ALWAYS AS IDENTITY,
    amount      @extschema@.amount        NOT NULL,
    captured    @extschema@.amount        NOT NULL DEFAULT 0,
    released    @extschema@.amount        NOT NULL DEFAULT 0,
    status      @extschema@.hold_status   NOT NULL DEFAULT 'active',
    pools       bigint[]                  NOT NULL,
    parts       numeric[]                 NOT NULL,
    expires_at  timestamptz               NOT NULL,
    created_at  timestamptz               NOT NULL DEFAULT pg_catalog.now(),
    resolved_at timestamptz,
    reason      text,
    metadata    @extschema@.json_object,
    CONSTRAINT holds_pkey PRIMARY KEY (account, hold_id)
);

COMMENT ON TABLE @extschema@.holds IS
    'Written only by pg_credits: reservations. parts[i] is what the hold still reserves of pool pools[i] '
    '(0: the own balance), in burn order. Read credits.active_holds.';

CREATE INDEX holds_id ON @extschema@.holds (hold_id);
CREATE INDEX holds_expiry ON @extschema@.holds (account, expires_at) WHERE status OPERATOR(pg_catalog.=) 'active';
CREATE INDEX holds_due ON @extschema@.holds (expires_at) WHERE status OPERATOR(pg_catalog.=) 'active';
