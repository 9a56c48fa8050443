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
    FOR EACH ROW WHEN (NEW.balance OPERATOR(pg_catalog.<>) 0 OR NEW.slots OPERATOR(pg_catalog.<>) 0)
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

CREATE TRIGGER refuse_delete_with_balance
    BEFORE DELETE ON @extschema@.accounts
    FOR EACH ROW WHEN (OLD.balance OPERATOR(pg_catalog.<>) 0 OR OLD.slots OPERATOR(pg_catalog.<>) 0)
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

-- Nothing is usable until granted: see "Roles and grants" in the README.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
-- Except the test in the guards' WHEN clauses, which every writer evaluates (it only
-- reads which rows the running pg_credits function is writing).
GRANT EXECUTE ON FUNCTION @extschema@.is_direct_write(text) TO PUBLIC;
