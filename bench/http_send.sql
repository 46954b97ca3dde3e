SELECT event_store.outbox_send('hooks', jsonb_build_object('t', (extract(epoch FROM clock_timestamp()) * 1000)::bigint), 'k' || (random() * 100)::int);
