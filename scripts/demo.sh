#!/usr/bin/env bash
# A walk through event_store on a throwaway cluster: append, a version
# conflict, reads, the outbox, the relay publishing to a listener, and a
# subscription woken by a notification.  Prints every statement and its
# result.
#
# Usage (as root, on Debian 12 with PostgreSQL 15):  bash scripts/demo.sh
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

ensure_packages build-essential postgresql-15 postgresql-server-dev-15
echo "building and installing event_store"
build_and_install "$here"

dir=$(mktemp -d /tmp/event_store_demo.XXXXXX)
chown postgres: "$dir"
cleanup() {
    as_pg pg_ctl -D "$dir/data" -m fast stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

echo "starting a throwaway cluster in $dir"
as_pg initdb -D "$dir/data" -A trust >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
shared_preload_libraries = 'event_store'
listen_addresses = ''
unix_socket_directories = '$dir'
port = 5432
CONF
as_pg pg_ctl -D "$dir/data" -l "$dir/log" -w start >/dev/null
cp "$here/scripts/demo.sql" "$dir/demo.sql" && chown postgres: "$dir/demo.sql"

as_pg psql -X -h "$dir" -d postgres -v ON_ERROR_STOP=1 --echo-queries -f "$dir/demo.sql"
echo
echo "demo finished"
