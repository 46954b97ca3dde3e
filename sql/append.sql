-- append(stream, events, expected_version): write one or many events
-- atomically, with optimistic concurrency and idempotent retries.
SELECT reset_event_store();

-- One object, then an array; the result is the stream's new version.
SELECT event_store.append('order-1', '{"type": "Created", "data": {"total": 10}}');
SELECT event_store.append('order-1', '[
	{"type": "ItemAdded", "data": {"sku": "a"}},
	{"type": "ItemAdded", "data": {"sku": "b"}, "metadata": {"user": "u1"}}
]');
SELECT position, stream, version, type, data, metadata
FROM event_store.read_stream('order-1');

-- Any JSON value is valid data; metadata null means none.
SELECT event_store.append('misc', '[
	{"type": "Number", "data": 42},
	{"type": "Text", "data": "hello"},
	{"type": "Nothing", "data": null, "metadata": null},
	{"type": "List", "data": [1, 2, 3], "metadata": {}}
]');
SELECT version, type, data, metadata FROM event_store.read_stream('misc');

-- Expected version -1: the stream must not exist.
SELECT event_store.append('order-2', '{"type": "Created", "data": {}}', -1);
SELECT try($$SELECT event_store.append('order-2', '{"type": "Created", "data": {}}', -1)$$);

-- Expected version -2: the stream must exist.
SELECT try($$SELECT event_store.append('order-3', '{"type": "Paid", "data": {}}', -2)$$);
SELECT event_store.append('order-2', '{"type": "Paid", "data": {}}', -2);

-- Expected version n: the current version must be exactly n.
SELECT event_store.append('order-2', '{"type": "Shipped", "data": {}}', 1);
SELECT try($$SELECT event_store.append('order-2', '{"type": "Shipped", "data": {}}', 1)$$);
SELECT try($$SELECT event_store.append('order-2', '{"type": "Shipped", "data": {}}', 7)$$);
SELECT try($$SELECT event_store.append('order-4', '{"type": "Shipped", "data": {}}', 0)$$);

-- A failed check writes nothing.
SELECT event_store.stream_version('order-2'), event_store.stream_version('order-3'),
	   event_store.stream_version('order-4');

-- Versions have no gaps and positions rise in append order.
SELECT version, position > lag(position) OVER (ORDER BY version) AS rising
FROM event_store.read_stream('order-2');

-- Events without an id get a fresh UUID (version 7, time-ordered).
SELECT count(DISTINCT id) AS distinct_ids, bool_and(substr(id::text, 15, 1) = '7') AS v7
FROM event_store.events;

-- Category is the part of the stream name before the first '-'.
SELECT DISTINCT stream, event_store.category(stream) FROM event_store.events ORDER BY stream;

-- Idempotent retry: the same ids again, as the stream's last events at the
-- same versions, succeed without writing and return the current version.
SELECT event_store.append('cart-1', '[
	{"type": "Opened", "data": {}, "id": "00000000-0000-4000-8000-000000000001"},
	{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-000000000002"}
]', -1);
SELECT event_store.append('cart-1', '[
	{"type": "Opened", "data": {}, "id": "00000000-0000-4000-8000-000000000001"},
	{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-000000000002"}
]', -1);
-- ... with any-version, and with just the last event
SELECT event_store.append('cart-1', '[
	{"type": "Opened", "data": {}, "id": "00000000-0000-4000-8000-000000000001"},
	{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-000000000002"}
]');
SELECT event_store.append('cart-1', '{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-000000000002"}', 0);
SELECT count(*) FROM event_store.read_stream('cart-1');

-- An id that exists elsewhere is a conflict: in another stream, ...
SELECT try($$SELECT event_store.append('cart-2', '{"type": "Opened", "data": {}, "id": "00000000-0000-4000-8000-000000000001"}')$$);
-- ... earlier in the same stream, ...
SELECT try($$SELECT event_store.append('cart-1', '{"type": "Opened", "data": {}, "id": "00000000-0000-4000-8000-000000000001"}')$$);
-- ... twice in one append, ...
SELECT try($$SELECT event_store.append('cart-3', '[
	{"type": "A", "data": {}, "id": "00000000-0000-4000-8000-0000000000aa"},
	{"type": "B", "data": {}, "id": "00000000-0000-4000-8000-0000000000aa"}]')$$);
-- ... or a retry whose first events are not the stream's.
SELECT try($$SELECT event_store.append('cart-1', '[
	{"type": "Other", "data": {}, "id": "00000000-0000-4000-8000-0000000000bb"},
	{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-000000000002"}]')$$);
-- With the current version as expected version, the event would land at
-- version 2, but its id is at version 1: a conflict, not a retry.
SELECT try($$SELECT event_store.append('cart-1', '{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-000000000002"}', 1)$$);
-- A retry whose expected version is neither the original nor the current
-- one is a wrong expected version.
SELECT try($$SELECT event_store.append('cart-1', '{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-000000000002"}', 5)$$);
-- None of those wrote anything.
SELECT stream, count(*) FROM event_store.events
WHERE stream LIKE 'cart-%' GROUP BY stream ORDER BY stream;

-- All events of one append are written or none: the third event of this
-- batch reuses an id, so the first two are not written either.
SELECT try($$SELECT event_store.append('batch-1', '[
	{"type": "A", "data": {}},
	{"type": "B", "data": {}},
	{"type": "C", "data": {}, "id": "00000000-0000-4000-8000-000000000001"}]')$$);
SELECT event_store.stream_version('batch-1');

-- Several appends to one stream in one statement and one transaction see
-- each other's events.
SELECT event_store.append('multi', '{"type": "T", "data": {}}') FROM generate_series(1, 3);
BEGIN;
SELECT event_store.append('multi', '{"type": "T", "data": {}}', 2);
SELECT event_store.append_event('multi', 'T', '{}', NULL, 3);
COMMIT;
SELECT version, type FROM event_store.read_stream('multi');

-- A rolled-back append leaves nothing behind.
BEGIN;
SELECT event_store.append('rolled-back', '{"type": "T", "data": {}}');
ROLLBACK;
SELECT event_store.stream_version('rolled-back');
