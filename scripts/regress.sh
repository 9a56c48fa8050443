#!/usr/bin/env bash
# Runs the golden SQL files of tests/regress against the throwaway cluster.
# With --accept, copies the results over the expected outputs (review the diff!).
source "$(dirname "$0")/common.sh"
PG_REGRESS=$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress
out="$ROOT/target/regress"
mkdir -p "$out"
tests=$(cd "$ROOT/tests/regress/sql" && ls *.sql | sed 's/\.sql$//')
status=0
psql -q -d postgres -c "DROP DATABASE IF EXISTS credits_regress WITH (FORCE)" -c "CREATE DATABASE credits_regress"
# shellcheck disable=SC2086
"$PG_REGRESS" --use-existing --bindir="$PG_BIN" --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
    --dbname=credits_regress --inputdir="$ROOT/tests/regress" --outputdir="$out" $tests || status=$?
if [ "${1:-}" = "--accept" ]; then
    for t in $tests; do cp "$out/results/$t.out" "$ROOT/tests/regress/expected/$t.out"; done
    exit 0
fi
[ $status -eq 0 ] || cat "$out/regression.diffs"
exit $status
