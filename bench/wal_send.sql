SELECT event_store.outbox_send('cdc', '{"n": 1}');
