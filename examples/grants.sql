-- Grants for the two kinds of callers. Replace app_role and billing_role with your roles.
GRANT USAGE ON SCHEMA credits TO app_role, billing_role;

-- The API's role: spends credits and reads balances, nothing else.
GRANT EXECUTE ON FUNCTION
    credits.charge(text, numeric, text, text, jsonb),
    credits.balance(text),
    credits.can_afford(text, numeric),
    credits.charge_many(text[], numeric[], text[], text, boolean),
    credits.available(text),
    credits.hold(text, numeric, interval, text, text, jsonb),
    credits.capture(bigint, numeric, boolean, text, text, jsonb, text),
    credits.release(bigint, text, text),
    credits.extend_hold(bigint, interval),
    -- The picture of usage: no table privileges needed.
    credits.statement(text, timestamptz, timestamptz, text, text),
    credits.usage(text, timestamptz, timestamptz, text),
    credits.balance_at(text, timestamptz),
    credits.runway(text, interval)
TO app_role;

-- Billing administration: tops accounts up and manages their settings.
GRANT EXECUTE ON FUNCTION
    credits.recharge(text, numeric, text, text, jsonb),
    credits.create_account(text, numeric, numeric, numeric, jsonb),
    credits.set_limits(text, numeric),
    credits.set_limits(text, numeric, numeric),
    credits.set_metadata(text, jsonb),
    credits.set_slots(text, integer),
    credits.balance(text),
    credits.can_afford(text, numeric),
    credits.available(text),
    credits."grant"(text, numeric, text, integer, timestamptz, timestamptz, text, text, jsonb),
    credits.void_grant(bigint, text, text),
    credits.set_grant_expiry(bigint, timestamptz),
    credits.expire_holds(integer),
    credits.expire_grants(integer),
    credits.transfer(text, text, numeric, text, text, jsonb),
    credits.refund(bigint, numeric, text, text, jsonb, boolean),
    credits.statement(text, timestamptz, timestamptz, text, text),
    credits.usage(text, timestamptz, timestamptz, text),
    credits.balance_at(text, timestamptz),
    credits.runway(text, interval)
TO billing_role;
GRANT SELECT ON credits.accounts, credits.ledger, credits.events, credits.grants, credits.active_holds TO billing_role;
-- An alert consumer that prunes what it has processed also needs:
-- GRANT DELETE ON credits.events TO billing_role;
