-- The walk-through run by scripts/demo.sh.
\pset footer off
\echo '== 1. Install the extension'
CREATE EXTENSION event_store;

\echo '== 2. Append: a new order stream (expected version -1: it must not exist yet)'
SELECT event_store.append('order-42', '[
  {"type": "OrderPlaced",  "data": {"customer": "ann", "total": 30}},
  {"type": "ItemAdded",    "data": {"sku": "book", "price": 30}}
]', -1) AS new_version;

\echo '== 3. Append one more event, expecting the stream to be at version 1'
SELECT event_store.append_event('order-42', 'OrderPaid', '{"amount": 30}',
       expected_version => 1) AS new_version;

\echo '== 4. A writer with a stale view expects version 1 again: conflict (EV001)'
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
SELECT event_store.append_event('order-42', 'OrderCancelled', '{}', expected_version => 1);
\set VERBOSITY default
\set ON_ERROR_STOP 1

\echo '== 5. Read the stream forward, then its last event backward'
SELECT position, version, type, data FROM event_store.read_stream('order-42');
SELECT version, type FROM event_store.read_stream('order-42', NULL, 1, true);
SELECT event_store.stream_version('order-42') AS current_version;
