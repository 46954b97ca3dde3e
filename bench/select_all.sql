\set p random(:first_position, :last_position)
SELECT position, stream, version, type, data, metadata, id, recorded_at FROM plain_events WHERE position >= :p ORDER BY position LIMIT 1000;
