#!/usr/bin/env bash
# The upgrade path, checked: for every released version (sql/released/<version>.sql),
# builds that version from the commit that froze it, installs it, fills a database,
# installs the current build, runs ALTER EXTENSION pg_credits UPDATE, and then
#  - compares the upgraded catalog with a fresh install of the current version, object
#    by object (columns in order, constraints, domains, indexes, triggers, functions
#    with their settings, privileges, comments, dump configuration);
#  - checks the data survived (balances equal their ledger sums, idempotency keys still
#    replay) and that the new functions work on it.
# Ends with the current build installed. Run by scripts/test.sh.
source "$(dirname "$0")/common.sh"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
sharedir=$("$PG_CONFIG" --sharedir)
libdir=$("$PG_CONFIG" --pkglibdir)

catalog_of() {
    psql -X -At -d "$1" -v ON_ERROR_STOP=1 <<'SQL'
SELECT line FROM (
    SELECT format('column %s.%s #%s %s %s default %s collate %s', c.relname, a.attname, a.attnum,
                  format_type(a.atttypid, a.atttypmod), CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END,
                  coalesce(pg_get_expr(d.adbin, d.adrelid), '-'), co.collname) AS line
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      LEFT JOIN pg_collation co ON co.oid = a.attcollation
     WHERE c.relnamespace = 'credits'::regnamespace AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL
    SELECT format('constraint %s %s: %s', coalesce(conrelid::regclass::text, contypid::regtype::text), conname,
                  pg_get_constraintdef(oid))
      FROM pg_constraint WHERE connamespace = 'credits'::regnamespace
    UNION ALL
    SELECT format('domain %s: %s collate %s', t.oid::regtype, format_type(t.typbasetype, t.typtypmod), co.collname)
      FROM pg_type t LEFT JOIN pg_collation co ON co.oid = t.typcollation
     WHERE t.typnamespace = 'credits'::regnamespace AND t.typtype = 'd'
    UNION ALL
    SELECT 'index ' || pg_get_indexdef(i.indexrelid)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = 'credits'::regnamespace
    UNION ALL
    SELECT 'trigger ' || pg_get_triggerdef(t.oid)
      FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace = 'credits'::regnamespace AND NOT t.tgisinternal
    UNION ALL
    SELECT format('function %s acl %s: %s', p.oid::regprocedure, p.proacl, pg_get_functiondef(p.oid))
      FROM pg_proc p WHERE p.pronamespace = 'credits'::regnamespace
    UNION ALL
    SELECT format('relation %s %s acl %s comment %s', c.relname, c.relkind, c.relacl, obj_description(c.oid, 'pg_class'))
      FROM pg_class c WHERE c.relnamespace = 'credits'::regnamespace
    UNION ALL
    SELECT 'dumped ' || x::regclass FROM pg_extension, unnest(extconfig) x WHERE extname = 'pg_credits'
) catalog ORDER BY line;
SQL
}

