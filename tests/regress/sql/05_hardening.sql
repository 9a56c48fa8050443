-- "Security Considerations for Extensions", read back from the catalog.
-- Every function pins its search path: with SET search_path, or, on the money path
-- (balance, can_afford, charge, charge_many, recharge: no settings below), per statement
-- inside the function (src/plans.rs). is_direct_write runs no SQL.
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer, p.proconfig AS settings
  FROM pg_proc p WHERE p.pronamespace = 'credits'::regnamespace ORDER BY p.oid::regprocedure::text;
-- PUBLIC may execute nothing but is_direct_write (the guards' WHEN clauses call it for
-- every writer), and may read or write nothing:
SELECT p.oid::regprocedure AS executable_by_public FROM pg_proc p
 WHERE p.pronamespace = 'credits'::regnamespace AND has_function_privilege('public', p.oid, 'EXECUTE');
SELECT c.relname AS usable_by_public FROM pg_class c
 WHERE c.relnamespace = 'credits'::regnamespace
   AND (SELECT bool_or(has_table_privilege('public', c.oid, p))
          FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p);
-- pg_dump keeps the rows of the tables and the ledger's sequence:
SELECT c::regclass AS dumped_with_data FROM pg_extension, unnest(extconfig) c
 WHERE extname = 'pg_credits' ORDER BY c::regclass::text;
-- The triggers that hold the rules for every writer:
SELECT tgrelid::regclass AS "table", tgname, tgdeferrable AS deferred FROM pg_trigger
 WHERE tgrelid IN ('credits.accounts'::regclass, 'credits.ledger'::regclass, 'credits.account_slots'::regclass)
   AND NOT tgisinternal
 ORDER BY tgrelid::regclass::text, tgname;
