SELECT count(*) FROM event_store.outbox_consume('bench', 10);
