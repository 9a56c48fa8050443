#!/usr/bin/env bash
# Fetches, verifies and unpacks the relocatable PostgreSQL that PG_CREDITS_PG names (16,
# 17 or 18) and writes its pgrx configuration; every other script does this by itself
# when it needs to. Prints where it is. Safe to run again.
#   PG_CREDITS_PG=17 scripts/fetch-postgres.sh
source "$(dirname "$0")/common.sh"
[ "$PG_MAJOR" != 15 ] || { echo "PostgreSQL 15 is Debian's: scripts/quickstart.sh installs it" >&2; exit 2; }
install_system_packages
"$PG_CONFIG" --version
echo "$(dirname "$PG_BIN")"
