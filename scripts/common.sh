# Shared by the scripts of this folder: PostgreSQL paths, package setup,
# running commands as the postgres user.  Source it; do not run it.

PG_BIN=/usr/lib/postgresql/15/bin
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
