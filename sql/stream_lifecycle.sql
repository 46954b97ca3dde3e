-- Stream lifecycle: retention (set_stream_metadata, stream_metadata),
-- soft delete, scavenge, erase_stream.
SELECT reset_event_store();

SELECT event_store.append('order-1', jsonb_agg(jsonb_build_object('type', 'Step', 'data', jsonb_build_object('n', n))))
FROM generate_series(0, 5) AS n;
SELECT event_store.append_event('order-2', 'Placed', '{}');

-- No metadata: every limit NULL.
SELECT * FROM event_store.stream_metadata('order-1');

-- max_count: read_stream returns only the last events, at once.
SELECT event_store.set_stream_metadata('order-1', max_count => 2);
SELECT * FROM event_store.stream_metadata('order-1');
SELECT version, data FROM event_store.read_stream('order-1');
SELECT version FROM event_store.read_stream('order-1', backward => true);
SELECT version FROM event_store.read_stream('order-1', from_version => 1);
-- The feed still has every event until the scavenger removes them.
SELECT count(*) FROM event_store.read_all() WHERE stream = 'order-1';

-- truncate_before, with max_count: the stricter one wins.
SELECT event_store.set_stream_metadata('order-1', max_count => 4, truncate_before => 3);
SELECT version FROM event_store.read_stream('order-1');
-- NULL clears a limit.
SELECT event_store.set_stream_metadata('order-1', truncate_before => 1);
SELECT * FROM event_store.stream_metadata('order-1');
SELECT version FROM event_store.read_stream('order-1');

-- max_age: events older than it are not read.
SELECT event_store.set_stream_metadata('order-2', max_age => '1 hour');
UPDATE event_store.events SET recorded_at = now() - interval '2 hours' WHERE stream = 'order-2';
SELECT count(*) FROM event_store.read_stream('order-2');
SELECT event_store.stream_version('order-2');

-- scavenge removes what the limits cover; positions never change.
SELECT position, version FROM event_store.events WHERE stream = 'order-1' ORDER BY position;
SELECT try($$SELECT event_store.scavenge(0)$$);
SELECT event_store.scavenge(1);
SELECT event_store.scavenge();
SELECT event_store.scavenge();
SELECT position, version FROM event_store.events WHERE stream IN ('order-1', 'order-2') ORDER BY position;
SELECT position, stream, version FROM event_store.read_all();
-- order-2 lost its only event, but its versions continue.
SELECT event_store.stream_version('order-2');
SELECT event_store.append_event('order-2', 'Shipped', '{}', expected_version => 0);
UPDATE event_store.events SET recorded_at = now() WHERE stream = 'order-2';
SELECT version, type FROM event_store.read_stream('order-2');
-- New positions are above every position ever handed out.
SELECT position > 7 AS above FROM event_store.events WHERE stream = 'order-2';

-- Bad metadata.
SELECT try($$SELECT event_store.set_stream_metadata('order-1', max_count => 0)$$);
SELECT try($$SELECT event_store.set_stream_metadata('order-1', max_age => '-1 day')$$);
SELECT try($$SELECT event_store.set_stream_metadata('order-1', max_age => '0')$$);
SELECT try($$SELECT event_store.set_stream_metadata('order-1', truncate_before => -1)$$);
SELECT try($$SELECT event_store.set_stream_metadata(NULL, max_count => 1)$$);
SELECT try($$SELECT event_store.set_stream_metadata('', max_count => 1)$$);
SELECT try($$SELECT event_store.set_stream_metadata(repeat('x', 1025), max_count => 1)$$);
SELECT try($$SELECT * FROM event_store.stream_metadata(NULL)$$);
SELECT try($$SELECT * FROM event_store.stream_metadata('')$$);
SELECT try($$SELECT * FROM event_store.stream_metadata(repeat('x', 1025))$$);
-- A stream without events may get metadata ahead of its first event.
SELECT event_store.set_stream_metadata('order-9', max_count => 1);
SELECT event_store.append_event('order-9', 'A', '{}');
SELECT event_store.append_event('order-9', 'B', '{}');
SELECT version, type FROM event_store.read_stream('order-9');

