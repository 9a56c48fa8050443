-- Holds and grants. The 5-grant accounts have five grants of 1 each ahead of their own
-- balance, so a charge of 5 draws from all five; the charge is rolled back (and so is
-- the plain charge it is compared with) so the grants are never used up. The 1- and
-- 1,000-grant accounts pay from their first grant, which lasts the whole run.
INSERT INTO credits.accounts (account, balance)
SELECT 'g5-' || i, 1e12 FROM generate_series(1, 1000) i;
-- The grant's arguments depend on k: otherwise the planner may call it once per account.
SELECT count(*) FROM generate_series(1, 1000) a, generate_series(1, 5) k,
       LATERAL credits.grant('g5-' || a, 1, priority => 9 + k) g;
SELECT count(*) FROM generate_series(1, 20) a, LATERAL credits.grant('g1-' || a, 1e12) g;
SELECT format('SELECT count(*) FROM generate_series(1, 50) k,
                        LATERAL credits.grant(%L, 1e9, priority => 1 + (%s + k) %% 90) g', 'g1000-' || a, c)
  FROM generate_series(1, 20) a, generate_series(0, 950, 50) c \gexec
