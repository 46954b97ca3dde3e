#!/usr/bin/env bash
# Run every test suite of event_store on throwaway clusters:
# pg_regress, isolation, TAP (crash and restart) and pgTAP.
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

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap \
    libtap-parser-sourcehandler-pgtap-perl libipc-run-perl sqlsmith rsync
# The compatibility layers are tested against published clients and
# Message DB's own SQL, installed from the npm registry (test/npm, pinned
# by package-lock.json): Node.js and npm, Debian's unless there are some.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    ensure_packages nodejs npm
fi

work=$(mktemp -d /tmp/event_store_test.XXXXXX)
trap 'rm -rf "$work"' EXIT
rsync -a --exclude .git "$here"/ "$work"/
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
    for f in "$work"/test/regression.assertions.diffs "$work"/test/regression.diffs "$work"/test/output_iso/regression.diffs; do
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
if [ -f "$work"/test/regression.diffs ]; then mv "$work"/test/regression.diffs "$work"/test/regression.assertions.diffs; fi

log "building and installing"
make -C "$work" -s clean >/dev/null
as_pg make -C "$work" -s COPT="$STRICT_CFLAGS" >/dev/null
make -C "$work" -s install >/dev/null

run_suite "regression (pg_regress)" make -C "$work" -s installcheck-regress
run_suite "isolation (pg_isolation_regress)" make -C "$work" -s installcheck-isolation
run_suite "TAP (PostgreSQL::Test::Cluster)" make -C "$work" -s installcheck-tap
run_suite "pgTAP (pg_prove)" "$work"/test/pgtap/run.sh
show_diffs

log "summary"
printf '%s\n' "${results[@]}"
echo "suites: $(( ${#results[@]} - failed )) passed, $failed failed"
exit $(( failed > 0 ))
