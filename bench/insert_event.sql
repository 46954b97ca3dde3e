\set v random(1, 9000000000000000000)
INSERT INTO plain_events (stream, version, type, data) VALUES ('bench-' || :client_id || '-' || :v, 0, 'Happened', '{"n": 1}');
