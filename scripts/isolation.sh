#!/usr/bin/env bash
# Runs the isolation specs of tests/isolation against the throwaway cluster.
# With --accept, copies the results over the expected outputs (review the diff!).
source "$(dirname "$0")/common.sh"
PG_ISOLATION=$(dirname "$("$PG_CONFIG" --pgxs)")/../test/isolation
out="$ROOT/target/isolation"
mkdir -p "$out"
psql -q -d postgres -c "DROP DATABASE IF EXISTS credits_isolation WITH (FORCE)" -c "CREATE DATABASE credits_isolation"
status=0
"$PG_ISOLATION/pg_isolation_regress" --use-existing --bindir="$PG_BIN" --host="$PGHOST" --port="$PGPORT" --user="$PGUSER" \
    --dbname=credits_isolation --inputdir="$ROOT/tests/isolation" --outputdir="$out" \
    --schedule="$ROOT/tests/isolation/schedule" || status=$?
if [ "${1:-}" = "--accept" ]; then
    cp "$out"/results/*.out "$ROOT/tests/isolation/expected/"
    exit 0
fi
[ $status -eq 0 ] || cat "$out/regression.diffs"
exit $status
