-- Refunds, as SQL in and text out: a charge or capture entry given back, in parts or
-- whole, never more than it took, to the pool it was drawn from.
\set VERBOSITY sqlstate
SET timezone = 'UTC';

SELECT credits.create_account('refunded', 100);
SELECT credits.charge('refunded', 30, 'gpt-4', metadata => '{"model": "gpt-4"}');
SELECT id AS charge_entry FROM credits.ledger WHERE account = 'refunded' AND kind = 'charge' \gset
-- A part, another part, then the rest (amount => NULL).
SELECT refunded, refundable, balance FROM credits.refund(:charge_entry, 10, reason => 'wrong answer');
SELECT refunded, refundable, balance FROM credits.refund(:charge_entry, 5);
SELECT refunded, refundable, balance FROM credits.refund(:charge_entry);
-- Nothing is left: PT422, whatever is asked.
SELECT * FROM credits.refund(:charge_entry);
SELECT * FROM credits.refund(:charge_entry, 0.01);
SELECT kind, amount, balance_after, reason, refund_of = :charge_entry AS refunds_the_charge
  FROM credits.ledger WHERE account = 'refunded' ORDER BY id;

-- A replay by key returns the first result; the key reused otherwise is PT409.
SELECT credits.charge('refunded', 20, 'search');
SELECT max(id) AS second_charge FROM credits.ledger WHERE account = 'refunded' AND kind = 'charge' \gset
SELECT refunded, refundable, balance FROM credits.refund(:second_charge, 4, idempotency_key => 'refund-1');
SELECT refunded, refundable, balance FROM credits.refund(:second_charge, 4, idempotency_key => 'refund-1');
SELECT * FROM credits.refund(:second_charge, 5, idempotency_key => 'refund-1');
SELECT * FROM credits.refund(:second_charge, 17);

-- Only charges and captures are refunded: not a refund, not a recharge.
SELECT max(id) AS a_refund FROM credits.ledger WHERE account = 'refunded' AND kind = 'refund' \gset
SELECT * FROM credits.refund(:a_refund);
SELECT min(id) AS the_opening FROM credits.ledger WHERE account = 'refunded' \gset
SELECT * FROM credits.refund(:the_opening);

-- A capture is refunded like a charge.
SELECT hold_id AS h FROM credits.hold('refunded', 12) \gset
SELECT captured, released FROM credits.capture(:h, 9);
SELECT max(id) AS capture_entry FROM credits.ledger WHERE account = 'refunded' AND kind = 'capture' \gset
SELECT refunded, refundable, balance FROM credits.refund(:capture_entry);

-- Back to the grant a charge drew from: a grant it used up opens again.
SELECT credits.create_account('promo', 10);
SELECT grant_id AS g FROM credits.grant('promo', 5, 'promotional', priority => 10,
                                        expires_at => '2030-01-01 00:00+00') \gset
SELECT credits.charge('promo', 7);
SELECT status, remaining FROM credits.grants WHERE grant_id = :g;
SELECT id AS from_grant FROM credits.ledger WHERE account = 'promo' AND kind = 'charge' AND grant_id = :g \gset
SELECT refunded, refundable, balance FROM credits.refund(:from_grant, 2);
SELECT status, remaining FROM credits.grants WHERE grant_id = :g;

-- A grant that has since expired takes the refund and loses it at once, unless it is
-- reissued as a new grant of the same category and priority that never expires.
SELECT grant_id AS short FROM credits.grant('promo', 3, 'promotional', priority => 1,
                                            expires_at => clock_timestamp() + interval '1 second') \gset
SELECT credits.charge('promo', 3);
SELECT id AS from_short FROM credits.ledger WHERE account = 'promo' AND kind = 'charge' AND grant_id = :short \gset
SELECT pg_sleep(1.2);
SELECT refunded, refundable, balance FROM credits.refund(:from_short, 1);
SELECT refunded, refundable, balance FROM credits.refund(:from_short, 2, reissue => true);
SELECT kind, amount, grant_id = :short AS to_the_expired_grant, refund_of = :from_short AS refunds_it
  FROM credits.ledger WHERE account = 'promo' AND (refund_of = :from_short OR reason = 'refunded to a closed grant')
 ORDER BY id;
SELECT category, priority, remaining, expires_at, status FROM credits.grants
 WHERE account = 'promo' AND grant_id NOT IN (0, :g, :short);
SELECT credits.balance('promo');

-- Usage nets a refund against the spend it refunds.
SELECT * FROM credits.usage('refunded', now() - interval '1 hour', now() + interval '1 hour');

-- What is refused.
SELECT * FROM credits.refund(NULL);
SELECT * FROM credits.refund(987654321);
SELECT * FROM credits.refund(:second_charge, -1);
SELECT * FROM credits.refund(:second_charge, 0);
SELECT * FROM credits.refund(:second_charge, reissue => NULL);

-- Every account reconciles with its ledger, and every grant with its entries.
SELECT a.account, a.balance = (SELECT sum(amount) FROM credits.ledger l WHERE l.account = a.account) AS reconciles
  FROM credits.accounts a WHERE a.account IN ('refunded', 'promo') ORDER BY 1;
SELECT g.grant_id = :g AS first, g.remaining + g.held = (SELECT coalesce(sum(amount), 0) FROM credits.ledger l
                                                           WHERE l.account = g.account AND l.grant_id = g.grant_id) AS reconciles
  FROM credits.account_grants g WHERE g.account = 'promo' AND g.grant_id <> 0 ORDER BY g.grant_id;
