-- The picture of usage, as SQL in and text out: statements, balances in the past, spend
-- by reason, runway. A history restored as pg_restore would (the account row and its
-- entries in one transaction, the balance equal to their sum) gives fixed times, across
-- the end of summer time in Paris (2026-10-25, 03:00 CEST -> 02:00 CET).
\set VERBOSITY sqlstate
SET timezone = 'UTC';

BEGIN;
INSERT INTO credits.accounts (account, balance, created_at) VALUES ('history', 125, '2026-10-20 00:00+00');
INSERT INTO credits.ledger (account, amount, kind, reason, metadata, created_at) VALUES
    ('history', 100, 'opening', 'initial balance', NULL, '2026-10-20 00:00+00'),
    ('history', -10, 'charge', 'gpt-4', '{"model": "gpt-4"}', '2026-10-24 10:00+02'),
    ('history', -5, 'charge', 'embed', '{"model": "ada"}', '2026-10-25 01:30+02'),
    ('history', -7, 'charge', 'gpt-4', '{"model": "gpt-4"}', '2026-10-25 23:30+01'),
    ('history', 50, 'recharge', 'card', NULL, '2026-10-26 12:00+01'),
    ('history', -3, 'charge', 'gpt-4', NULL, '2026-10-27 09:00+01');
COMMIT;
SELECT credits.balance('history');

-- One period: opening + credited - debited - expired = closing.
SELECT * FROM credits.statement('history', '2026-10-24 00:00+02', '2026-10-28 00:00+01');
-- Per day in Paris: the day the clocks go back has 25 hours.
SELECT period_start AT TIME ZONE 'Europe/Paris' AS day, period_end - period_start AS length,
       opening, credited, debited, expired, closing
  FROM credits.statement('history', '2026-10-24 00:00+02', '2026-10-28 00:00+01', 'day', 'Europe/Paris');
-- The same span in UTC: periods cut at UTC midnights, the first and last partial.
SELECT period_start, period_end, opening, debited, closing
  FROM credits.statement('history', '2026-10-24 00:00+02', '2026-10-28 00:00+01', 'day');
-- Weeks start on Monday; a span before the account was opened is all zeros.
SELECT period_start, period_end, opening, credited, debited, closing
  FROM credits.statement('history', '2026-10-12 00:00+00', '2026-11-02 00:00+00', 'week');

-- The balance at a time: its entries at or before it; NULL before the account was opened.
SELECT credits.balance_at('history', '2026-10-19 23:59:59+00') AS before_opening,
       credits.balance_at('history', '2026-10-20 00:00+00') AS at_opening,
       credits.balance_at('history', '2026-10-25 12:00+01') AS mid_sunday,
       credits.balance_at('history', now()) = credits.balance('history') AS now_is_the_balance;

-- Spend per reason, per metadata key (entries without the key under NULL).
SELECT * FROM credits.usage('history', '2026-10-01', '2026-11-01');
SELECT * FROM credits.usage('history', '2026-10-01', '2026-11-01', 'metadata.model');
SELECT * FROM credits.usage('history', '2026-10-25', '2026-10-26');

-- Runway: no spend in the last 7 days, so no run-out time.
SELECT * FROM credits.runway('history');
SELECT credits.charge('history', 25, 'gpt-4');
SELECT spendable, spent, per_day, runs_out_at > now() + interval '20 days' AS weeks_away
  FROM credits.runway('history');
-- 25 in the last hour: 100 last four hours.
SELECT spendable, spent, runs_out_at BETWEEN now() + interval '3 hours 59 minutes' AND now() + interval '4 hours 1 minute' AS in_four_hours
  FROM credits.runway('history', interval '1 hour');

-- An expiry counts at the grant's expiry even before any writer records it.
SELECT credits.create_account('trial', 10);
SELECT grant_id FROM credits.grant('trial', 5, 'promotional', expires_at => clock_timestamp() + interval '1 second');
SELECT pg_sleep(1.2);
SELECT opening, credited, debited, expired, closing,
       closing = credits.balance('trial') AS closing_is_the_balance
  FROM credits.statement('trial', now() - interval '1 hour', now() + interval '1 hour');
SELECT count(*) AS expiry_entries FROM credits.ledger WHERE account = 'trial' AND kind = 'expiry';
SELECT credits.expire_grants();
SELECT opening, credited, debited, expired, closing
  FROM credits.statement('trial', now() - interval '1 hour', now() + interval '1 hour');

-- What is refused.
SELECT * FROM credits.statement('history', '2026-10-28', '2026-10-24');
SELECT * FROM credits.statement('history', '-infinity', '2026-10-24');
SELECT * FROM credits.statement('history', '2000-01-01', '2026-10-24', 'hour');
SELECT * FROM credits.statement('history', '2026-10-24', '2026-10-28', 'fortnight');
SELECT * FROM credits.statement('history', '2026-10-24', '2026-10-28', 'day', 'Mars/Olympus');
SELECT * FROM credits.statement('no-such-account', '2026-10-24', '2026-10-28');
SELECT credits.balance_at('no-such-account', now());
SELECT credits.balance_at('history', NULL);
SELECT * FROM credits.usage('history', '2026-10-01', '2026-11-01', 'color');
SELECT * FROM credits.usage('history', '2026-10-01', '2026-11-01', 'metadata.');
SELECT * FROM credits.runway('history', interval '0');
SELECT * FROM credits.runway('no-such-account');
