-- append_event(stream, type, data, metadata, expected_version, id): the
-- single-event fast path.
SELECT reset_event_store();

SELECT event_store.append_event('user-1', 'Registered', '{"name": "Ann"}');
SELECT event_store.append_event('user-1', 'Renamed', '{"name": "Anna"}',
	'{"by": "admin"}', 0);
SELECT event_store.append_event('user-1', 'Verified', 'true',
	expected_version => 1, id => '11111111-1111-4111-8111-111111111111');
SELECT position, version, type, data, metadata,
	CASE WHEN id = '11111111-1111-4111-8111-111111111111' THEN id::text ELSE 'generated' END AS id
FROM event_store.read_stream('user-1');

-- Expected versions behave as in append.
SELECT event_store.append_event('user-2', 'Registered', '{}', NULL, -1);
SELECT try($$SELECT event_store.append_event('user-2', 'Registered', '{}', NULL, -1)$$);
SELECT try($$SELECT event_store.append_event('user-3', 'Registered', '{}', NULL, -2)$$);
SELECT event_store.append_event('user-2', 'Renamed', '{}', NULL, -2);
SELECT try($$SELECT event_store.append_event('user-2', 'Renamed', '{}', NULL, 0)$$);

-- Retry with the same id: no write, current version returned.
SELECT event_store.append_event('user-1', 'Verified', 'true',
	expected_version => 1, id => '11111111-1111-4111-8111-111111111111');
SELECT event_store.append_event('user-1', 'Verified', 'true',
	id => '11111111-1111-4111-8111-111111111111');
SELECT event_store.stream_version('user-1');
-- The same id on another stream is a conflict.
SELECT try($$SELECT event_store.append_event('user-9', 'Verified', 'true',
	id => '11111111-1111-4111-8111-111111111111')$$);

-- A JSON null metadata is no metadata.
SELECT event_store.append_event('user-4', 'Registered', '{}', 'null');
SELECT metadata IS NULL AS no_metadata FROM event_store.read_stream('user-4');
