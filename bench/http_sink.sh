#!/usr/bin/env bash
# The HTTP webhook sink of one relay worker against a local keep-alive
# receiver (bench/webhook_receiver.js, Node.js).  Run on demand (not part
# of bench/run.sh nor of the tests):
#
#   bash bench/http_sink.sh          about a minute
#
# (as root, Debian 12, PostgreSQL 15; PG_CONFIG chooses the installation.)
#   deliveries/s:  a backlog of $BACKLOG signed messages (100 keys) is
#                  released at once; the time until the outbox is empty;
#   latency:       1,000 messages/s for $SECONDS_LATENCY seconds (pgbench
#                  -R); the receiver measures commit-to-request time from
#                  the sender's clock in the payload: p50 and p99.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

backlog=${BACKLOG:-20000}
seconds_latency=${SECONDS_LATENCY:-10}

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 libpq-dev libcurl4-openssl-dev
command -v node >/dev/null || ensure_packages nodejs
echo "building and installing event_store"
build_and_install "$here"

start_cluster "
shared_preload_libraries = 'event_store'
synchronous_commit = on
shared_buffers = 512MB
max_connections = 50
"
dir=$CLUSTER_DIR
export PGHOST=$dir PGPORT=$CLUSTER_PORT PGDATABASE=bench
as_pg createdb bench
sql() { as_pg psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

node "$here/bench/webhook_receiver.js" "$dir/port" > "$dir/receiver.out" &
receiver=$!
trap 'kill $receiver 2>/dev/null || true; as_pg pg_ctl -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
for _ in $(seq 1 100); do [ -s "$dir/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$dir/port")/hooks"

sql "CREATE EXTENSION event_store" >/dev/null
sql "SELECT event_store.relay_sink_create('hooks', '$url', '{\"secret\": \"whsec_c2VjcmV0\", \"max_in_flight\": 64}')" >/dev/null
sql "SELECT event_store.relay_route('hooks', 'hooks')" >/dev/null
sql "SELECT event_store.relay_pause('hooks')" >/dev/null
sql "SELECT count(event_store.outbox_send('hooks', jsonb_build_object('n', n), 'k' || (n % 100))) FROM generate_series(1, $backlog) AS n" >/dev/null

start=$(date +%s.%N)
sql "SELECT event_store.relay_resume('hooks')" >/dev/null
while [ "$(sql "SELECT count(*) FROM event_store.outbox")" != 0 ]; do sleep 0.1; done
end=$(date +%s.%N)
echo "deliveries/s: $(echo "$backlog / ($end - $start)" | bc) ($backlog messages in $(echo "$end - $start" | bc | cut -c1-5) s)"
curl -s "$url" >/dev/null   # reset the latency samples

cp "$here/bench/http_send.sql" "$dir/" && chown postgres: "$dir/http_send.sql"
as_pg pgbench -n -c 4 -j 2 -R 1000 -T "$seconds_latency" -f "$dir/http_send.sql" >/dev/null 2>&1
while [ "$(sql "SELECT count(*) FROM event_store.outbox")" != 0 ]; do sleep 0.1; done
echo "commit to request at 1,000/s: $(curl -s "$url")"
