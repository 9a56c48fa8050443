#!/usr/bin/env bash
# Installs everything pg_credits needs, starts a throwaway PostgreSQL 15 cluster with the
# extension, and runs a short demo that hits the 402.
source "$(dirname "$0")/common.sh"
setup_everything
fresh_database "$PGDATABASE"
say "demo"
psql -X -d "$PGDATABASE" -v ON_ERROR_STOP=0 -f "$ROOT/examples/demo.sql"
cat <<MSG

pg_credits is installed in database '$PGDATABASE' of the throwaway cluster.
Connect with:   psql -h $PGHOST -p $PGPORT -U $PGUSER $PGDATABASE
Stop it with:   scripts/cluster.sh stop
MSG
