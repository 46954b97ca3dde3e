#!/usr/bin/env bash
# Benchmarks of event_store against the baselines of its performance
# targets, side by side on one throwaway cluster, in alternating rounds.
#
# Usage (as root, Debian 12, PostgreSQL 15):
#   bash bench/run.sh            about 15 minutes
#   bash bench/run.sh --quick    under 2 minutes, fewer and shorter rounds
#   bash bench/run.sh --long     the default run plus a 10-minute outbox soak
#   BENCH_ONLY="1 5" bash bench/run.sh --quick    only those scenarios
#   BENCH_ROUNDS=5 bash bench/run.sh    more rounds (a loaded machine)
#   bash bench/run.sh --scale    the store beyond memory (see "--scale" below;
#                                about an hour, and about 40 GB of disk)
#   PG_CONFIG=... CLUSTER_PORT=54321 bash bench/run.sh   another PostgreSQL
#                                installation, another port
#
# Prints one table: the median of each side over the rounds, and their ratio
# (event_store / baseline).  Results also go to bench/results/.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

mode=${1:-}
case "$mode" in
    --quick) rounds=2; seconds=2; events=100000; relay_seconds=3; relay_backlog=20000
             long_tx_seconds=10; long_tx_backlog=300000 ;;
    ""|--long) rounds=3; seconds=8; events=1000000; relay_seconds=10; relay_backlog=100000
             long_tx_seconds=20; long_tx_backlog=2000000 ;;
    --scale) rounds=3; seconds=30; events=1000000; relay_seconds=0; relay_backlog=0
             BENCH_ONLY=${BENCH_ONLY:-scale} ;;
    *) echo "usage: bash bench/run.sh [--quick|--long|--scale]" >&2; exit 2 ;;
esac
# BENCH_ROUNDS: more alternating rounds on a noisy machine
rounds=${BENCH_ROUNDS:-$rounds}

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 librdkafka-dev librabbitmq-dev postgresql-15-pgq3 libpq-dev bc
echo "building and installing event_store"
build_and_install "$here"

