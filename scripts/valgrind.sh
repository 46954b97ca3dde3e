#!/usr/bin/env bash
# The regression suite against a server running under valgrind, with the
# extension built without optimisation (so that uninitialised locals live in
# memory valgrind watches).  Slow (about a minute on 2 cores); not run by
# scripts/test.sh.  Leaves the normal build installed afterwards.
#
# Usage (as root):  bash scripts/valgrind.sh
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/common.sh"

ensure_packages build-essential postgresql-15 postgresql-server-dev-15 librdkafka-dev librabbitmq-dev valgrind rsync

reinstall() {
    make -C "$here" -s clean >/dev/null
    build_and_install "$here"
}
trap reinstall EXIT

make -C "$here" -s clean >/dev/null
make -C "$here" -s COPT='-O0 -fno-omit-frame-pointer' >/dev/null
make -C "$here" -s install >/dev/null

work=$(mktemp -d /tmp/event_store_valgrind_tree.XXXXXX)
rsync -a --exclude .git "$here"/ "$work"/
chown -R postgres: "$work"
as_pg make -C "$work" -s installcheck-valgrind
rm -rf "$work"
