#!/usr/bin/env bash
# Commit-to-NOTIFY latency of the relay in a cluster of tenants: 50
# databases with the extension and 20 without, event_store.max_relay_workers
# = 8.  Run on demand (not part of bench/run.sh nor of the tests):
#
#   bash bench/relay_tenants.sh            about 3 minutes
#
# (as root, Debian 12, PostgreSQL 15; PG_CONFIG chooses the installation.)
# Prints, for each scenario, what tools/es_relay_bench measured: a LISTEN
# client on the tenant's routed channel, one message per transaction.
#   idle tenant:  2 messages/s to a tenant whose worker has left before each
#                 one (event_store.relay_idle_timeout = 0): every message
#                 waits for the launcher to start a worker;
#   busy tenant:  1,000 messages/s to one tenant while 10 other tenants each
#                 send 100 messages/s;
#   idle among busy: 2 messages/s to an idle tenant while those 11 are busy.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

tenants=50
plain=20
seconds=${BENCH_SECONDS:-20}

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 librdkafka-dev librabbitmq-dev libpq-dev
echo "building and installing event_store"
build_and_install "$here"

start_cluster "
shared_preload_libraries = 'event_store'
event_store.max_relay_workers = 8
max_worker_processes = 20
max_connections = 100
shared_buffers = 512MB
"
dir=$CLUSTER_DIR
export PGHOST=$dir PGPORT=$CLUSTER_PORT
sql() { as_pg psql -X -q -At -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }

echo "creating $tenants tenants and $plain databases without the extension"
sql postgres "CREATE DATABASE tenant_template"
sql tenant_template "CREATE EXTENSION event_store"
sql tenant_template "SELECT event_store.relay_route('orders', 'notify:orders')"
for i in $(seq 1 $tenants); do sql postgres "CREATE DATABASE tenant_$i TEMPLATE tenant_template"; done
for i in $(seq 1 $plain); do sql postgres "CREATE DATABASE plain_$i"; done

bench() { # DB RATE
    as_pg "$here/tools/es_relay_bench" -d "host=$dir port=$CLUSTER_PORT dbname=$1" \
        -t orders -c orders -r "$2" -s "$seconds"
}

sql postgres "ALTER SYSTEM SET event_store.relay_idle_timeout = 0"
sql postgres "SELECT pg_reload_conf()" >/dev/null
sleep 1
echo "idle tenant (its worker left before each message): $(bench tenant_7 2)"

sql postgres "ALTER SYSTEM SET event_store.relay_idle_timeout = 1"
sql postgres "SELECT pg_reload_conf()" >/dev/null
sleep 2
pids=()
for i in $(seq 11 20); do
    bench "tenant_$i" 100 >/dev/null & pids+=($!)
done
bench tenant_3 1000 > "$dir/busy" & pids+=($!)
sleep 1
idle=$(bench tenant_8 2)
wait "${pids[@]}" || true
echo "idle tenant among 11 busy ones: $idle"
echo "busy tenant (1,000 messages/s, 10 others at 100/s): $(cat "$dir/busy")"
