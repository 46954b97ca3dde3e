\set p random(:recent_from, :recent_to)
SELECT event_store.append_event((SELECT stream FROM event_store.events WHERE position >= :p ORDER BY position LIMIT 1), 'Happened', '{"n": 1}');
