#!/usr/bin/env bash
# Sends per second to a topic delivered through the WAL, against the plain
# INSERT + DELETE queue of bench/setup.sql and a table topic, side by side
# on one cluster (wal_level = logical, durable commits), in alternating
# rounds.  Run on demand (not part of bench/run.sh nor of the tests):
#
#   bash bench/wal_topics.sh         about 2 minutes
#
# (as root, Debian 12, PostgreSQL 15; PG_CONFIG chooses the installation.)
#   wal topic:   4 clients outbox_send to a WAL topic while pg_recvlogical
#                decodes the slot (test_decoding) to /dev/null;
#   plain queue: 4 clients INSERT while 4 others DELETE ... SKIP LOCKED in
#                batches of 10 (the consumer a WAL topic does not need);
#   table topic: 4 clients outbox_send to an ordinary topic (no consumer).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

seconds=${BENCH_SECONDS:-10}
rounds=${BENCH_ROUNDS:-2}

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 libpq-dev
echo "building and installing event_store"
build_and_install "$here"

start_cluster "
shared_preload_libraries = 'event_store'
wal_level = logical
max_replication_slots = 4
max_wal_senders = 4
fsync = on
synchronous_commit = on
shared_buffers = 512MB
max_wal_size = 4GB
max_connections = 50
autovacuum_naptime = 10s
"
dir=$CLUSTER_DIR
export PGHOST=$dir PGPORT=$CLUSTER_PORT PGDATABASE=bench
as_pg createdb bench
sql() { as_pg psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }
as_pg psql -X -q -v ON_ERROR_STOP=1 -f "$here/bench/setup.sql" >/dev/null
sql "SELECT event_store.outbox_configure('cdc', delivery => 'wal')" >/dev/null
sql "SELECT pg_create_logical_replication_slot('bench', 'test_decoding')" >/dev/null
cp "$here"/bench/*.sql "$dir/" && chown postgres: "$dir"/*.sql

tps() { # CLIENTS SCRIPT
    as_pg pgbench -n -c "$1" -j 2 -T "$seconds" -f "$dir/$2" 2>/dev/null |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p' | cut -d. -f1
}

as_pg pg_recvlogical -d bench -S bench --start --no-loop -f /dev/null &
decoder=$!
trap 'pkill -P $decoder 2>/dev/null || true; as_pg pg_ctl -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT

for r in $(seq 1 "$rounds"); do
    w=$(tps 4 wal_send.sql)
    as_pg pgbench -n -c 4 -j 2 -T "$seconds" -f "$dir/queue_consume.sql" >/dev/null 2>&1 &
    consumers=$!
    q=$(tps 4 queue_send.sql)
    wait $consumers
    t=$(tps 4 send.sql)
    sql "TRUNCATE event_store.outbox" >/dev/null
    echo "round $r: wal topic $w sends/s, plain queue $q sends/s, table topic $t sends/s"
done
