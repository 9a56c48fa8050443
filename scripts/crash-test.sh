#!/usr/bin/env bash
# The long crash test: 10 kills of the postmaster, 15 s apart, against the throwaway
# cluster (scripts/quickstart.sh makes it). CRASH_KILLS and CRASH_SECONDS_BETWEEN override.
source "$(dirname "$0")/common.sh"
cluster_start
cd "$ROOT/tests"
CRASH_KILLS=${CRASH_KILLS:-10} CRASH_SECONDS_BETWEEN=${CRASH_SECONDS_BETWEEN:-15} \
    PG_CREDITS_DATA="$(cluster_dir)" PG_CREDITS_START="$ROOT/scripts/cluster.sh start" \
    cargo test --test crash -- --nocapture
