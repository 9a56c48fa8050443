-- pg_credits 0.2.0 -> 0.3.0: holds and grants.
--  - New: credits.hold, capture, release, extend_hold, expire_holds, available and the
--    view credits.active_holds; credits.grant, void_grant, set_grant_expiry,
--    expire_grants and the view credits.grants; the tables behind them
--    (credits.holds, credits.account_grants) and the setting credits.max_hold_ttl.
--  - accounts gains held (what active holds reserve) and has_grants; the ledger gains
--    grant_id, hold_id, held_amount and outcome, and the entry kinds grant, void, hold,
--    capture, release and expiry.
--  - Existing balances need no conversion: an account's own balance (what recharges
--    brought) is its paid grant that never expires, and it stays where it is, on the
--    account row, until the account receives its first grant (which moves it, exactly,
--    into credits.account_grants as pool 0). No balance, entry or key changes.
--  - The commit-time reconciliation of inserted accounts also covers holds and grants.

ALTER DOMAIN @extschema@.entry_kind DROP CONSTRAINT entry_kind_known;
ALTER DOMAIN @extschema@.entry_kind ADD CONSTRAINT entry_kind_known CHECK (
        VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['charge', 'recharge', 'adjustment', 'opening',
                                                'grant', 'void', 'hold', 'capture', 'release', 'expiry']));

ALTER TABLE @extschema@.accounts
    ADD COLUMN held @extschema@.amount NOT NULL DEFAULT 0,
    ADD COLUMN has_grants boolean NOT NULL DEFAULT false;

COMMENT ON TABLE @extschema@.accounts IS
    'Prepaid credit accounts. balance never goes below min_balance; every change of balance has a ledger entry. '
    'For a hot account (slots > 0), balance is the part not spread over credits.account_slots: use credits.balance(). '
    'held is what active holds reserve; with has_grants the money is in credits.account_grants.';

ALTER TABLE @extschema@.ledger
    ADD COLUMN grant_id bigint,
    ADD COLUMN hold_id bigint,
    ADD COLUMN held_amount @extschema@.amount,
    ADD COLUMN outcome jsonb;

COMMENT ON TABLE @extschema@.ledger IS
    'Append-only journal: one signed entry per balance change; for every account, balance = sum(amount). '
    'balance_after is NULL for entries a hot account took from one of its slots. '
    'grant_id: the grant an entry moved (0: the own balance; NULL before grants); for every account held = sum(held_amount). '
    'outcome: the result a keyed operation of several entries replays, on its first entry.';

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

DROP TRIGGER reconcile_inserted_account ON @extschema@.accounts;
DROP TRIGGER refuse_delete_with_balance ON @extschema@.accounts;
CREATE TRIGGER refuse_delete_with_balance
    BEFORE DELETE ON @extschema@.accounts
    FOR EACH ROW WHEN (OLD.balance OPERATOR(pg_catalog.<>) 0 OR OLD.slots OPERATOR(pg_catalog.<>) 0
                       OR OLD.held OPERATOR(pg_catalog.<>) 0 OR OLD.has_grants)
    EXECUTE FUNCTION @extschema@.refuse_write();
CREATE CONSTRAINT TRIGGER reconcile_inserted_account
    AFTER INSERT ON @extschema@.accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.balance OPERATOR(pg_catalog.<>) 0 OR NEW.slots OPERATOR(pg_catalog.<>) 0
                       OR NEW.held OPERATOR(pg_catalog.<>) 0 OR NEW.has_grants)
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

-- Grants and holds change only through pg_credits, like slots: a direct INSERT (a
-- restore) is reconciled at commit, anything else refused.
CREATE TRIGGER refuse_direct_write
    AFTER UPDATE OR DELETE ON @extschema@.account_grants
    FOR EACH ROW WHEN (@extschema@.is_direct_write(OLD.account))
    EXECUTE FUNCTION @extschema@.refuse_write();

CREATE CONSTRAINT TRIGGER reconcile_inserted_grant
    AFTER INSERT ON @extschema@.account_grants
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (@extschema@.is_direct_write(NEW.account))
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

