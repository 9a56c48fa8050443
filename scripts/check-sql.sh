#!/usr/bin/env bash
# Checks the installed extension script of the current version:
#  - what "Security Considerations for Extensions" asks of its text: no CREATE OR REPLACE,
#    no IF NOT EXISTS, no @extschema@ inside a quoted string;
#  - that released versions are frozen: sql/released/<version>.sql is each released
#    install script. The current version, once released, must still install exactly that
#    (comments aside), and every other released version needs a chain of upgrade scripts
#    sql/pg_credits--<released>--<next>.sql up to the current one. A schema change therefore comes with a
#    version bump and an upgrade script, or this check fails.
source "$(dirname "$0")/common.sh"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
script="$("$PG_CONFIG" --sharedir)/extension/pg_credits--$version.sql"
[ -f "$script" ] || { echo "not installed: $script" >&2; exit 1; }
failed=0
fail() { echo "check-sql: $*" >&2; failed=1; }

normalize() { sed -e 's|/\*[^*]*\*/||g' -e 's/[[:space:]]*--.*$//' -e '/^[[:space:]]*$/d' "$1"; }

grep -nE 'OR REPLACE|IF NOT EXISTS' "$script" && fail "the install script must not use CREATE OR REPLACE or IF NOT EXISTS"
grep -nE "'[^']*@extschema@[^']*'" "$script" && fail "@extschema@ must not appear inside a quoted string"

for released in "$ROOT"/sql/released/*.sql; do
    [ -e "$released" ] || continue
    old=$(basename "$released" .sql)
    if [ "$old" = "$version" ]; then
        diff <(normalize "$released") <(normalize "$script") >/dev/null \
            || fail "version $version is released but its install script changed: bump the version and add sql/pg_credits--$version--<new>.sql"
    else
        # A chain of upgrade scripts from it to this version (ALTER EXTENSION follows it).
        at=$old
        while [ "$at" != "$version" ]; do
            next=$(find "$ROOT/sql" -maxdepth 1 -name "pg_credits--$at--*.sql" -printf '%f\n' | sed "s|^pg_credits--$at--\(.*\)\.sql$|\1|" | sort | head -n 1)
            [ -n "$next" ] || { fail "no upgrade path from $old to $version (sql/pg_credits--$at--<next>.sql)"; break; }
            at=$next
        done
    fi
done
[ $failed -eq 0 ] && echo "check-sql: install script of $version passes"
exit $failed
