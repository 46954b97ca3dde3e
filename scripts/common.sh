# Shared by the scripts of this folder: PostgreSQL paths, package setup,
# running commands as the postgres user.  Source it; do not run it.

# PG_CONFIG chooses the PostgreSQL installation (default: Debian's 15).
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
export PG_CONFIG
PG_BIN=$(dirname "$PG_CONFIG")
export PATH="$PG_BIN:$PATH"

# Install the Debian packages given as arguments that are not installed yet.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# Build and install the extension from the tree at $1.
build_and_install() {
    make -C "$1" -s >/dev/null
    make -C "$1" -s install >/dev/null
}

# initdb refuses to run as root: clusters run as postgres.
as_pg() { runuser -u postgres -- env PATH="$PATH" "$@"; }

# Start a throwaway cluster, as postgres, in a new directory; its settings
# are the lines given as $1 (added to postgresql.conf).  Sets CLUSTER_DIR
# (socket directory and data) and stops and removes it on exit.  Reach it
# with PGHOST=$CLUSTER_DIR PGPORT=$CLUSTER_PORT (no TCP; CLUSTER_PORT is
# 5432 unless set).
CLUSTER_PORT=${CLUSTER_PORT:-5432}
start_cluster() {
    CLUSTER_DIR=$(mktemp -d /tmp/event_store_cluster.XXXXXX)
    chown postgres: "$CLUSTER_DIR"
    trap 'as_pg pg_ctl -D "$CLUSTER_DIR/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$CLUSTER_DIR"' EXIT
    as_pg initdb -D "$CLUSTER_DIR/data" -A trust >/dev/null
    cat >> "$CLUSTER_DIR/data/postgresql.conf" <<CONF
$1
listen_addresses = ''
unix_socket_directories = '$CLUSTER_DIR'
port = $CLUSTER_PORT
CONF
    as_pg pg_ctl -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/log" -w start >/dev/null
}
