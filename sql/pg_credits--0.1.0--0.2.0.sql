-- pg_credits 0.1.0 -> 0.2.0: the faster money path, hot accounts and charge_many.
--  - The value rules move from table CHECK constraints into domains (PostgreSQL re-reads
--    CHECK constraints from text on every statement; domain checks are cached). The
--    column types change to those domains, which rewrites both tables once.
--  - The UPDATE guard becomes an AFTER trigger that pg_credits' own writes never fire;
--    the low-balance alert moves into the functions (and the guard, for direct writes).
--  - The idempotency index skips entries without a key; account ids compare bytewise.
--  - New: accounts.slots, credits.account_slots, set_slots, charge_many.
--  - charge, recharge, balance and can_afford pin the search path per statement instead
--    of with SET search_path.
--  - Amounts are stored in canonical form (no trailing zeros after the point): the
--    rewrite trims the stored ones, which changes no value.
--  - New: credits.events (the durable side of alerts), the ledger's (account, created_at)
--    index, and set_limits(account, min_balance), which keeps the threshold; the
--    three-argument set_limits loses its DEFAULT (it is dropped and created again, so
--    re-grant EXECUTE on it after the update).
--  - Direct INSERTs of hot accounts and of slots (a restore) are reconciled at commit.

DROP TRIGGER guard_update ON @extschema@.accounts;
DROP TRIGGER notify_low_balance ON @extschema@.accounts;
DROP TRIGGER refuse_delete_with_balance ON @extschema@.accounts;
DROP TRIGGER reconcile_inserted_account ON @extschema@.accounts;
DROP FUNCTION @extschema@.notify_low_balance();

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
        VALUE OPERATOR(pg_catalog.=) ANY (ARRAY['charge', 'recharge', 'adjustment', 'opening']));

CREATE DOMAIN @extschema@.json_object AS jsonb
    CONSTRAINT json_object_is_object CHECK (
        pg_catalog.jsonb_typeof(VALUE) OPERATOR(pg_catalog.=) 'object');

ALTER TABLE @extschema@.accounts
    DROP CONSTRAINT account_id_valid,
    DROP CONSTRAINT balance_finite,
    DROP CONSTRAINT min_balance_finite,
    DROP CONSTRAINT low_balance_threshold_finite,
    DROP CONSTRAINT metadata_is_object,
    ALTER COLUMN account TYPE @extschema@.account_id,
    ALTER COLUMN balance TYPE @extschema@.amount USING pg_catalog.trim_scale(balance),
    ALTER COLUMN min_balance TYPE @extschema@.amount USING pg_catalog.trim_scale(min_balance),
    ALTER COLUMN low_balance_threshold TYPE @extschema@.amount USING pg_catalog.trim_scale(low_balance_threshold),
    ALTER COLUMN metadata TYPE @extschema@.json_object,
    ADD COLUMN slots integer NOT NULL DEFAULT 0;

ALTER TABLE @extschema@.ledger
    DROP CONSTRAINT ledger_kind,
    DROP CONSTRAINT ledger_idempotency_key,
    ALTER COLUMN account TYPE text COLLATE "C",
    ALTER COLUMN amount TYPE @extschema@.amount USING pg_catalog.trim_scale(amount),
    ALTER COLUMN balance_after TYPE @extschema@.amount USING pg_catalog.trim_scale(balance_after),
    ALTER COLUMN balance_after DROP NOT NULL,
    ALTER COLUMN kind TYPE @extschema@.entry_kind,
    ALTER COLUMN metadata TYPE @extschema@.json_object;

COMMENT ON TABLE @extschema@.accounts IS
    'Prepaid credit accounts. balance never goes below min_balance; every change of balance has a ledger entry. '
    'For a hot account (slots > 0), balance is the part not spread over credits.account_slots: use credits.balance().';

