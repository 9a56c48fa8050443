#!/usr/bin/env bash
# Runs the benchmark suite on a cluster of its own (port 289NN for PostgreSQL NN, which
# PG_CREDITS_PG picks as for every script), with durable settings (fsync on; each row
# runs with synchronous_commit off and on). --quick for a short run.
export PG_CREDITS_CLUSTER=bench-cluster PG_CREDITS_PORT=${PG_CREDITS_BENCH_PORT:-289${PG_CREDITS_PG:-15}}
source "$(dirname "$0")/../scripts/common.sh"
setup_everything
python3 "$ROOT/bench/run.py" "$@"