for released in "$ROOT"/sql/released/*.sql; do
    old=$(basename "$released" .sql)
    [ "$old" = "$version" ] && continue
    stage="$ROOT/target/upgrade/pg$PG_MAJOR/$old"
    if [ ! -f "$stage/pg_credits.so" ]; then
        commit=$(git -C "$ROOT" log --diff-filter=A --format=%H -- "sql/released/$old.sql" | tail -n 1)
        [ -n "$commit" ] || { echo "upgrade-test: no commit froze $old (is this a shallow clone?)" >&2; exit 1; }
        say "building pg_credits $old from commit $commit"
        rm -rf "$stage"
        mkdir -p "$stage"
        git -C "$ROOT" worktree add --force --detach "$stage/src" "$commit" >/dev/null
        # A release that knew only PostgreSQL 15 gets the features of the others (its
        # code builds on each unchanged).
        for major in 16 17 18; do
            grep -q "^pg$major = " "$stage/src/Cargo.toml" ||
                sed -i "/^pg15 = /a pg$major = [\"pgrx/pg$major\", \"pgrx-tests/pg$major\"]" "$stage/src/Cargo.toml"
        done
        # A target directory of its own: built into the main one, the old library would
        # overwrite the current one's file while cargo still believed the latter fresh.
        (cd "$stage/src" && CARGO_TARGET_DIR="$ROOT/target/upgrade/build" \
            cargo pgrx package --pg-config "$PG_CONFIG" "${CARGO_FEATURES[@]}" --out-dir "$stage/package" >/dev/null)
        cp "$stage/package$libdir/pg_credits.so" "$stage/pg_credits.so"
        cp "$stage/package$sharedir/extension/pg_credits--$old.sql" "$stage/"
        git -C "$ROOT" worktree remove --force "$stage/src"
    fi

    say "upgrade $old -> $version"
    as_root cp "$stage/pg_credits.so" "$libdir/pg_credits.so"
    as_root cp "$stage/pg_credits--$old.sql" "$sharedir/extension/"
    cluster_stop
    cluster_start
    db="upgrade_from_${old//./_}"
    psql -q -d postgres -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    psql -q -o /dev/null -d "$db" -v ON_ERROR_STOP=1 <<SQL
CREATE EXTENSION pg_credits VERSION '$old';
SELECT credits.create_account('acct-' || i, 100, low_balance_threshold => 10) FROM generate_series(1, 50) i;
SELECT credits.charge('acct-' || (i % 50 + 1), 1.5, idempotency_key => 'req-' || i) FROM generate_series(1, 200) i;
SELECT credits.recharge('acct-7', 25, reason => 'top-up', metadata => '{"invoice": "inv-1"}');
UPDATE credits.accounts SET balance = balance + 3 WHERE account = 'acct-9';
CREATE TABLE public.before_upgrade AS SELECT account, credits.balance(account) AS balance FROM credits.accounts;
SQL

    install_extension >/dev/null
    as_root rm -f "$sharedir/extension/pg_credits--$old.sql"
    cluster_stop
    cluster_start
    psql -q -d "$db" -v ON_ERROR_STOP=1 -c "ALTER EXTENSION pg_credits UPDATE"
    fresh_database upgrade_fresh
    catalog_of upgrade_fresh >"$stage/fresh.catalog"
    catalog_of "$db" >"$stage/upgraded.catalog"
    if ! diff -u "$stage/fresh.catalog" "$stage/upgraded.catalog"; then
        echo "upgrade-test: $old upgraded to $version differs from a fresh install of $version (- fresh, + upgraded)" >&2
        exit 1
    fi
    # Every balance as it was (each own balance is the account's paid grant that never
    # expires), then the old functions and the new ones on the upgraded accounts.
    result=$(psql -X -At -d "$db" -v ON_ERROR_STOP=1 <<'SQL'
SELECT count(*) = 50 FROM public.before_upgrade b WHERE credits.balance(b.account) = b.balance;
SELECT credits.charge('acct-1', 1.5, idempotency_key => 'req-50') = 98.5   -- replayed
       AND credits.balance('acct-1') = 94;
SELECT credits.charge('acct-2', 1) = 93 FROM (SELECT credits.set_slots('acct-2', 4)) made_hot;
SELECT count(*) = 2 FROM credits.charge_many(ARRAY['acct-3', 'acct-4'], ARRAY[1, 1]::numeric[]) WHERE status = 'charged';
SELECT g.remaining = 5 AND g.balance = 99 FROM credits.grant('acct-5', 5, 'promotional') g;
SELECT credits.charge('acct-5', 7) = 92;
SELECT (SELECT remaining FROM credits.grants WHERE account = 'acct-5') = 0
       AND (SELECT remaining FROM credits.account_grants WHERE account = 'acct-5' AND grant_id = 0) = 92;
SELECT h.available = 84 AND c.balance = 90 FROM credits.hold('acct-6', 10) h, LATERAL credits.capture(h.hold_id, 4) c;
SELECT count(*) = 0 FROM credits.accounts a
 WHERE credits.balance(a.account) <> (SELECT sum(amount) FROM credits.ledger l WHERE l.account = a.account)
    OR a.held <> (SELECT coalesce(sum(held_amount), 0) FROM credits.ledger l WHERE l.account = a.account);
SQL
)
    if [ "$result" != $'t\nt\nt\nt\nt\nt\nt\nt\nt' ]; then
        echo "upgrade-test: the upgraded data or functions are wrong:" >&2
        echo "$result" >&2
        exit 1
    fi
    echo "upgrade-test: $old -> $version: catalog identical to a fresh install, data and functions intact"
done
