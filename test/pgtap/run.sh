#!/usr/bin/env bash
# Run the pgTAP files of this folder with pg_prove against a throwaway
# cluster that preloads event_store.  Run as a user that can run initdb.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
PATH="/usr/lib/postgresql/15/bin:$PATH"
dir=$(mktemp -d /tmp/event_store_pgtap.XXXXXX)
port=$(( 20000 + RANDOM % 10000 ))

cleanup() {
    pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

initdb -D "$dir/data" -A trust >/dev/null
cat "$here/../preload.conf" >> "$dir/data/postgresql.conf"
cat >> "$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = ''
unix_socket_directories = '$dir'
CONF
pg_ctl -D "$dir/data" -l "$dir/log" -w start >/dev/null

export PGHOST=$dir PGPORT=$port PGDATABASE=pgtap
createdb pgtap
psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION event_store'
pg_prove --ext .sql "$here"/*.sql