CREATE TRIGGER refuse_truncate
    BEFORE TRUNCATE ON @extschema@.account_grants
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER refuse_direct_write
    AFTER UPDATE OR DELETE ON @extschema@.holds
    FOR EACH ROW WHEN (@extschema@.is_direct_write(OLD.account))
    EXECUTE FUNCTION @extschema@.refuse_write();

CREATE CONSTRAINT TRIGGER reconcile_inserted_hold
    AFTER INSERT ON @extschema@.holds
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (@extschema@.is_direct_write(NEW.account))
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

CREATE TRIGGER refuse_truncate
    BEFORE TRUNCATE ON @extschema@.holds
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_write();

-- Each grant as its owner sees it: what it has left now (0 once expired, whether or not
-- its expiry entry was written yet) and where it stands.
CREATE VIEW @extschema@.grants AS
SELECT g.account, g.grant_id, g.amount,
       CASE WHEN g.closed IS NULL AND g.expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp()
            THEN g.remaining ELSE 0 END AS remaining,
       g.held, g.category::pg_catalog.text AS category, g.priority::integer AS priority, g.effective_at,
       CASE WHEN g.expires_at OPERATOR(pg_catalog.<>) 'infinity' THEN g.expires_at END AS expires_at,
       CASE WHEN g.closed IS NOT NULL THEN g.closed
            WHEN g.expires_at OPERATOR(pg_catalog.<=) pg_catalog.clock_timestamp() THEN 'expired'
            WHEN g.effective_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp() THEN 'pending'
            WHEN g.remaining OPERATOR(pg_catalog.=) 0 AND g.held OPERATOR(pg_catalog.=) 0 THEN 'depleted'
            ELSE 'active' END AS status,
       g.closed_at, g.created_at, g.reason, g.metadata
  FROM @extschema@.account_grants g
 WHERE g.grant_id OPERATOR(pg_catalog.<>) 0;

-- The holds that count now: active and not past their expiry.
CREATE VIEW @extschema@.active_holds AS
SELECT h.account, h.hold_id, h.amount, h.captured,
       (SELECT coalesce(pg_catalog.sum(p), 0) FROM pg_catalog.unnest(h.parts) AS p) AS remaining,
       CASE WHEN h.expires_at OPERATOR(pg_catalog.<>) 'infinity' THEN h.expires_at END AS expires_at,
       h.created_at, h.reason, h.metadata
  FROM @extschema@.holds h
 WHERE h.status OPERATOR(pg_catalog.=) 'active' AND h.expires_at OPERATOR(pg_catalog.>) pg_catalog.clock_timestamp();

-- src/accounts.rs:204
-- pg_credits::accounts::available
CREATE  FUNCTION "available"(
	"account" TEXT /* Option < & str > */
) RETURNS NUMERIC /* AnyNumeric */
STABLE SECURITY DEFINER PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'available_wrapper';

-- src/holds.rs:55
-- pg_credits::holds::capture

CREATE FUNCTION @extschema@."capture"(
    "hold_id" bigint,
    "amount" numeric DEFAULT NULL,
    "final" boolean DEFAULT true,
    "idempotency_key" text DEFAULT NULL,
    "reason" text DEFAULT NULL,
    "metadata" jsonb DEFAULT NULL,
    "overage" text DEFAULT 'refuse'
) RETURNS TABLE ("hold_id" bigint, "captured" numeric, "released" numeric, "status" text, "balance" numeric)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'capture_wrapper';

-- src/grants.rs:71
-- pg_credits::grants::expire_grants
CREATE  FUNCTION "expire_grants"(
	"max_rows" INT DEFAULT 1000 /* Option < i32 > */
) RETURNS INT /* i32 */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'expire_grants_wrapper';

-- src/holds.rs:118
-- pg_credits::holds::expire_holds
CREATE  FUNCTION "expire_holds"(
	"max_rows" INT DEFAULT 1000 /* Option < i32 > */
) RETURNS INT /* i32 */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'expire_holds_wrapper';

-- src/holds.rs:110
-- pg_credits::holds::extend_hold
CREATE  FUNCTION "extend_hold"(
	"hold_id" bigint, /* Option < i64 > */
	"ttl" interval /* Option < Interval > */
) RETURNS timestamp with time zone /* Option < TimestampWithTimeZone > */
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'extend_hold_wrapper';

