-- Grants for the two kinds of callers. Replace app_role and billing_role with your roles.
GRANT USAGE ON SCHEMA credits TO app_role, billing_role;

-- The API's role: spends credits and reads balances, nothing else.
GRANT EXECUTE ON FUNCTION
    credits.charge(text, numeric, text, text, jsonb),
    credits.balance(text),
    credits.can_afford(text, numeric),
    credits.charge_many(text[], numeric[], text[], text, boolean)
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
    credits.can_afford(text, numeric)
TO billing_role;
GRANT SELECT ON credits.accounts, credits.ledger, credits.events TO billing_role;
-- An alert consumer that prunes what it has processed also needs:
-- GRANT DELETE ON credits.events TO billing_role;
