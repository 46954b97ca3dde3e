SELECT coalesce(array_agg(receipt), '{}') AS receipts FROM event_store.outbox_claim('bench', 10) \gset
SELECT event_store.outbox_ack(:receipts);
