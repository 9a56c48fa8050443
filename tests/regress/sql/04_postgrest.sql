-- PostgREST: by default PT402 and PT404 reach PostgREST as SQLSTATE PT402/PT404, which it
-- answers with HTTP 402/404 and {"code", "message", "details", "hint"}, where "details"
-- is the JSON payload as text. With credits.error_style = 'postgrest' pg_credits raises
-- PostgREST's documented PGRST form instead: MESSAGE is the JSON body, DETAIL the status
-- and headers.
SELECT credits.create_account('rest', 1);
\set VERBOSITY verbose
SELECT credits.charge('rest', 2);
SET credits.error_style = 'postgrest';
SELECT credits.charge('rest', 2);
SELECT credits.balance('nowhere');
\set VERBOSITY terse
-- What PostgREST reads: MESSAGE and DETAIL both parse as JSON, and "details" inside the
-- body is the standard payload, itself valid JSON.
DO $$
DECLARE state text; body jsonb; response jsonb;
BEGIN
    PERFORM credits.charge('rest', 2);
EXCEPTION WHEN SQLSTATE 'PGRST' THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, body = MESSAGE_TEXT, response = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'sqlstate %, status %, code %, shortfall %, header %', state, response->'status',
        body->>'code', (body->>'details')::jsonb->>'shortfall', response->'headers'->>'X-Credits-Required';
END $$;
RESET credits.error_style;
SELECT credits.charge('rest', 2);
SET credits.error_style = 'graphql';
