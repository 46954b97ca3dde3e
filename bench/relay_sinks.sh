#!/usr/bin/env bash
# Throughput and commit-to-acknowledgement latency of the broker sinks, one
# relay worker, against librdkafka's mock Kafka cluster (3 brokers, hosted
# by tools/es_kafka_mock) and a throwaway RabbitMQ node (publisher
# confirms, persistent messages, a durable queue).  Run on demand (not part
# of bench/run.sh nor of the tests):
#
#   bash bench/relay_sinks.sh          about 2 minutes
#
# (as root, Debian 12, PostgreSQL 15; PG_CONFIG chooses the installation;
# BENCH_MESSAGES and BENCH_SECONDS scale it.)  For each sink:
#   messages/s:   after one message went through the route, the route
#                 paused, BENCH_MESSAGES keyed messages (100
#                 keys) are sent, the route resumed; the time until the
#                 outbox is empty;
#   commit to ack: after one message went through the route, pgbench
#                 sends one message per transaction at 1,000/s for
#                 BENCH_SECONDS; a trigger installed for the benchmark
#                 records when the relay deletes each message from the
#                 outbox (right after the broker acknowledged it), minus
#                 its transaction's start: p50, p95, p99, max.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

messages=${BENCH_MESSAGES:-100000}
seconds=${BENCH_SECONDS:-20}

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 libpq-dev \
    librdkafka-dev librabbitmq-dev rabbitmq-server amqp-tools
echo "building and installing event_store"
make -C "$here" -s >/dev/null
make -C "$here" -s install >/dev/null

start_cluster "
shared_preload_libraries = 'event_store'
shared_buffers = 256MB
synchronous_commit = on
"
dir=$CLUSTER_DIR
export PGHOST=$dir PGPORT=$CLUSTER_PORT
sql() { as_pg psql -X -q -At -v ON_ERROR_STOP=1 -d postgres -c "$1"; }

# The mock Kafka cluster: its input kept open by a sleeping writer.
mkfifo "$dir/kafka_in"
sleep infinity > "$dir/kafka_in" &
keep=$!
"$here/tools/es_kafka_mock" -b 3 -f "$dir/bootstrap" < "$dir/kafka_in" > "$dir/kafka_out" 2>&1 &
mock=$!
# A RabbitMQ node of its own.
rport=$((30000 + RANDOM % 20000))
rdir=$dir/rabbitmq
mkdir -p "$rdir"
echo '[].' > "$rdir/enabled_plugins"
printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users = none\nlog.console = false\n' "$rport" > "$rdir/rabbitmq.conf"
: > "$rdir/rabbitmq-env.conf"
renv=(HOME="$rdir" RABBITMQ_NODENAME="es_bench_$rport@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT=$rport RABBITMQ_DIST_PORT=$((rport + 1)) ERL_EPMD_PORT=$((rport + 2))
    ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE="$rdir/mnesia" RABBITMQ_LOG_BASE="$rdir/log"
    RABBITMQ_PID_FILE="$rdir/pid" RABBITMQ_ENABLED_PLUGINS_FILE="$rdir/enabled_plugins"
    RABBITMQ_CONFIG_FILE="$rdir/rabbitmq" RABBITMQ_CONF_ENV_FILE="$rdir/rabbitmq-env.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$rdir/advanced.config" RABBITMQ_HOME=/usr/lib/rabbitmq)
