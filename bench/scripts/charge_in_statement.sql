\set start random(0, 9999)
SELECT count(credits.charge('acct-' || ((:start + i) % 10000 + 1), 1)) FROM generate_series(1, 1000) i;
