-- pg_credits 0.3.0 -> 0.4.0: transfers, refunds and the picture of usage.
--  - New: credits.transfer, credits.refund, and credits.statement, usage, balance_at and
--    runway, which read an account's ledger entries through its (account, created_at)
--    index.
--  - The ledger gains transfer_id and refund_of, the entry kinds transfer_out, transfer_in
--    and refund, a block-range index on id and a partial index of refunds; the sequence
--    credits.transfer_ids numbers transfers. No row changes.

ALTER DOMAIN @extschema@.entry_kind DROP CONSTRAINT entry_kind_known;
ALTER DOMAIN @extschema@.entry_kind ADD CONSTRAINT entry_kind_known CHECK (
        VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['charge', 'recharge', 'adjustment', 'opening',
                                                'grant', 'void', 'hold', 'capture', 'release', 'expiry',
                                                'transfer_out', 'transfer_in', 'refund']));

ALTER TABLE @extschema@.ledger ADD COLUMN transfer_id bigint, ADD COLUMN refund_of bigint;

-- Built over the whole ledger once, during the update (a block-range index is small and
-- quick to build); the partial index of refunds starts empty.
CREATE INDEX ledger_ids ON @extschema@.ledger USING brin (id) WITH (pages_per_range = 32, autosummarize = on);
CREATE INDEX ledger_refunds ON @extschema@.ledger (account, refund_of) WHERE refund_of IS NOT NULL;

COMMENT ON TABLE @extschema@.ledger IS
    'Append-only journal: one signed entry per balance change; for every account, balance = sum(amount). '
    'balance_after is NULL for entries a hot account took from one of its slots. '
    'grant_id: the grant an entry moved (0: the own balance; NULL before grants); for every account held = sum(held_amount). '
    'outcome: the result a keyed operation of several entries replays, on its first entry. '
    'transfer_id: the transfer a transfer_out or transfer_in entry belongs to, in both accounts. '
    'refund_of: the charge or capture entry a refund gives back.';

CREATE SEQUENCE @extschema@.transfer_ids AS bigint;
SELECT pg_catalog.pg_extension_config_dump('credits.transfer_ids'::pg_catalog.regclass, '');
REVOKE ALL ON SEQUENCE @extschema@.transfer_ids FROM PUBLIC;

-- pg_credits::refunds::refund
CREATE  FUNCTION "refund"(
	"entry_id" bigint, /* Option < i64 > */
	"amount" NUMERIC DEFAULT NULL, /* Option < AnyNumeric > */
	"idempotency_key" TEXT DEFAULT NULL, /* Option < & str > */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"metadata" jsonb DEFAULT NULL, /* Option < JsonB > */
	"reissue" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"refund_id" bigint,  /* i64 */
	"refunded" NUMERIC,  /* AnyNumeric */
	"refundable" NUMERIC,  /* AnyNumeric */
	"balance" NUMERIC  /* AnyNumeric */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'refund_wrapper';

-- pg_credits::transfers::transfer
CREATE  FUNCTION "transfer"(
	"from_account" TEXT, /* Option < & str > */
	"to_account" TEXT, /* Option < & str > */
	"amount" NUMERIC, /* Option < AnyNumeric > */
	"idempotency_key" TEXT DEFAULT NULL, /* Option < & str > */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"metadata" jsonb DEFAULT NULL /* Option < JsonB > */
) RETURNS TABLE (
	"transfer_id" bigint,  /* i64 */
	"from_balance" NUMERIC,  /* AnyNumeric */
	"to_balance" NUMERIC  /* AnyNumeric */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'transfer_wrapper';

-- pg_credits::usage::balance_at
CREATE  FUNCTION "balance_at"(
	"account" TEXT, /* Option < & str > */
	"at" timestamp with time zone /* Option < TimestampWithTimeZone > */
) RETURNS NUMERIC /* Option < AnyNumeric > */
STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'balance_at_wrapper';

-- pg_credits::usage::runway
CREATE  FUNCTION "runway"(
	"account" TEXT, /* Option < & str > */
	"lookback" interval DEFAULT '7 days' /* Option < Interval > */
) RETURNS TABLE (
	"spendable" NUMERIC,  /* AnyNumeric */
	"spent" NUMERIC,  /* AnyNumeric */
	"per_day" NUMERIC,  /* AnyNumeric */
	"runs_out_at" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'runway_wrapper';

-- pg_credits::usage::statement
CREATE  FUNCTION "statement"(
	"account" TEXT, /* Option < & str > */
	"from_ts" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"to_ts" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"bucket" TEXT DEFAULT NULL, /* Option < & str > */
	"tz" TEXT DEFAULT 'UTC' /* Option < & str > */
) RETURNS TABLE (
	"period_start" timestamp with time zone,  /* TimestampWithTimeZone */
	"period_end" timestamp with time zone,  /* TimestampWithTimeZone */
	"opening" NUMERIC,  /* AnyNumeric */
	"credited" NUMERIC,  /* AnyNumeric */
	"debited" NUMERIC,  /* AnyNumeric */
	"expired" NUMERIC,  /* AnyNumeric */
	"closing" NUMERIC  /* AnyNumeric */
)
STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'statement_wrapper';

-- pg_credits::usage::usage
CREATE  FUNCTION "usage"(
	"account" TEXT, /* Option < & str > */
	"from_ts" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"to_ts" timestamp with time zone, /* Option < TimestampWithTimeZone > */
	"group_by" TEXT DEFAULT 'reason' /* Option < & str > */
) RETURNS TABLE (
	"key" TEXT,  /* Option < String > */
	"spent" NUMERIC,  /* AnyNumeric */
	"entries" bigint  /* i64 */
)
STABLE SECURITY DEFINER PARALLEL RESTRICTED
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'usage_wrapper';

REVOKE ALL ON FUNCTION
    @extschema@.refund(bigint, numeric, text, text, jsonb, boolean),
    @extschema@.transfer(text, text, numeric, text, text, jsonb),
    @extschema@.balance_at(text, timestamptz),
    @extschema@.runway(text, interval),
    @extschema@.statement(text, timestamptz, timestamptz, text, text),
    @extschema@.usage(text, timestamptz, timestamptz, text)
    FROM PUBLIC;
