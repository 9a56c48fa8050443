# Shared by the scripts: where things are, how to install them, and the throwaway
# cluster. Safe to source more than once; every step checks before it acts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PGRX_HOME="$ROOT/pgrx-config"
export PATH="$HOME/.cargo/bin:$PATH"
export PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.0
export PGPORT=${PG_CREDITS_PORT:-28815}
export PGHOST=127.0.0.1
export PGUSER=postgres
export PGDATABASE=${PG_CREDITS_DB:-credits_demo}

say() { printf '\n==> %s\n' "$*" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# initdb and postgres refuse to run as root: as root, the cluster belongs to `postgres`.
if [ "$(id -u)" = 0 ]; then
    CLUSTER_USER=postgres
    as_cluster() { runuser -u postgres -- "$@"; }
else
    CLUSTER_USER=$(id -un)
    as_cluster() { "$@"; }
fi

# A folder the cluster user can own. Under the project when that user can reach it (it
# cannot, as `postgres`, inside a home directory that is closed to others).
cluster_scratch() {
    local dir="$ROOT/target/pg"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown "$CLUSTER_USER" "$dir"
    if ! as_cluster test -w "$dir" 2>/dev/null; then
        dir=/var/tmp/pg_credits-$(printf '%s' "$ROOT" | md5sum | cut -c1-10)
        mkdir -p "$dir"
        [ "$(id -u)" = 0 ] && chown "$CLUSTER_USER" "$dir"
    fi
    printf '%s' "$dir"
}

# Installs the Debian packages named, if any (apt-get update first, as a fresh machine needs).
apt_install() {
    [ $# -gt 0 ] || return 0
    say "installing Debian packages: $*"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_system_packages() {
    local wanted=(postgresql-15 postgresql-server-dev-15 libclang-dev sudo)
    local missing=()
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    apt_install "${missing[@]}"
}

# What the HTTP examples and the pooler tests need: Node.js with npm, a Python venv with
# psycopg 3, and PgBouncer.
install_example_tools() {
    local missing=()
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
    command -v pgbouncer >/dev/null || missing+=(pgbouncer)
    apt_install "${missing[@]}"
    [ -x "$ROOT/target/venv/bin/python" ] || python3 -m venv "$ROOT/target/venv"
    "$ROOT/target/venv/bin/pip" install -q -r "$ROOT/examples/python/requirements.txt"
    (cd "$ROOT/examples/node" && npm ci --no-audit --no-fund --silent)
    (cd "$ROOT/examples/http-service" && cargo build --quiet)
}

install_cargo_pgrx() {
    if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION"; then
        say "installing cargo-pgrx $PGRX_VERSION (about 5 minutes)"
        cargo install --locked cargo-pgrx --version "$PGRX_VERSION"
    fi
}

# Builds the extension and installs it into the system PostgreSQL 15.
install_extension() {
    say "building and installing pg_credits into PostgreSQL 15"
    local sudo_flag=()
    [ "$(id -u)" = 0 ] || sudo_flag=(--sudo)
    (cd "$ROOT" && cargo pgrx install --release --pg-config "$PG_CONFIG" "${sudo_flag[@]}")
}

# PG_CREDITS_CLUSTER names a second cluster beside the default one (the benchmarks use it).
cluster_dir() { printf '%s/%s' "$(cluster_scratch)" "${PG_CREDITS_CLUSTER:-cluster}"; }

# Starts the throwaway cluster (creating it on first use) and the demo database.
cluster_start() {
    local data
    data=$(cluster_dir)
    if [ ! -f "$data/PG_VERSION" ]; then
        say "creating a throwaway cluster in $data (owner: $CLUSTER_USER, port $PGPORT)"
        as_cluster "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 \
            --locale=C.UTF-8 >/dev/null
        cat >>"$data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data'
max_connections = 200
max_prepared_transactions = 20
fsync = on
synchronous_commit = on
CONF
    fi
    if ! as_cluster "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        say "starting the cluster on 127.0.0.1:$PGPORT"
        # RUST_BACKTRACE makes pgrx append backtraces to error details; the server runs
        # with it so that every test proves the JSON payload survives it.
        as_cluster env RUST_BACKTRACE=full "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" \
            -o "-p $PGPORT" -w start >/dev/null
    fi
}

cluster_stop() {
    local data
    data=$(cluster_dir)
    if [ -f "$data/PG_VERSION" ]; then
        as_cluster "$PG_BIN/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
    fi
}

# A fresh database with the extension installed in it.
fresh_database() {
    local db=$1
    psql -q -d postgres -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
        -c "CREATE DATABASE $db"
    psql -q -d "$db" -v ON_ERROR_STOP=1 -c "CREATE EXTENSION pg_credits"
}

setup_everything() {
    install_system_packages
    install_cargo_pgrx
    install_extension
    cluster_start
}