-- Soft delete: the stream reads as empty and can be written again, its
-- versions continuing.
SELECT event_store.append('cart-1', '[{"type": "Added", "data": {}}, {"type": "Added", "data": {}}]');
SELECT try($$SELECT event_store.delete_stream('cart-1', 0, soft => true)$$);
SELECT event_store.delete_stream('cart-1', 1, soft => true);
SELECT count(*) FROM event_store.read_stream('cart-1');
SELECT event_store.stream_version('cart-1');
SELECT * FROM event_store.stream_metadata('cart-1');
-- Deleting it again changes nothing.
SELECT event_store.delete_stream('cart-1', soft => true);
-- It does not exist for the expected version, but versions continue.
SELECT try($$SELECT event_store.append_event('cart-1', 'Added', '{}', expected_version => -2)$$);
SELECT event_store.append_event('cart-1', 'Added', '{"again": true}', expected_version => -1);
SELECT version, data FROM event_store.read_stream('cart-1');
SELECT event_store.stream_version('cart-1');
-- Soft-deleted and not written since: a numeric expected version is the
-- last version.
SELECT event_store.append_event('cart-2', 'Added', '{}');
SELECT event_store.delete_stream('cart-2', soft => true);
SELECT try($$SELECT event_store.append_event('cart-2', 'Added', '{}', expected_version => 1)$$);
SELECT event_store.append_event('cart-2', 'Added', '{}', expected_version => 0);
-- The scavenger removes the soft-deleted events.
SELECT event_store.scavenge();
SELECT stream, version FROM event_store.events WHERE stream LIKE 'cart-%' ORDER BY position;
-- A soft-deleted stream whose events are all removed keeps its versions.
SELECT event_store.append_event('cart-3', 'Added', '{}');
SELECT event_store.delete_stream('cart-3', soft => true);
SELECT event_store.scavenge();
SELECT count(*) FROM event_store.events WHERE stream = 'cart-3';
SELECT event_store.append_event('cart-3', 'Added', '{}', expected_version => -1);
-- Hard delete of a soft-deleted stream: the tombstone, which stays.
SELECT event_store.delete_stream('cart-3');
SELECT event_store.scavenge();
SELECT version, type FROM event_store.events WHERE stream = 'cart-3' ORDER BY position;
SELECT try($$SELECT event_store.delete_stream('cart-3', soft => true)$$);
SELECT try($$SELECT event_store.set_stream_metadata('cart-3', max_count => 1)$$);
-- Soft delete of a stream without events: refused, unless expected -1.
SELECT try($$SELECT event_store.delete_stream('cart-4', soft => true)$$);
SELECT event_store.delete_stream('cart-4', -1, soft => true);
SELECT try($$SELECT event_store.delete_stream('cart-4', soft => NULL)$$);

-- Erasure: data and metadata gone, positions, versions, ids, types kept;
-- routed messages in the outbox and the dead letters deleted.
SELECT event_store.route_events('gdpr', 'user');
SELECT event_store.append_event('user-1', 'Registered', '{"email": "ann@example.com"}', '{"ip": "10.0.0.1"}');
SELECT event_store.append_event('user-1', 'Renamed', '{"name": "Ann"}');
SELECT event_store.append_event('user-2', 'Registered', '{"email": "bob@example.com"}');
-- The first message fails for good: a dead letter.
SELECT max_attempts FROM event_store.outbox_configure('gdpr', max_attempts => 1);
SELECT event_store.outbox_nack(array_agg(receipt), error => 'failed')
FROM event_store.outbox_claim('gdpr', 1);
SELECT key, payload FROM event_store.outbox ORDER BY id;
SELECT key, payload FROM event_store.outbox_dead_letters ORDER BY id;
SELECT event_store.erase_stream('user-1');
SELECT event_store.erase_stream('user-1');
SELECT stream, version, type, data, metadata FROM event_store.read_all() WHERE stream LIKE 'user-%';
SELECT key, payload FROM event_store.outbox ORDER BY id;
SELECT count(*) FROM event_store.outbox_dead_letters WHERE key = 'user-1';
SELECT count(*) > 0 AS pages_recorded FROM event_store.erased_pages;
SELECT event_store.erase_stream('user-404');
SELECT try($$SELECT event_store.erase_stream(NULL)$$);
SELECT try($$SELECT event_store.erase_stream('')$$);

-- Repeating the ids of a soft-deleted stream's events is not a retry:
-- those events are no longer the stream's, and their ids are taken.
SELECT event_store.append('basket-1', '{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-0000000000c3"}', -1);
SELECT event_store.delete_stream('basket-1', soft => true);
SELECT try($$SELECT event_store.append('basket-1', '{"type": "Added", "data": {}, "id": "00000000-0000-4000-8000-0000000000c3"}', -1)$$);
SELECT event_store.stream_version('basket-1');
