-- pg_credits 0.3.0 -> 0.4.0: the picture of usage.
--  - New: credits.statement, usage, balance_at and runway, which read an account's
--    ledger entries through its (account, created_at) index. No table changes.

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
    @extschema@.balance_at(text, timestamptz),
    @extschema@.runway(text, interval),
    @extschema@.statement(text, timestamptz, timestamptz, text, text),
    @extschema@.usage(text, timestamptz, timestamptz, text)
    FROM PUBLIC;
