SELECT count(*) FROM credits.charge_many(
    ARRAY(SELECT 'acct-' || (1 + (random() * 9999)::int) FROM generate_series(1, 10000)),
    array_fill(0.000001::numeric, ARRAY[10000]));