# A small production server: durable commits, room for the data in memory.
settings="
shared_preload_libraries = 'event_store'
fsync = on
synchronous_commit = on
full_page_writes = on
wal_level = replica
shared_buffers = 1GB
work_mem = 16MB
max_wal_size = 4GB
checkpoint_timeout = 15min
max_connections = 50
autovacuum_naptime = 10s
"
start_cluster "$settings"
dir=$CLUSTER_DIR
export PGHOST=$dir PGPORT=$CLUSTER_PORT PGDATABASE=bench
as_pg createdb bench
sql() { as_pg psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

echo "setting up"
as_pg psql -X -q -v ON_ERROR_STOP=1 -f "$here/bench/setup.sql" >/dev/null

results="$dir/results"
: > "$results"
cp "$here"/bench/*.sql "$dir/" && chown postgres: "$dir"/*.sql

# pgbench a script; prints the TPS.  pgbench_tps CLIENTS SCRIPT
# ($defines: extra pgbench -D variables)
defines=()
pgbench_tps() {
    local clients=$1 script=$2
    as_pg pgbench -n -M prepared -c "$clients" -j "$(( clients < 2 ? clients : 2 ))" \
        -T "$seconds" "${defines[@]}" -f "$dir/$script" bench 2>&1 | awk '/^tps/ {print $3}'
}

record() { echo "$1|$2|$3" >> "$results"; }

# Whether scenario $1 runs (BENCH_ONLY lists the ones to run; default all).
want() { [ -z "${BENCH_ONLY:-}" ] || [[ " $BENCH_ONLY " == *" $1 "* ]]; }

# Rounds alternate the order of the two sides, so that drift cancels.
ab() {
    local scenario=$1 clients=$2 ours=$3 baseline=$4
    for r in $(seq 1 "$rounds"); do
        if (( r % 2 )); then
            record "$scenario" ours "$(pgbench_tps "$clients" "$ours")"
            record "$scenario" base "$(pgbench_tps "$clients" "$baseline")"
        else
            record "$scenario" base "$(pgbench_tps "$clients" "$baseline")"
            record "$scenario" ours "$(pgbench_tps "$clients" "$ours")"
        fi
    done
}

if want 0; then
echo "context: empty transaction and SELECT 1"
record "context: empty transaction, 8 clients (tps)" ours "$(pgbench_tps 8 empty.sql)"
record "context: SELECT 1, 8 clients (tps)" ours "$(pgbench_tps 8 select1.sql)"
fi

if want 1; then
echo "1. append_event vs INSERT"
ab "append_event, 1 client (tps)" 1 append_event.sql insert_event.sql
ab "append_event, 8 clients (tps)" 8 append_event.sql insert_event.sql
fi

if want 2; then
echo "2. append of 10 and 100 events vs multi-row INSERT"
ab "append 10 events, 4 clients (tps)" 4 append_10.sql insert_10.sql
ab "append 100 events, 4 clients (tps)" 4 append_100.sql insert_100.sql
fi

if want 3; then
echo "3. contention: 8 clients, 4 streams, expected versions"
for r in $(seq 1 "$rounds"); do
    before=$(sql "SELECT count(*) FROM event_store.events WHERE event_store.category(stream) = 'hot'")
    tps=$(pgbench_tps 8 contention.sql)
    after=$(sql "SELECT count(*) FROM event_store.events WHERE event_store.category(stream) = 'hot'")
    ok=$(echo "($after - $before) / $seconds" | bc -l)
    record "contention: successful appends/s" ours "$ok"
    record "contention: conflicts (EV001)/s" ours "$(echo "$tps - $ok" | bc -l)"
done
fi

if want 4; then
echo "4. reads: loading $events events"
sql "CALL bench_load_events($events)"
sql "VACUUM ANALYZE event_store.events"
sql "VACUUM ANALYZE plain_events"
defines=(-D "streams=$(( events / 100 ))" -D "first_position=$(sql "SELECT min(position) FROM event_store.events")" -D "last_position=$(sql "SELECT max(position) - 1000 FROM event_store.events")")
ab "read_stream of 100 events, 4 clients (tps)" 4 read_stream.sql select_stream.sql
ab "read_all batch of 1000, 4 clients (tps)" 4 read_all.sql select_all.sql
defines=()
fi

# A queue under load: 4 producers and CONSUMERS consumers for $seconds;
# records the messages consumed per second (sent minus the backlog's growth).
# queue_round NAME PRODUCER CONSUMER CONSUMERS BACKLOG_SQL SIDE
queue_round() {
    local name=$1 producer=$2 consumer=$3 consumers=$4 backlog=$5
    local start end out produced
    start=$(sql "$backlog")
    out=$(mktemp)
    as_pg pgbench -n -M prepared -c 4 -j 2 -T "$seconds" -f "$dir/$producer" bench > "$out" 2>&1 &
    as_pg pgbench -n -M prepared -c "$consumers" -j 2 -T "$seconds" -f "$dir/$consumer" bench >/dev/null 2>&1
    wait
    produced=$(awk '/actually processed/ {print $NF}' "$out")
    end=$(sql "$backlog")
    rm -f "$out"
    last_rate=$(echo "($produced - ($end - $start)) / $seconds" | bc -l)
    record "$name" "$6" "$last_rate"
}

if want 5; then
echo "5. outbox: 4 producers, 4 consumers"
for r in $(seq 1 "$rounds"); do
    queue_round "outbox send+claim+ack vs SKIP LOCKED queue (msgs/s)" send.sql claim_ack.sql 4 \
        "SELECT count(*) FROM event_store.outbox" ours
    queue_round "outbox send+claim+ack vs SKIP LOCKED queue (msgs/s)" queue_send.sql queue_consume.sql 4 \
        "SELECT count(*) FROM plain_queue" base
    # Consumers that block in outbox_claim(..., wait) instead of polling,
    # against the polling baselines of the same round.
    record "outbox send+claim (wait)+ack vs SKIP LOCKED queue (msgs/s)" base "$last_rate"
    queue_round "outbox send+claim (wait)+ack vs SKIP LOCKED queue (msgs/s)" send.sql claim_ack_wait.sql 4 \
        "SELECT count(*) FROM event_store.outbox" ours
    record "outbox send+claim (wait)+ack vs PgQ, 1 consumer (msgs/s)" ours "$last_rate"
    queue_round "outbox send+claim, ack in a 2nd transaction vs SKIP LOCKED queue (msgs/s)" send.sql claim_ack_2tx.sql 4 \
        "SELECT count(*) FROM event_store.outbox" ours
    record "outbox send+claim, ack in a 2nd transaction vs PgQ, 1 consumer (msgs/s)" ours "$last_rate"
    queue_round "outbox send+claim, ack in a 2nd transaction vs SKIP LOCKED queue (msgs/s)" queue_send.sql queue_consume.sql 4 \
        "SELECT count(*) FROM plain_queue" base
    queue_round "outbox send+consume vs SKIP LOCKED queue (msgs/s)" send.sql consume.sql 4 \
        "SELECT count(*) FROM event_store.outbox" ours
    record "outbox send+consume vs PgQ, 1 consumer (msgs/s)" ours "$last_rate"
    queue_round "outbox send+consume vs SKIP LOCKED queue (msgs/s)" queue_send.sql queue_consume.sql 4 \
        "SELECT count(*) FROM plain_queue" base
    queue_round "outbox send+claim+ack vs PgQ, 1 consumer (msgs/s)" send.sql claim_ack.sql 4 \
        "SELECT count(*) FROM event_store.outbox" ours
    queue_round "outbox send+claim+ack vs PgQ, 1 consumer (msgs/s)" pgq_send.sql pgq_consume.sql 1 \
        "SELECT coalesce(sum(pending_events), 0) FROM pgq.get_consumer_info('bench', 'bench_consumer')" base
    record "outbox send+claim (wait)+ack vs PgQ, 1 consumer (msgs/s)" base "$last_rate"
    record "outbox send+consume vs PgQ, 1 consumer (msgs/s)" base "$last_rate"
    record "outbox send+claim, ack in a 2nd transaction vs PgQ, 1 consumer (msgs/s)" base "$last_rate"
done
fi

if want 6; then
echo "6. relay: latency at 1,000 messages/s, throughput of one worker"
sql "SELECT event_store.relay_route('bench_relay', 'notify:bench_relay')"
latency=$(as_pg "$here/tools/es_relay_bench" -d "host=$dir port=$CLUSTER_PORT dbname=bench" \
    -t bench_relay -c bench_relay -r 1000 -s "$relay_seconds" || true)
for key in p50_ms p95_ms p99_ms max_ms; do
    record "relay: commit to NOTIFY received, $key" ours "$(echo "$latency" | tr ' ' '\n' | awk -F= -v k=$key '$1 == k {print $2}')"
done
sql "SELECT event_store.relay_pause('bench_relay')" >/dev/null
sql "SELECT count(event_store.outbox_send('bench_relay', jsonb_build_object('n', n))) FROM generate_series(1, $relay_backlog) AS n" >/dev/null
as_pg "$here/tools/es_listen" -d "host=$dir port=$CLUSTER_PORT dbname=bench" -i 3000 bench_relay > "$dir/listened" &
listener=$!
sleep 0.5
start=$(date +%s.%N)
sql "SELECT event_store.relay_resume('bench_relay')" >/dev/null
while [ "$(sql "SELECT count(*) FROM event_store.outbox WHERE topic = 'bench_relay'")" != 0 ]; do sleep 0.05; done
end=$(date +%s.%N)
wait "$listener" || true
record "relay: messages/s moved by one worker" ours "$(echo "$relay_backlog / ($end - $start)" | bc -l)"
record "relay: messages received by a listener" ours "$(wc -l < "$dir/listened")"
fi

if want 7; then
echo "7. catch-up: a subscription consumes the whole feed in batches of 1,000"
if [ "$(sql "SELECT count(*) FROM plain_events")" = 0 ]; then
    echo "   loading $events events"
    sql "CALL bench_load_events($events)"
    sql "VACUUM ANALYZE event_store.events"
    sql "VACUUM ANALYZE plain_events"
fi
sql "SELECT event_store.subscription_create('bench_catchup', NULL, 1, 0, true)" >/dev/null
catchup() { as_pg psql -X -q -At -v mode="$1" -f "$dir/catchup.sql" | tail -1; }
# A pass takes under a second: one untimed pass of each side first (the
# earlier scenarios leave other pages in memory), then three times the
# rounds of the other scenarios.
catchup ours >/dev/null
catchup base >/dev/null
for r in $(seq 1 $(( rounds * 3 ))); do
    if (( r % 2 )); then
        record "catch-up: subscription_fetch+ack vs keyset pagination (events/s)" ours "$(catchup ours)"
        record "catch-up: subscription_fetch+ack vs keyset pagination (events/s)" base "$(catchup base)"
    else
        record "catch-up: subscription_fetch+ack vs keyset pagination (events/s)" base "$(catchup base)"
        record "catch-up: subscription_fetch+ack vs keyset pagination (events/s)" ours "$(catchup ours)"
    fi
done
fi

if want 8; then
echo "8. batch send: 100 messages per transaction, one call vs one outbox_send each"
ab "outbox_send_batch of 100 vs 100 outbox_send, 1 client (tps)" 1 send_batch_100.sql send_100.sql
fi

# --scale: the regime where the store no longer fits in memory.  The same
# measures at 1,000,000 events and at SCALE_EVENTS (default 100,000,000,
# about 32 GB): append_event to new streams and to recently written ones,
# read_stream of recently written streams, the load rate of appends of 100
# events, and the index entries a claim reads behind a backlog of 1,000,000
# available messages.  About an hour; not part of the default run.
if [ "$mode" = "--scale" ] && want scale; then
scale_events=${SCALE_EVENTS:-100000000}
load_to() {
    local target=$1 have tx start end
    have=$(sql "SELECT coalesce(max(position), 0) FROM event_store.events")
    tx=$(( (target - have) / 100 / 4 ))
    (( tx > 0 )) || return 0
    start=$(date +%s.%N)
    as_pg pgbench -n -M prepared -c 4 -j 2 -t "$tx" -f "$dir/append_100.sql" bench >/dev/null 2>&1
    end=$(date +%s.%N)
    record "scale: load by append of 100 events, 4 clients (events/s), to $target" ours \
        "$(echo "$tx * 4 * 100 / ($end - $start)" | bc -l)"
}
measure_at() {
    local label=$1 last
    last=$(sql "SELECT max(position) FROM event_store.events")
    defines=(-D "recent_from=$(( last - 1000000 ))" -D "recent_to=$last")
    for r in $(seq 1 "$rounds"); do
        record "scale: append_event to a new stream, 8 clients (tps), $label" ours "$(pgbench_tps 8 append_event.sql)"
        record "scale: append_event to a recent stream, 8 clients (tps), $label" ours "$(pgbench_tps 8 append_recent.sql)"
        record "scale: read_stream of a recent stream, 4 clients (tps), $label" ours "$(pgbench_tps 4 read_recent.sql)"
    done
    defines=()
}
load_to 1000000
sql "VACUUM ANALYZE event_store.events"
measure_at "1,000,000 events"
load_to "$scale_events"
sql "VACUUM ANALYZE event_store.events"
measure_at "$scale_events events"
sql "SELECT count(event_store.outbox_send('scale_backlog', '{}')) FROM generate_series(1, 1000000)" >/dev/null
sql "VACUUM ANALYZE event_store.outbox"
index_reads="SELECT pg_stat_force_next_flush(); SELECT sum(idx_tup_read) FROM pg_stat_user_indexes WHERE schemaname = 'event_store' AND relname = 'outbox'"
before=$(as_pg psql -X -q -At -c "$index_reads" | tail -1)
sql "SELECT count(*) FROM event_store.outbox_claim('scale_backlog', 10)" >/dev/null
after=$(as_pg psql -X -q -At -c "$index_reads" | tail -1)
record "scale: index entries read by a claim of 10 behind 1,000,000 messages" ours "$(( after - before ))"
fi

if want 9; then
echo "9. pgmq layer: the same load through pgmq's API and through the outbox's"
sql "CREATE EXTENSION IF NOT EXISTS event_store_pgmq" >/dev/null
sql "SELECT pgmq.create('bench_pgmq')" >/dev/null
for r in $(seq 1 "$rounds"); do
    queue_round "pgmq layer send+read+delete vs outbox send+claim+ack (msgs/s)" pgmq_send.sql pgmq_consume.sql 4 \
        "SELECT count(*) FROM event_store.outbox WHERE topic = 'bench_pgmq'" ours
    queue_round "pgmq layer send+read+delete vs outbox send+claim+ack (msgs/s)" send.sql claim_ack.sql 4 \
        "SELECT count(*) FROM event_store.outbox WHERE topic = 'bench'" base
done
fi

# 10. Claims while a long transaction is open: acknowledged rows can then
# be neither vacuumed nor marked dead in the index.  Each round fills the
# topic with a backlog, then 2 clients claim and ack batches of 10 for
# $long_tx_seconds, once with no other transaction open ("normal") and
# once while another session holds an appending transaction open
# ("long"), alternating; records the batches/s acknowledged (messages
# acknowledged / 10, so that claims of an exhausted backlog do not count).
if want 10; then
echo "10. claim + ack while a transaction stays open for ${long_tx_seconds}s"
long_round() {
    local side=$1 holder=""
    sql "TRUNCATE event_store.outbox"
    sql "SELECT count(*) FROM (SELECT event_store.outbox_send_batch('bench_long', array_agg('{\"n\": 1}'::jsonb)) FROM generate_series(1, $long_tx_backlog) AS n GROUP BY n / 1000) AS b" >/dev/null
    sql "VACUUM event_store.outbox"
    if [ "$side" = long ]; then
        as_pg psql -X -q -c "BEGIN; SELECT event_store.append_event('long-held', 'Held', '{}'); SELECT pg_sleep($long_tx_seconds + 30); COMMIT;" >/dev/null 2>&1 &
        holder=$!
        until [ "$(sql "SELECT count(*) FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()")" = 1 ]; do sleep 0.1; done
    fi
    local before after
    before=$(sql "SELECT count(*) FROM event_store.outbox")
    as_pg pgbench -n -M prepared -c 2 -j 2 -T "$long_tx_seconds" -f "$dir/claim_ack_long.sql" bench >/dev/null 2>&1
    after=$(sql "SELECT count(*) FROM event_store.outbox")
    if [ -n "$holder" ]; then
        sql "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()" >/dev/null
        wait "$holder" || true
    fi
    # full batches: messages acknowledged / 10 (a drained backlog shows)
    [ "$after" -gt 0 ] || echo "   warning: the backlog ran out; raise long_tx_backlog" >&2
    record "claim+ack of 10, 2 clients, while a transaction is open vs none (batches/s)" "$2" \
        "$(echo "($before - $after) / 10 / $long_tx_seconds" | bc -l)"
}
for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then long_round long ours; long_round normal base
    else long_round normal base; long_round long ours; fi
done
fi

if [ "$mode" = "--long" ]; then
    echo "7. outbox soak: 10 minutes"
    as_pg pgbench -n -M prepared -c 4 -j 2 -T 600 -P 60 -f "$dir/send.sql" bench > "$dir/soak_send" 2>&1 &
    as_pg pgbench -n -M prepared -c 4 -j 2 -T 600 -P 60 -f "$dir/claim_ack.sql" bench > "$dir/soak_consume" 2>&1 &
    for minute in $(seq 1 10); do
        sleep 60
        echo "  minute $minute: $(sql "SELECT 'outbox ' || pg_size_pretty(pg_total_relation_size('event_store.outbox')) || ', ' || count(*) || ' waiting' FROM event_store.outbox")"
    done
    wait
    echo "  sends per minute (tps):    $(awk '/^progress/ {printf "%s ", $4}' "$dir/soak_send")"
    echo "  consumer batches per minute (tps): $(awk '/^progress/ {printf "%s ", $4}' "$dir/soak_consume")"
fi

mkdir -p "$here/bench/results"
report="$here/bench/results/$(date +%Y%m%d-%H%M%S)${mode:+-${mode#--}}.txt"
{
    echo "event_store benchmark ${mode:---default} — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB, $(as_pg postgres --version)"
    echo "settings:$(echo "$settings" | grep -v '^$' | sed 's/ = /=/' | tr '\n' ' ')"
    echo "rounds: $rounds x ${seconds}s per side, alternating; pgbench -M prepared; $events events for reads"
    echo
    awk -F'|' -f "$here/bench/report.awk" "$results"
    echo
    echo "each round, in the order measured (scenario|side|value):"
    cat "$results"
} | tee "$report"
