SELECT count(*) FROM credits.charge_many(
    ARRAY(SELECT 'acct-' || i FROM generate_series(1, 10000) i),
    array_fill(0.000001::numeric, ARRAY[10000]));
