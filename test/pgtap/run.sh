#!/usr/bin/env bash
# Run the pgTAP files of this folder with pg_prove against a throwaway
# cluster that preloads event_store.  Run as a user that can run initdb.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../cluster.sh"

init_test_cluster pgtap
trap 'stop_test_cluster; rm -rf "$TEST_DIR"' EXIT
pg_ctl -D "$TEST_DIR/data" -l "$TEST_DIR/log" -w start >/dev/null

export PGDATABASE=pgtap
createdb pgtap
psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION pgtap' -c 'CREATE EXTENSION event_store'
pg_prove --ext .sql "$here"/*.sql
