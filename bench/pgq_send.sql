SELECT pgq.insert_event('bench', 'msg', '{"n": 1}');
