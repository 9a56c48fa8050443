-- Transfers, as SQL in and text out: one statement moves credit between two accounts.
\set VERBOSITY sqlstate
SET timezone = 'UTC';

SELECT credits.create_account('team-lead', 100), credits.create_account('member', 5);
SELECT * FROM credits.transfer('team-lead', 'member', 30, reason => 'monthly allowance');
SELECT credits.balance('team-lead'), credits.balance('member');
-- Both sides share the transfer's id; the ledger of each account still adds up.
SELECT account, amount, balance_after, kind, reason, transfer_id FROM credits.ledger
 WHERE transfer_id IS NOT NULL ORDER BY id;

-- The source pays as a charge would: its floor and holds count, PT402 when it cannot.
SELECT credits.set_limits('team-lead', 20);
SELECT hold_id FROM credits.hold('team-lead', 40);
SELECT * FROM credits.transfer('team-lead', 'member', 10.01);
SELECT * FROM credits.transfer('team-lead', 'member', 10);
SELECT credits.balance('team-lead'), credits.available('team-lead'), credits.balance('member');

-- A replay by key returns the first outcome; the key reused otherwise is PT409.
SELECT credits.create_account('payer', 50);
SELECT * FROM credits.transfer('payer', 'member', 5, idempotency_key => 'allowance-2026-12');
SELECT * FROM credits.transfer('payer', 'member', 5, idempotency_key => 'allowance-2026-12');
SELECT * FROM credits.transfer('payer', 'member', 6, idempotency_key => 'allowance-2026-12');
SELECT * FROM credits.transfer('payer', 'team-lead', 5, idempotency_key => 'allowance-2026-12');
SELECT credits.balance('payer');

-- Promotional credit keeps what makes it promotional: the destination receives a grant
-- of the same category, priority and expiry, spent in the source's burn order.
SELECT credits.create_account('promo-source', 10);
SELECT grant_id FROM credits.grant('promo-source', 8, 'promotional', priority => 5,
                                   expires_at => '2027-01-01 00:00+00');
SELECT * FROM credits.transfer('promo-source', 'member', 12);
SELECT account, amount, kind, grant_id IS NOT NULL AS from_a_grant FROM credits.ledger
 WHERE transfer_id = (SELECT max(transfer_id) FROM credits.ledger) ORDER BY id;
SELECT account, amount, remaining, category, priority, expires_at, status FROM credits.grants
 WHERE account IN ('promo-source', 'member') AND category = 'promotional' ORDER BY account;

-- A destination in overdraft is repaid first by the grants it receives, as by any grant.
SELECT credits.create_account('team-debtor', 0, min_balance => -20);
SELECT credits.charge('team-debtor', 15);
SELECT grant_id FROM credits.grant('promo-source', 4, 'promotional', priority => 5,
                                   expires_at => '2027-01-01 00:00+00');
SELECT * FROM credits.transfer('promo-source', 'team-debtor', 4);
SELECT credits.balance('team-debtor'), (SELECT remaining FROM credits.grants WHERE account = 'team-debtor' AND grant_id <> 0) AS grant_left;

-- Hot accounts take part like any other; a hot one cannot receive grants.
SELECT credits.create_account('team-busy', 100);
SELECT credits.set_slots('team-busy', 4);
SELECT * FROM credits.transfer('team-busy', 'member', 10);
SELECT credits.create_account('plain-payer', 10);
SELECT * FROM credits.transfer('plain-payer', 'team-busy', 2);
SELECT credits.balance('team-busy'), (SELECT sum(available) FROM credits.account_slots WHERE account = 'team-busy') AS in_slots;
SELECT grant_id FROM credits.grant('promo-source', 1, 'promotional', priority => 1);
SELECT * FROM credits.transfer('promo-source', 'team-busy', 1);

-- Every account reconciles with its ledger.
SELECT account, balance + coalesce((SELECT sum(available) FROM credits.account_slots s WHERE s.account = a.account), 0)
       = (SELECT sum(amount) FROM credits.ledger l WHERE l.account = a.account) AS reconciles
  FROM credits.accounts a
 WHERE account IN ('team-lead', 'member', 'payer', 'promo-source', 'team-debtor', 'team-busy', 'plain-payer') ORDER BY account;

-- What is refused.
SELECT * FROM credits.transfer('member', 'member', 1);
SELECT * FROM credits.transfer('member', 'nobody-here', 1);
SELECT * FROM credits.transfer('nobody-here', 'member', 1);
SELECT * FROM credits.transfer('member', 'payer', 0);
SELECT * FROM credits.transfer('member', 'payer', -1);
SELECT * FROM credits.transfer('member', NULL, 1);
SELECT * FROM credits.transfer('member', '', 1);
