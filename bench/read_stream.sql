\set s random(1, :streams)
SELECT * FROM event_store.read_stream('read-' || :s, 0, 100);