-- src/grants.rs:32
-- pg_credits::grants::grant
CREATE  FUNCTION "grant"(
	"account" TEXT, /* Option < & str > */
	"amount" NUMERIC, /* Option < AnyNumeric > */
	"category" TEXT DEFAULT 'paid', /* Option < & str > */
	"priority" INT DEFAULT 50, /* Option < i32 > */
	"effective_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"idempotency_key" TEXT DEFAULT NULL, /* Option < & str > */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"metadata" jsonb DEFAULT NULL /* Option < JsonB > */
) RETURNS TABLE (
	"grant_id" bigint,  /* i64 */
	"remaining" NUMERIC,  /* AnyNumeric */
	"balance" NUMERIC  /* AnyNumeric */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE 
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'grant_credits_wrapper';

-- src/holds.rs:31
-- pg_credits::holds::hold
CREATE  FUNCTION "hold"(
	"account" TEXT, /* Option < & str > */
	"amount" NUMERIC, /* Option < AnyNumeric > */
	"ttl" interval DEFAULT '15 minutes', /* Option < Interval > */
	"idempotency_key" TEXT DEFAULT NULL, /* Option < & str > */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"metadata" jsonb DEFAULT NULL /* Option < JsonB > */
) RETURNS TABLE (
	"hold_id" bigint,  /* i64 */
	"amount" NUMERIC,  /* AnyNumeric */
	"expires_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"available" NUMERIC  /* AnyNumeric */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'hold_wrapper';

-- src/holds.rs:90
-- pg_credits::holds::release
CREATE  FUNCTION "release"(
	"hold_id" bigint, /* Option < i64 > */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"idempotency_key" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"hold_id" bigint,  /* i64 */
	"captured" NUMERIC,  /* AnyNumeric */
	"released" NUMERIC,  /* AnyNumeric */
	"status" TEXT,  /* String */
	"balance" NUMERIC  /* AnyNumeric */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'release_wrapper';

-- src/grants.rs:64
-- pg_credits::grants::set_grant_expiry
CREATE  FUNCTION "set_grant_expiry"(
	"grant_id" bigint, /* Option < i64 > */
	"expires_at" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_grant_expiry_wrapper';

-- src/grants.rs:53
-- pg_credits::grants::void_grant
CREATE  FUNCTION "void_grant"(
	"grant_id" bigint, /* Option < i64 > */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"idempotency_key" TEXT DEFAULT NULL /* Option < & str > */
) RETURNS TABLE (
	"grant_id" bigint,  /* i64 */
	"voided" NUMERIC,  /* AnyNumeric */
	"balance" NUMERIC  /* AnyNumeric */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'void_grant_wrapper';

SELECT pg_catalog.pg_extension_config_dump('credits.account_grants'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.account_grants_grant_id_seq'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.holds'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.holds_hold_id_seq'::pg_catalog.regclass, '');

-- Nothing new is usable until granted (see "Roles and grants" in the README); what was
-- granted before stays as it was.
REVOKE ALL ON FUNCTION
    @extschema@.available(text),
    @extschema@.capture(bigint, numeric, boolean, text, text, jsonb, text),
    @extschema@.expire_grants(integer),
    @extschema@.expire_holds(integer),
    @extschema@.extend_hold(bigint, interval),
    @extschema@."grant"(text, numeric, text, integer, timestamptz, timestamptz, text, text, jsonb),
    @extschema@.hold(text, numeric, interval, text, text, jsonb),
    @extschema@.release(bigint, text, text),
    @extschema@.set_grant_expiry(bigint, timestamptz),
    @extschema@.void_grant(bigint, text, text)
    FROM PUBLIC;
REVOKE ALL ON TABLE @extschema@.account_grants, @extschema@.holds, @extschema@.grants, @extschema@.active_holds FROM PUBLIC;
REVOKE ALL ON SEQUENCE @extschema@.account_grants_grant_id_seq, @extschema@.holds_hold_id_seq FROM PUBLIC;