-- Partial: most charges carry no key, and they then cost no entry in this index.
CREATE UNIQUE INDEX ledger_idempotency_key ON @extschema@.ledger (account, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- An account's history by time (statements, usage over a period) without reading the
-- rest of its entries. created_at is the writing transaction's start time, now().
CREATE INDEX ledger_account_created_at ON @extschema@.ledger (account, created_at);

COMMENT ON TABLE @extschema@.ledger IS
    'Append-only journal: one signed entry per balance change; for every account, balance = sum(amount). '
    'balance_after is NULL for entries a hot account took from one of its slots.';

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

DROP FUNCTION @extschema@.set_limits(text, numeric, numeric);

-- The functions new in 0.2.0 (as cargo pgrx generates them).
-- pg_credits::batch::charge_many
CREATE  FUNCTION "charge_many"(
	"accounts" TEXT[], /* :: std :: option :: Option < Vec < Option < String > > > */
	"costs" NUMERIC[], /* :: std :: option :: Option < Vec < Option < AnyNumeric > > > */
	"idempotency_keys" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Vec < Option < String > > > */
	"reason" TEXT DEFAULT NULL, /* Option < & str > */
	"all_or_nothing" bool DEFAULT false /* Option < bool > */
) RETURNS TABLE (
	"item" INT,  /* i32 */
	"account" TEXT,  /* String */
	"cost" NUMERIC,  /* AnyNumeric */
	"status" TEXT,  /* & '_ str */
	"balance" NUMERIC,  /* Option < AnyNumeric > */
	"error" jsonb  /* Option < JsonB > */
)
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'charge_many_wrapper';

-- pg_credits::plans::is_direct_write
CREATE  FUNCTION "is_direct_write"(
	"account" TEXT /* & str */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'is_direct_write_wrapper';

-- pg_credits::accounts::set_limits
CREATE  FUNCTION "set_limits"(
	"account" TEXT, /* Option < & str > */
	"min_balance" NUMERIC /* Option < AnyNumeric > */
) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_floor_wrapper';

-- pg_credits::accounts::set_limits
CREATE  FUNCTION "set_limits"(
	"account" TEXT, /* Option < & str > */
	"min_balance" NUMERIC, /* Option < AnyNumeric > */
	"low_balance_threshold" NUMERIC /* Option < AnyNumeric > */
) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_limits_wrapper';

-- pg_credits::hot::set_slots
CREATE  FUNCTION "set_slots"(
	"account" TEXT, /* Option < & str > */
	"slots" INT /* Option < i32 > */
) RETURNS void
VOLATILE SECURITY DEFINER PARALLEL UNSAFE
SET search_path TO pg_catalog, @extschema@, pg_temp
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'set_slots_wrapper';

ALTER FUNCTION @extschema@.charge(text, numeric, text, text, jsonb) RESET search_path;
ALTER FUNCTION @extschema@.recharge(text, numeric, text, text, jsonb) RESET search_path;
ALTER FUNCTION @extschema@.balance(text) RESET search_path;
ALTER FUNCTION @extschema@.can_afford(text, numeric) RESET search_path;

-- AFTER, not BEFORE: a BEFORE row trigger makes PostgreSQL lock the row a second time
-- before it even looks at the WHEN clause, on every charge. is_direct_write() is false
-- for the rows pg_credits' own functions are writing, so the money path never fires it.
CREATE TRIGGER guard_update
    AFTER UPDATE ON @extschema@.accounts
    FOR EACH ROW WHEN (@extschema@.is_direct_write(NEW.account))
    EXECUTE FUNCTION @extschema@.guard_accounts();

-- A direct INSERT of an account with money or slots, or of a slot, is reconciled at
-- commit: after a restore every table is loaded by then.
CREATE CONSTRAINT TRIGGER reconcile_inserted_account
    AFTER INSERT ON @extschema@.accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.balance OPERATOR(pg_catalog.<>) 0 OR NEW.slots OPERATOR(pg_catalog.<>) 0)
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

CREATE TRIGGER refuse_delete_with_balance
    BEFORE DELETE ON @extschema@.accounts
    FOR EACH ROW WHEN (OLD.balance OPERATOR(pg_catalog.<>) 0 OR OLD.slots OPERATOR(pg_catalog.<>) 0)
    EXECUTE FUNCTION @extschema@.refuse_write();

-- The slots of hot accounts change only through pg_credits; a direct INSERT (a restore)
-- must leave each account with exactly its slots, checked at commit.
CREATE TRIGGER refuse_direct_write
    AFTER UPDATE ON @extschema@.account_slots
    FOR EACH ROW WHEN (@extschema@.is_direct_write(NEW.account))
    EXECUTE FUNCTION @extschema@.refuse_write();

CREATE CONSTRAINT TRIGGER reconcile_inserted_slot
    AFTER INSERT ON @extschema@.account_slots
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (@extschema@.is_direct_write(NEW.account))
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

CREATE TRIGGER refuse_direct_delete
    AFTER DELETE ON @extschema@.account_slots
    FOR EACH ROW WHEN (@extschema@.is_direct_write(OLD.account))
    EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER refuse_truncate
    BEFORE TRUNCATE ON @extschema@.account_slots
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER append_only
    BEFORE UPDATE ON @extschema@.events
    FOR EACH ROW EXECUTE FUNCTION @extschema@.refuse_write();

SELECT pg_catalog.pg_extension_config_dump('credits.account_slots'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.events'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.events_id_seq'::pg_catalog.regclass, '');
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.is_direct_write(text) TO PUBLIC;
