INSERT INTO plain_queue (topic, payload) VALUES ('bench', '{"n": 1}');
