-- Triggers and privileges, created after the functions they use. Operators are
-- schema-qualified so that nothing in a search_path can stand in for them.

CREATE TRIGGER guard_insert
    BEFORE INSERT ON @extschema@.accounts
    FOR EACH ROW EXECUTE FUNCTION @extschema@.guard_accounts();

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
    FOR EACH ROW WHEN (NEW.balance OPERATOR(pg_catalog.<>) 0 OR NEW.slots OPERATOR(pg_catalog.<>) 0
                       OR NEW.held OPERATOR(pg_catalog.<>) 0 OR NEW.has_grants)
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

CREATE TRIGGER refuse_delete_with_balance
    BEFORE DELETE ON @extschema@.accounts
    FOR EACH ROW WHEN (OLD.balance OPERATOR(pg_catalog.<>) 0 OR OLD.slots OPERATOR(pg_catalog.<>) 0
                       OR OLD.held OPERATOR(pg_catalog.<>) 0 OR OLD.has_grants)
    EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER refuse_truncate
    BEFORE TRUNCATE ON @extschema@.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER append_only
    BEFORE UPDATE OR DELETE ON @extschema@.ledger
    FOR EACH ROW EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER refuse_truncate
    BEFORE TRUNCATE ON @extschema@.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_write();

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

-- Trigger functions write the ledger for whoever made the direct write, so they run as
-- the extension's owner, with a pinned search_path like every other function.
ALTER FUNCTION @extschema@.guard_accounts() SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.reconcile_inserted_account() SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.refuse_write() SET search_path = pg_catalog, @extschema@, pg_temp;

-- pg_dump keeps the rows of the tables and the ledger's id sequence. Restore with
-- pg_restore --single-transaction (or psql -1): see "Backup and restore" in the README.
SELECT pg_catalog.pg_extension_config_dump('credits.accounts'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger_id_seq'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.account_slots'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.events'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.events_id_seq'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.account_grants'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.account_grants_grant_id_seq'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.holds'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.holds_hold_id_seq'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.transfer_ids'::pg_catalog.regclass, '');

-- Nothing is usable until granted: see "Roles and grants" in the README.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
-- Except the test in the guards' WHEN clauses, which every writer evaluates (it only
-- reads which rows the running pg_credits function is writing).
GRANT EXECUTE ON FUNCTION @extschema@.is_direct_write(text) TO PUBLIC;
