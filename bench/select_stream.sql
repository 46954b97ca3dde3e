\set s random(1, :streams)
SELECT position, stream, version, type, data, metadata, id, recorded_at FROM plain_events WHERE stream = 'read-' || :s AND version >= 0 ORDER BY version LIMIT 100;
