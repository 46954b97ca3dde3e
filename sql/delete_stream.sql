-- delete_stream(stream, expected_version): end a stream with a tombstone.
SELECT reset_event_store();

SELECT event_store.append('account-1', '[{"type": "Opened", "data": {}}, {"type": "Closed", "data": {}}]');
-- The expected version is checked as in append.
SELECT try($$SELECT event_store.delete_stream('account-1', 0)$$);
SELECT event_store.delete_stream('account-1', 1);

-- Appending, reading and asking the version of a deleted stream: EV003.
SELECT try($$SELECT event_store.append('account-1', '{"type": "Reopened", "data": {}}')$$);
SELECT try($$SELECT event_store.append_event('account-1', 'Reopened', '{}')$$);
SELECT try($$SELECT * FROM event_store.read_stream('account-1')$$);
SELECT try($$SELECT event_store.stream_version('account-1')$$);
SELECT try($$SELECT event_store.delete_stream('account-1')$$);

-- The events and the tombstone stay in the log.
SELECT version, type FROM event_store.events WHERE stream = 'account-1' ORDER BY position;
SELECT stream, version, events, deleted FROM event_store.streams WHERE category = 'account';

-- Users cannot write the tombstone type (or any "$" type) themselves.
SELECT try($$SELECT event_store.append_event('account-2', '$stream_deleted', '{}')$$);

-- Deleting a stream that never existed is refused: it would only burn the
-- name.  Nothing is written, and the stream can still be used.
SELECT try($$SELECT event_store.delete_stream('account-3')$$);
SELECT try($$SELECT event_store.delete_stream('account-3', -2)$$);
SELECT try($$SELECT event_store.delete_stream('account-3', 0)$$);
SELECT count(*) FROM event_store.events WHERE stream = 'account-3';
-- Unless the expected version says the stream must not exist: then the
-- tombstone is written at version 0 and reserves the name.
SELECT event_store.delete_stream('account-3', -1);
SELECT try($$SELECT event_store.append_event('account-3', 'Opened', '{}')$$);
SELECT try($$SELECT event_store.delete_stream('account-1', -1)$$);
