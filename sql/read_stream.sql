-- read_stream(stream, from_version, max_count, backward) and
-- stream_version(stream).
SELECT reset_event_store();

SELECT event_store.append('invoice-7', jsonb_agg(jsonb_build_object('type', 'Line', 'data', jsonb_build_object('n', n))))
FROM generate_series(0, 9) AS n;
SELECT event_store.append('invoice-8', '{"type": "Other", "data": {}}');

-- Forward from the start (the defaults).
SELECT version, data FROM event_store.read_stream('invoice-7');
-- From a version, inclusive, limited.
SELECT version FROM event_store.read_stream('invoice-7', 4, 3);
-- Past the end: no rows.
SELECT version FROM event_store.read_stream('invoice-7', 10);
-- Backward from the end (from_version NULL), limited.
SELECT version FROM event_store.read_stream('invoice-7', NULL, 4, true);
-- Backward from a version, inclusive.
SELECT version FROM event_store.read_stream('invoice-7', 2, 100, true);
-- Backward from beyond the end starts at the end.
SELECT version FROM event_store.read_stream('invoice-7', 1000, 2, true);
-- Backward with the default from_version (NULL) starts at the end too.
SELECT version FROM event_store.read_stream('invoice-7', backward => true, max_count => 3);
SELECT version FROM event_store.read_stream('invoice-7', max_count => 2, backward => true);
-- Forward with from_version NULL starts at version 0.
SELECT version FROM event_store.read_stream('invoice-7', NULL, 2);
-- max_count 0: nothing.
SELECT count(*) FROM event_store.read_stream('invoice-7', 0, 0);
-- A missing stream has no rows and no version.
SELECT count(*) FROM event_store.read_stream('invoice-404');
SELECT event_store.stream_version('invoice-404');
SELECT event_store.stream_version('invoice-7'), event_store.stream_version('invoice-8');
-- Stream names are matched exactly: no prefix, case or pattern matching.
SELECT count(*) FROM event_store.read_stream('invoice-');
SELECT count(*) FROM event_store.read_stream('INVOICE-7');
SELECT count(*) FROM event_store.read_stream('invoice-_');

-- The result is of type event_store.event.
SELECT pg_typeof(e) FROM event_store.read_stream('invoice-8') AS e;
SELECT (e).stream, (e).version, (e).type, (e).recorded_at <= now() AS recorded
FROM (SELECT event_store.read_stream('invoice-8') AS e) AS s;

