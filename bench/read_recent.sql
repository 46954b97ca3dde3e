\set p random(:recent_from, :recent_to)
SELECT * FROM event_store.read_stream((SELECT stream FROM event_store.events WHERE position >= :p ORDER BY position LIMIT 1), 0, 100);
