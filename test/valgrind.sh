#!/usr/bin/env bash
# The regression suite against a server running under valgrind: any
# invalid read or write, or use of an uninitialised value, in the server
# or the extension fails it.  Run by scripts/valgrind.sh (which installs an
# unoptimised build first), as a user that can run initdb.
#
# Debian's server is not built with valgrind annotations for its memory
# contexts, so overruns inside palloc'd blocks go unseen; everything else
# valgrind checks is checked.
set -euo pipefail

. "$(dirname "$0")/cluster.sh"
here=$TEST_ROOT

init_test_cluster valgrind "max_connections = 20"
dir=$TEST_DIR
pid=
cleanup() {
    stop_test_cluster
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
    [ -n "${KEEP_VALGRIND_DIR:-}" ] || rm -rf "$dir"
}
trap cleanup EXIT

started=$(date +%s)
valgrind --quiet --trace-children=yes --leak-check=no --num-callers=30 \
    --suppressions="$here/test/valgrind.supp" \
    --log-file="$dir/valgrind.%p.log" \
    postgres -D "$dir/data" > "$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
    pg_isready -q && break
    sleep 1
done

regress=$(make -s -C "$here" print-regress)
pg_regress=$(dirname "$(pg_config --pgxs)")/../test/regress/pg_regress
status=0
"$pg_regress" --host="$TEST_DIR" --port="$TEST_PORT" --inputdir="$here" \
    --outputdir="$dir/out" --load-extension=event_store --dbname=contrib_regression \
    --bindir="$(dirname "$(command -v postgres)")" $regress || status=1
[ "$status" = 0 ] || cat "$dir/out/regression.diffs" 2>/dev/null | head -100

pg_ctl -D "$dir/data" -m fast stop >/dev/null
wait "$pid" || true

errors=$(cat "$dir"/valgrind.*.log | grep -c '^==[0-9]*== [A-Z]' || true)
if [ "$errors" != 0 ]; then
    echo "valgrind reported errors:"
    cat "$dir"/valgrind.*.log | head -200
    status=1
fi
echo "valgrind run: $(( $(date +%s) - started )) s, $(ls "$dir"/valgrind.*.log | wc -l) processes checked, $errors error lines"
exit $status
