-- route_events / unroute_events: appends feed the outbox in their own
-- transaction, without the caller writing twice.
SELECT reset_event_store();

SELECT event_store.route_events('orders', 'order');
SELECT event_store.route_events('orders', 'order');
SELECT event_store.route_events('payments', event_type => 'Paid');
SELECT event_store.route_events('everything');
SELECT topic, category, event_type FROM event_store.event_routes ORDER BY topic;

SELECT event_store.append('order-1', '[
	{"type": "Placed", "data": {"total": 30}, "metadata": {"user": "u1"},
	 "id": "5a1d5c4e-0000-4000-8000-000000000001"},
	{"type": "Paid", "data": {"amount": 30}, "id": "5a1d5c4e-0000-4000-8000-000000000002"}]');
SELECT event_store.append_event('user-1', 'Paid', '{"amount": 5}');
SELECT event_store.append_event('user-2', 'Joined', '{}');

-- One message per event and topic; key = stream; payload = data; headers
-- carry id, stream, version, type, position and metadata (null when the
-- event has none).
SELECT topic, key, payload,
	   headers - 'recorded_at' - CASE WHEN key LIKE 'user-%' THEN 'event_id' ELSE '' END AS headers,
	   headers ? 'recorded_at' AS has_recorded_at
FROM event_store.outbox ORDER BY topic, id;
-- Every message's headers have metadata: null for an event without any.
SELECT count(*) FILTER (WHERE headers->'metadata' = 'null'::jsonb) AS null_metadata,
	   count(*) FILTER (WHERE NOT headers ? 'metadata') AS without_metadata_key
FROM event_store.outbox;
-- recorded_at is ISO 8601 in UTC and the event's.
SELECT bool_and((o.headers->>'recorded_at')::timestamptz = e.recorded_at) AS same_time,
	   bool_and(o.headers->>'recorded_at' LIKE '____-__-__T__:__:__%Z') AS iso_utc
FROM event_store.outbox AS o JOIN event_store.events AS e ON e.id = (o.headers->>'event_id')::uuid;

-- The messages belong to the append's transaction.
BEGIN;
SELECT event_store.append_event('order-2', 'Placed', '{}');
ROLLBACK;
SELECT count(*) FROM event_store.outbox WHERE key = 'order-2';
-- A retry that writes nothing enqueues nothing.
SELECT event_store.append('order-1', '[
	{"type": "Placed", "data": {"total": 30}, "id": "5a1d5c4e-0000-4000-8000-000000000001"},
	{"type": "Paid", "data": {"amount": 30}, "id": "5a1d5c4e-0000-4000-8000-000000000002"}]');
SELECT count(*) FROM event_store.outbox WHERE key = 'order-1';

-- Unroute stops it; a route added in the same transaction applies at once.
SELECT event_store.unroute_events('everything');
SELECT event_store.unroute_events('everything');
BEGIN;
SELECT event_store.route_events('users', 'user');
SELECT event_store.append_event('user-3', 'Joined', '{}');
COMMIT;
SELECT topic, key FROM event_store.outbox WHERE key = 'user-3' ORDER BY topic;

-- Routed messages are consumed like any other, one at a time per stream
-- (their key): only the first of order-1's two messages is claimable.
SELECT count(*) FROM event_store.outbox_claim('orders');

-- Bad input.
SELECT try($$SELECT event_store.route_events(NULL, 'order')$$);
SELECT try($$SELECT event_store.route_events('', 'order')$$);
SELECT try($$SELECT event_store.route_events('t', repeat('c', 1025))$$);
SELECT try($$SELECT event_store.route_events('t', NULL, repeat('e', 1025))$$);
-- A category no stream can be in (empty, or with a '-'), and an empty
-- type, are refused: an empty category stood for "every category" in the
-- uniqueness of routes and kept a later catch-all route out.
SELECT try($$SELECT event_store.route_events('rt', '')$$);
SELECT try($$SELECT event_store.route_events('rt', 'order-1')$$);
SELECT try($$SELECT event_store.route_events('rt', NULL, '')$$);
SELECT event_store.route_events('rt', NULL) AS catch_all_added;
SELECT category, event_type, topic FROM event_store.event_routes WHERE topic = 'rt';
SELECT try($$SELECT event_store.unroute_events(NULL)$$);
