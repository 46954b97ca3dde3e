SELECT event_store.outbox_send('bench', '{"n": 1}');
