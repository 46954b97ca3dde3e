-- Every bad input named in the contract, with its SQLSTATE and message.
-- None of them may write anything.
SELECT reset_event_store();

-- Stream names: NULL, empty, over 1024 bytes (1024 is fine).
SELECT try($$SELECT event_store.append(NULL, '{"type": "T", "data": {}}')$$);
SELECT try($$SELECT event_store.append('', '{"type": "T", "data": {}}')$$);
SELECT try($$SELECT event_store.append(repeat('s', 1025), '{"type": "T", "data": {}}')$$);
SELECT try($$SELECT event_store.append(repeat('é', 513), '{"type": "T", "data": {}}')$$);
SELECT event_store.append(repeat('s', 1024), '{"type": "T", "data": {}}');
SELECT try($$SELECT event_store.append_event(NULL, 'T', '{}')$$);
SELECT try($$SELECT event_store.append_event('', 'T', '{}')$$);
SELECT try($$SELECT * FROM event_store.read_stream(NULL)$$);
SELECT try($$SELECT * FROM event_store.read_stream('')$$);
SELECT try($$SELECT * FROM event_store.read_stream(repeat('s', 1025))$$);
SELECT try($$SELECT event_store.stream_version(NULL)$$);
SELECT try($$SELECT event_store.stream_version('')$$);
SELECT try($$SELECT event_store.delete_stream(NULL)$$);

-- events: NULL, not an object or array, empty array, array of non-objects.
SELECT try($$SELECT event_store.append('s-1', NULL)$$);
SELECT try($$SELECT event_store.append('s-1', '"text"')$$);
SELECT try($$SELECT event_store.append('s-1', '42')$$);
SELECT try($$SELECT event_store.append('s-1', 'null')$$);
SELECT try($$SELECT event_store.append('s-1', '[]')$$);
SELECT try_context($$SELECT event_store.append('s-1', '{}')$$);
SELECT try_context($$SELECT event_store.append('s-1', '[1, 2]')$$);
SELECT try_context($$SELECT event_store.append('s-1', '[{"type": "T", "data": {}}, [1]]')$$);

-- type: missing, not a string, empty, too long, reserved.
SELECT try_context($$SELECT event_store.append('s-1', '{"data": {}}')$$);
SELECT try_context($$SELECT event_store.append('s-1', '{"type": 1, "data": {}}')$$);
SELECT try_context($$SELECT event_store.append('s-1', '{"type": null, "data": {}}')$$);
SELECT try_context($$SELECT event_store.append('s-1', '{"type": ["T"], "data": {}}')$$);
SELECT try_context($$SELECT event_store.append('s-1', '{"type": "", "data": {}}')$$);
SELECT try_context(format($f$SELECT event_store.append('s-1', '{"type": "%s", "data": {}}')$f$, repeat('t', 1025)));
SELECT try_context($$SELECT event_store.append('s-1', '{"type": "$internal", "data": {}}')$$);
SELECT try($$SELECT event_store.append_event('s-1', NULL, '{}')$$);
SELECT try($$SELECT event_store.append_event('s-1', '', '{}')$$);
SELECT try($$SELECT event_store.append_event('s-1', repeat('t', 1025), '{}')$$);

-- data: missing, SQL NULL.
SELECT try_context($$SELECT event_store.append('s-1', '{"type": "T"}')$$);
SELECT try($$SELECT event_store.append_event('s-1', 'T', NULL)$$);

-- metadata: not an object.
SELECT try_context($$SELECT event_store.append('s-1', '{"type": "T", "data": {}, "metadata": [1]}')$$);
SELECT try_context($$SELECT event_store.append('s-1', '{"type": "T", "data": {}, "metadata": "m"}')$$);
SELECT try($$SELECT event_store.append_event('s-1', 'T', '{}', '[1]')$$);
SELECT try($$SELECT event_store.append_event('s-1', 'T', '{}', '"m"')$$);
SELECT try($$SELECT event_store.append_event('s-1', 'T', '{}', '3')$$);

-- id: malformed, not a string.
SELECT try($$SELECT event_store.append('s-1', '{"type": "T", "data": {}, "id": "not-a-uuid"}')$$);
SELECT try($$SELECT event_store.append('s-1', '{"type": "T", "data": {}, "id": "00000000-0000-4000-8000-00000000000"}')$$);
SELECT try($$SELECT event_store.append('s-1', '{"type": "T", "data": {}, "id": "00000000-0000-4000-8000-0000000000001"}')$$);
SELECT try($$SELECT event_store.append('s-1', '{"type": "T", "data": {}, "id": 7}')$$);
SELECT try($$SELECT event_store.append_event('s-1', 'T', '{}', id => 'nope')$$);
-- The accepted spellings are those of the uuid type.
SELECT event_store.append('s-2', '[
	{"type": "T", "data": {}, "id": "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}"},
	{"type": "T", "data": {}, "id": "A0EEBC999C0B4EF8BB6D6BB9BD380A12"},
	{"type": "T", "data": {}, "id": "a0eebc99-9c0b4ef8-bb6d6bb9-bd380a13"}]');
SELECT id FROM event_store.read_stream('s-2');

-- Unknown keys are refused rather than silently dropped.
SELECT try_context($$SELECT event_store.append('s-1', '{"type": "T", "data": {}, "meta": {}}')$$);

-- expected_version below -2.
SELECT try($$SELECT event_store.append('s-1', '{"type": "T", "data": {}}', -3)$$);
SELECT try($$SELECT event_store.append_event('s-1', 'T', '{}', NULL, -9223372036854775808)$$);
SELECT try($$SELECT event_store.delete_stream('s-1', -5)$$);

-- read_stream: negative or NULL max_count, negative from_version, NULL backward.
SELECT try($$SELECT * FROM event_store.read_stream('s-2', 0, -1)$$);
SELECT try($$SELECT * FROM event_store.read_stream('s-2', 0, NULL)$$);
SELECT try($$SELECT * FROM event_store.read_stream('s-2', -1)$$);
SELECT try($$SELECT * FROM event_store.read_stream('s-2', -1, 10, true)$$);
SELECT try($$SELECT * FROM event_store.read_stream('s-2', 0, 10, NULL)$$);

-- Limits: events per append and size of one event.
SET event_store.max_append_events = 3;
SELECT try($$SELECT event_store.append('s-1', '[{"type": "T", "data": 1}, {"type": "T", "data": 2}, {"type": "T", "data": 3}, {"type": "T", "data": 4}]')$$);
RESET event_store.max_append_events;
SET event_store.max_event_size = '1kB';
SELECT try_context(format($f$SELECT event_store.append('s-1', '{"type": "T", "data": "%s"}')$f$, repeat('x', 2000)));
SELECT try(format($f$SELECT event_store.append_event('s-1', 'T', '{}', '{"m": "%s"}')$f$, repeat('x', 2000)));
RESET event_store.max_event_size;

-- Writing in a read-only transaction.
BEGIN READ ONLY;
SELECT try($$SELECT event_store.append('s-1', '{"type": "T", "data": {}}')$$);
SELECT try($$SELECT event_store.append_event('s-1', 'T', '{}')$$);
SELECT try($$SELECT event_store.delete_stream('s-1')$$);
COMMIT;

-- Nothing above wrote to stream s-1.
SELECT event_store.stream_version('s-1');
SELECT count(*) FROM event_store.events WHERE stream <> 's-2' AND stream <> repeat('s', 1024);
