#!/usr/bin/env bash
# Filtered feed benchmark: a subscription selecting 1% of the events by
# type, against reading every event with read_all and filtering in the
# client (tools/es_filter_bench).  Target: the subscription at least 20x
# faster.
#
# Usage: bash bench/filtered_feed.sh [EVENTS]      (default 10000000)
# Runs against the server that the usual PG* variables (PGHOST, PGPORT,
# PGUSER) point to, with event_store installed and preloaded, in a database
# es_filter_bench that it creates again.  Events are loaded with one INSERT
# (as a restore would): 10,000 streams, data of about 100 bytes, every
# hundredth event of type Rare.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
events=${1:-10000000}
db=es_filter_bench

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -X -q -v ON_ERROR_STOP=1 -d $db <<SQL
CREATE EXTENSION event_store;
INSERT INTO event_store.events
SELECT g, 'account-' || (g % 10000), g / 10000,
	   CASE WHEN g % 100 = 0 THEN 'Rare' ELSE 'Common' END,
	   jsonb_build_object('amount', g % 997, 'currency', 'EUR',
						  'note', 'an event of the benchmark of filtered feeds'),
	   NULL, gen_random_uuid(), now()
FROM generate_series(1, $events) AS g;
VACUUM ANALYZE event_store.events;
SQL
echo "$events events loaded"
"$here/tools/es_filter_bench" "dbname=$db" Rare
