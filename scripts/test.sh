#!/usr/bin/env bash
# Run every test suite of event_store on throwaway clusters:
# pg_regress, isolation, TAP (crash and restart, the Kafka and RabbitMQ
# sinks against brokers the tests start) and pgTAP, then the client
# examples of examples/ (Python, Node.js, C) and the monitoring query file
# under prometheus-postgres-exporter.
#
# Usage (as root, on Debian 12 with PostgreSQL 15):  bash scripts/test.sh
#
# Installs the packages it needs, builds and installs the extension, then
# runs the suites as the postgres user (initdb refuses root) in a copy of the
# tree that user owns.  Exits non-zero if anything fails.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

log() { printf '\n=== %s\n' "$*"; }

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap libcurl4-openssl-dev \
    libtap-parser-sourcehandler-pgtap-perl libipc-run-perl sqlsmith rsync
# The compatibility layers are tested against published clients and
# Message DB's own SQL, installed from the npm registry (test/npm, pinned
# by package-lock.json): Node.js and npm, Debian's unless there are some.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_packages nodejs npm
fi

# What the client examples and the monitoring test need.  Node.js may come
# from elsewhere than Debian: install Debian's only if there is none.
exporter_was_installed=$(dpkg-query -W -f='${Status}' prometheus-postgres-exporter 2>/dev/null || true)
ensure_packages python3-psycopg libpq-dev prometheus-postgres-exporter
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_packages nodejs npm
fi
# The package starts its own exporter as a service (on port 9187, without a
# database to read): the test runs one of its own, so stop the one this run
# installed.  A service that was there before is left alone.
case $exporter_was_installed in
*"install ok installed"*) ;;
*)
    if [ -d /run/systemd/system ]; then
        systemctl stop prometheus-postgres-exporter.service >/dev/null 2>&1 || true
    else
        service prometheus-postgres-exporter stop >/dev/null 2>&1 || true
    fi
    ;;
esac

# The Kafka and RabbitMQ sinks: their client libraries, the RabbitMQ server
# and clients (the tests start a throwaway node of their own), kcat.  The
# package starts a system node when it is installed: stop the one this run
# installed (a node that was there before is left alone).
rabbitmq_was_installed=$(dpkg-query -W -f='${Status}' rabbitmq-server 2>/dev/null || true)
ensure_packages librdkafka-dev librabbitmq-dev rabbitmq-server kcat amqp-tools
case $rabbitmq_was_installed in
*"install ok installed"*) ;;
*)
    if [ -d /run/systemd/system ]; then
        systemctl stop rabbitmq-server.service >/dev/null 2>&1 || true
    else
        service rabbitmq-server stop >/dev/null 2>&1 || true
    fi
    ;;
esac

work=$(mktemp -d /tmp/event_store_test.XXXXXX)
trap 'rm -rf "$work"' EXIT
rsync -a --exclude .git --exclude node_modules --exclude examples/c/accounts "$here"/ "$work"/
# The Node.js example's dependencies, exactly as its lockfile pins them.
(cd "$work/examples/node" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) ||
    echo "npm ci failed: the Node.js example's suite will fail"
chown -R postgres: "$work"

results=()
failed=0
run_suite() {
    local name=$1; shift
    log "$name"
    if as_pg "$@"; then
        results+=("ok      $name")
    else
        results+=("FAILED  $name")
        failed=$((failed + 1))
    fi
}

show_diffs() {
    for f in "$work"/test/regression.assertions.diffs "$work"/test/output_regress/regression.diffs "$work"/test/output_iso/regression.diffs; do
        [ -s "$f" ] && { echo "--- $f"; cat "$f"; }
    done
    return 0
}

# PostgreSQL's own code is not clean of unused parameters (callbacks have
# fixed signatures), so that one warning of -Wextra stays off.
STRICT_CFLAGS="-Wextra -Wno-unused-parameter -Werror"

# First the regression suite against a build with assertions enabled (the
# server's headers allow it; Debian's server itself has none), then every
# suite against the build users install.
log "building with assertions and every warning an error"
make -C "$work" -s clean >/dev/null
as_pg make -C "$work" -s COPT="$STRICT_CFLAGS -DUSE_ASSERT_CHECKING" >/dev/null
make -C "$work" -s install >/dev/null
run_suite "regression, assertions enabled (pg_regress)" make -C "$work" -s installcheck-regress
if [ -f "$work"/test/output_regress/regression.diffs ]; then mv "$work"/test/output_regress/regression.diffs "$work"/test/regression.assertions.diffs; fi

log "building and installing"
make -C "$work" -s clean >/dev/null
as_pg make -C "$work" -s COPT="$STRICT_CFLAGS" >/dev/null
make -C "$work" -s install >/dev/null

run_suite "regression (pg_regress)" make -C "$work" -s installcheck-regress
run_suite "isolation (pg_isolation_regress)" make -C "$work" -s installcheck-isolation
# The client examples, the exporter and the broker sinks run as suites of
# their own, after
# the rest of the TAP suite; each of them fails rather than skips when what
# it needs is missing.
client_tests=(
    "client example: Python, psycopg 3|test/t/061_client_python.pl"
    "client example: Node.js, pg|test/t/062_client_node.pl"
    "client example: C, libpq|test/t/063_client_c.pl"
    "monitoring: prometheus-postgres-exporter|test/t/064_prometheus_exporter.pl"
    "relay sink: RabbitMQ, rabbitmq-server|test/t/081_sink_amqp.pl"
    "relay sink: Kafka, librdkafka mock cluster|test/t/082_sink_kafka.pl"
)
core_tap=$(cd "$work" && for t in test/t/*.pl; do
    case " ${client_tests[*]} " in *"|$t "*) ;; *) printf '%s ' "$t" ;; esac
done)
run_suite "TAP (PostgreSQL::Test::Cluster)" make -C "$work" -s installcheck-tap PROVE_TESTS="$core_tap"
run_suite "pgTAP (pg_prove)" "$work"/test/pgtap/run.sh
for entry in "${client_tests[@]}"; do
    run_suite "${entry%%|*}" env ES_REQUIRE_CLIENTS=1 \
        make -C "$work" -s installcheck-tap PROVE_TESTS="${entry#*|}"
done
show_diffs

log "summary"
printf '%s\n' "${results[@]}"
echo "suites: $(( ${#results[@]} - failed )) passed, $failed failed"
exit $(( failed > 0 ))
