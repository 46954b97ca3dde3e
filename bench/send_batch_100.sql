BEGIN;
SELECT cardinality(event_store.outbox_send_batch('bench_batch', array_agg(jsonb_build_object('n', n)), array_agg('k' || (n % 10)))) FROM generate_series(1, 100) AS n;
COMMIT;
