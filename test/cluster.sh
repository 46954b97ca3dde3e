# Shared by test/valgrind.sh and test/pgtap/run.sh: a throwaway cluster
# that preloads event_store, reached over a socket in its own directory.
# Source it; do not run it.  Run as a user that can run initdb.

PATH="$(dirname "${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}"):$PATH"
TEST_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Create the cluster in a new directory named after $1; sets TEST_DIR and
# TEST_PORT and adds the lines given as $2 to postgresql.conf.  Nothing is
# started: the caller starts the server its own way.
init_test_cluster() {
    TEST_DIR=$(mktemp -d "/tmp/event_store_$1.XXXXXX")
    TEST_PORT=$(( 20000 + RANDOM % 20000 ))
    initdb -D "$TEST_DIR/data" -A trust >/dev/null
    cat "$TEST_ROOT/test/preload.conf" >> "$TEST_DIR/data/postgresql.conf"
    cat >> "$TEST_DIR/data/postgresql.conf" <<CONF
port = $TEST_PORT
listen_addresses = ''
unix_socket_directories = '$TEST_DIR'
${2:-}
CONF
    export PGHOST=$TEST_DIR PGPORT=$TEST_PORT
}

# Stop the server however it is, without waiting for clients.
stop_test_cluster() {
    pg_ctl -D "$TEST_DIR/data" -m immediate stop >/dev/null 2>&1 || true
}
