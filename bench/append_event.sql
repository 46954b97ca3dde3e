\set v random(1, 9000000000000000000)
SELECT event_store.append_event('bench-' || :client_id || '-' || :v, 'Happened', '{"n": 1}');
