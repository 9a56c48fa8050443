-- PostgreSQL has its own pg_catalog.charge("char", "char"): the >= of type "char". It is
-- searched before any schema in search_path, so an unqualified charge() with two untyped
-- literals (what drivers send for string parameters) calls it, returns a boolean and
-- charges nothing. Always call credits.charge.
\set VERBOSITY sqlstate
SELECT credits.create_account('unq', 10);
-- The safe way: schema-qualified, whatever the argument types.
SELECT credits.charge('unq', '3');
-- The unsafe way, with the default search_path: PostgreSQL's "char" comparison.
SELECT charge('unq', '3') AS not_a_charge;
SELECT credits.balance('unq') AS still_7;
-- With credits on the search path (ALTER ROLE app SET search_path = credits, public; as
-- below), an untyped call becomes an ambiguity error instead of a silent no-op ...
CREATE ROLE app_unqualified LOGIN;
GRANT USAGE ON SCHEMA credits TO app_unqualified;
GRANT EXECUTE ON FUNCTION credits.charge(text, numeric, text, text, jsonb) TO app_unqualified;
ALTER ROLE app_unqualified SET search_path = credits, public;
\c - app_unqualified
\set VERBOSITY sqlstate
SHOW search_path;
SELECT charge('unq', '3');
-- ... and a call with typed arguments (or a typed cost) reaches credits.charge.
SELECT charge('unq'::text, 3);
SELECT charge('unq', 3::numeric);
SELECT charge('unq', '1'::numeric, 'GET /v1/search');
\c - postgres
SELECT credits.balance('unq') AS after_three_charges;
DROP OWNED BY app_unqualified;
DROP ROLE app_unqualified;