env "${renv[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server > "$rdir/out" 2>&1 &
rabbit=$!
cleanup() {
    env "${renv[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "es_bench_$rport@localhost" stop >/dev/null 2>&1 || true
    env "${renv[@]}" epmd -port $((rport + 2)) -kill >/dev/null 2>&1 || true
    kill "$keep" "$mock" 2>/dev/null || true
    as_pg pg_ctl -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT
until [ -s "$dir/bootstrap" ]; do sleep 0.1; done
until "$here/tools/es_amqp_consume" -P "$rport" -p 2>/dev/null; do sleep 0.5; done
amqp-declare-queue -u "amqp://guest:guest@127.0.0.1:$rport" -q bench -d >/dev/null

sql "CREATE EXTENSION event_store"
sql "SELECT event_store.relay_sink_create('kafka', 'kafka://$(cat "$dir/bootstrap")')"
sql "SELECT event_store.relay_sink_create('rabbit', 'amqp://guest:guest@127.0.0.1:$rport/%2f')"
# Benchmark instrumentation: when the relay deleted each message.
sql "CREATE TABLE public.acked (id bigint, created_at timestamptz, acked_at timestamptz)
     ;GRANT INSERT ON public.acked TO event_store_relay
     ;CREATE FUNCTION public.record_ack() RETURNS trigger LANGUAGE plpgsql AS
      \$\$BEGIN INSERT INTO public.acked VALUES (OLD.id, OLD.created_at, clock_timestamp()); RETURN NULL; END\$\$"

# Before a route's clock runs, one message goes through it: the broker
# learns the destination (a Kafka topic is created, its leaders looked up).
warm_up() { # TOPIC
    sql "SELECT event_store.outbox_send('$1', '{\"warm\": 1}')" >/dev/null
    until [ "$(sql "SELECT count(*) FROM event_store.outbox WHERE topic = '$1'")" = 0 ]; do sleep 0.05; done
}

throughput() { # TOPIC SINK DESTINATION
    sql "SELECT event_store.relay_route('$1', '$2', nullif('$3', ''))" >/dev/null
    warm_up "$1"
    sql "SELECT event_store.relay_pause('$1')" >/dev/null
    sql "SELECT count(event_store.outbox_send('$1', jsonb_build_object('n', n, 'data', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'),
         'key-' || (n % 100))) FROM generate_series(1, $messages) AS n" >/dev/null
    local start end
    start=$(date +%s.%N)
    sql "SELECT event_store.relay_resume('$1')" >/dev/null
    until [ "$(sql "SELECT count(*) FROM event_store.outbox WHERE topic = '$1'")" = 0 ]; do sleep 0.05; done
    end=$(date +%s.%N)
    awk -v n="$messages" -v s="$start" -v e="$end" 'BEGIN { printf "%d messages in %.2f s: %.0f messages/s\n", n, e - s, n / (e - s) }'
}

latency() { # TOPIC SINK DESTINATION
    sql "SELECT event_store.relay_route('$1', '$2', '$3')" >/dev/null
    warm_up "$1"
    sql "TRUNCATE public.acked; CREATE TRIGGER record_ack AFTER DELETE ON event_store.outbox
         FOR EACH ROW EXECUTE FUNCTION public.record_ack()"
    echo "SELECT event_store.outbox_send('$1', '{\"n\": 1}', 'key-' || (random() * 100)::int);" > "$dir/send.sql"
    as_pg pgbench -n -c 4 -j 2 -R 1000 -T "$seconds" -f "$dir/send.sql" postgres > "$dir/pgbench.out" 2>&1 ||
        { cat "$dir/pgbench.out" >&2; return 1; }
    until [ "$(sql "SELECT count(*) FROM event_store.outbox WHERE topic = '$1'")" = 0 ]; do sleep 0.05; done
    sql "DROP TRIGGER record_ack ON event_store.outbox"
    sql "SELECT format('%s messages at 1,000/s: commit to ack p50 %s ms, p95 %s ms, p99 %s ms, max %s ms', count(*),
           round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
           round(percentile_cont(0.95) WITHIN GROUP (ORDER BY ms)::numeric, 2),
           round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2),
           round(max(ms)::numeric, 2))
         FROM (SELECT extract(epoch FROM acked_at - created_at) * 1000 AS ms FROM public.acked) AS a"
}

echo "Kafka (mock cluster, 3 brokers, idempotent producer, acks=all):"
echo "  $(throughput k_orders kafka orders)"
echo "  $(latency k_latency kafka latency)"
echo "RabbitMQ (publisher confirms, persistent, durable queue):"
echo "  $(throughput r_orders rabbit /bench)"
echo "  $(latency r_latency rabbit /bench)"
echo "NOTIFY, for comparison:"
echo "  $(throughput n_orders notify:bench '')"
