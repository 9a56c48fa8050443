-- Triggers and privileges, created after the functions they use. Operators are
-- schema-qualified so that nothing in a search_path can stand in for them.

CREATE TRIGGER guard_insert
    BEFORE INSERT ON @extschema@.accounts
    FOR EACH ROW EXECUTE FUNCTION @extschema@.guard_accounts();

CREATE TRIGGER guard_update
    BEFORE UPDATE ON @extschema@.accounts
    FOR EACH ROW
    WHEN (NEW.balance OPERATOR(pg_catalog.<>) OLD.balance
          OR NEW.min_balance OPERATOR(pg_catalog.<>) OLD.min_balance
          OR NEW.account OPERATOR(pg_catalog.<>) OLD.account)
    EXECUTE FUNCTION @extschema@.guard_accounts();

CREATE CONSTRAINT TRIGGER reconcile_inserted_account
    AFTER INSERT ON @extschema@.accounts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.balance OPERATOR(pg_catalog.<>) 0)
    EXECUTE FUNCTION @extschema@.reconcile_inserted_account();

CREATE TRIGGER refuse_delete_with_balance
    BEFORE DELETE ON @extschema@.accounts
    FOR EACH ROW WHEN (OLD.balance OPERATOR(pg_catalog.<>) 0)
    EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER refuse_truncate
    BEFORE TRUNCATE ON @extschema@.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER notify_low_balance
    AFTER UPDATE ON @extschema@.accounts
    FOR EACH ROW
    WHEN (NEW.low_balance_threshold IS NOT NULL
          AND OLD.balance OPERATOR(pg_catalog.>=) NEW.low_balance_threshold
          AND NEW.balance OPERATOR(pg_catalog.<) NEW.low_balance_threshold)
    EXECUTE FUNCTION @extschema@.notify_low_balance();

CREATE TRIGGER append_only
    BEFORE UPDATE OR DELETE ON @extschema@.ledger
    FOR EACH ROW EXECUTE FUNCTION @extschema@.refuse_write();

CREATE TRIGGER refuse_truncate
    BEFORE TRUNCATE ON @extschema@.ledger
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@.refuse_write();

-- Trigger functions write the ledger for whoever made the direct write, so they run as
-- the extension's owner, with a pinned search_path like every other function.
ALTER FUNCTION @extschema@.guard_accounts() SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.reconcile_inserted_account() SECURITY DEFINER SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.refuse_write() SET search_path = pg_catalog, @extschema@, pg_temp;
ALTER FUNCTION @extschema@.notify_low_balance() SET search_path = pg_catalog, @extschema@, pg_temp;

-- pg_dump keeps the rows of both tables and the ledger's id sequence. Restore with
-- pg_restore --single-transaction (or psql -1): see "Backup and restore" in the README.
SELECT pg_catalog.pg_extension_config_dump('credits.accounts'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger'::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump('credits.ledger_id_seq'::pg_catalog.regclass, '');

-- Nothing is usable until granted: see "Roles and grants" in the README.
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA @extschema@ FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA @extschema@ FROM PUBLIC;
