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

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 librdkafka-dev librabbitmq-dev
echo "building and installing event_store"
build_and_install "$here"

start_cluster "shared_preload_libraries = 'event_store'"
dir=$CLUSTER_DIR
echo "started a throwaway cluster in $dir"
cp "$here/scripts/demo.sql" "$dir/demo.sql" && chown postgres: "$dir/demo.sql"

as_pg psql -X -h "$dir" -p "$CLUSTER_PORT" -d postgres -v ON_ERROR_STOP=1 --echo-queries -f "$dir/demo.sql"
echo
echo "demo finished"
