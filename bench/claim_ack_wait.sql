SELECT event_store.outbox_ack(coalesce(array_agg(receipt), '{}')) FROM event_store.outbox_claim('bench', 10, wait => '1 second');
