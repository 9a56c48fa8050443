#!/usr/bin/env bash
# Runs the whole test suite: installs what is missing, rebuilds and reinstalls the
# extension, restarts the throwaway cluster, then runs
#   1. the in-backend #[pg_test]s (cargo pgrx test, on a cluster of its own),
#   2. the upgrade from every released version (scripts/upgrade-test.sh), the golden SQL
#      files in tests/regress (pg_regress, SQL in and text out) and the isolation specs in
#      tests/isolation (pg_isolation_regress: races, step by step),
#   3. the client-side tests in tests/ (real connections, SQLSTATEs, races),
#   4. the HTTP examples (Rust, Python, Node.js) driven over loopback, and PgBouncer in
#      front of the cluster (tests/poolers).
source "$(dirname "$0")/common.sh"
# The tests need the release build's behaviour, not its last percent of speed: a release
# profile that builds in a fraction of the time (bench/run.sh builds the real one).
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
install_system_packages
install_cargo_pgrx

say "1/4 in-backend tests (cargo pgrx test, PostgreSQL $PG_MAJOR)"
runas=()
if [ "$(id -u)" = 0 ]; then
    runas=(--runas postgres --pgdata "$(cluster_scratch)/pgrx-tests-$PG_MAJOR")
fi
(cd "$ROOT" && USER=${USER:-$(id -un)} cargo pgrx test "pg$PG_MAJOR" "${CARGO_FEATURES[@]}" "${runas[@]}")

# cargo pgrx test installed its test build: replace it with the release build, and
# restart the cluster so no backend keeps an old library loaded.
install_extension
cluster_stop
cluster_start

say "2/4 upgrades, golden SQL files (pg_regress) and isolation specs (pg_isolation_regress)"
"$ROOT/scripts/check-sql.sh"
"$ROOT/scripts/upgrade-test.sh"
"$ROOT/scripts/regress.sh"
"$ROOT/scripts/isolation.sh"

say "3/4 client-side tests, then the crash test alone (it kills the cluster)"
(cd "$ROOT/tests" && cargo test -- --skip postmaster_kills)
# The fuzz test above must not have crashed a backend: PostgreSQL logs every one.
if grep -E "terminated by signal|was terminated by exception" "$(cluster_dir)/server.log"; then
    echo "a backend crashed during the tests (see $(cluster_dir)/server.log)" >&2
    exit 1
fi
(cd "$ROOT/tests" && PG_CREDITS_DATA="$(cluster_dir)" PG_CREDITS_START="$ROOT/scripts/cluster.sh start" \
    cargo test --test crash -- --nocapture)
cluster_start

say "4/4 HTTP 402 end to end (Rust, Python and Node.js services), and through PgBouncer"
install_example_tools
(cd "$ROOT" && "$ROOT/target/venv/bin/pytest" -q tests/http tests/poolers)
