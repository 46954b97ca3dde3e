-- The relay: routes, and the worker of this database publishing the
-- outbox (the test cluster preloads the library).  Workers act on their
-- own time, so the test waits for what it expects, up to 30 seconds.
-- Receiving the notifications is tested with a LISTEN client in
-- test/t/006_relay.pl.
SELECT reset_event_store();

CREATE FUNCTION wait_for(condition text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
BEGIN
	FOR i IN 1..1500 LOOP
		EXECUTE 'SELECT ' || condition INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.02);
	END LOOP;
	RETURN false;
END
$$;

SELECT event_store.relay_available();
-- The launcher runs, and this database has a relay worker.
SELECT wait_for($$EXISTS (SELECT FROM event_store.relay_workers
					 WHERE kind = 'relay' AND database = current_database() AND pid IS NOT NULL)$$);
SELECT kind, state FROM event_store.relay_workers WHERE kind = 'launcher';
SELECT count(*) FROM pg_stat_activity
WHERE backend_type IN ('event_store launcher', 'event_store relay');

-- Routes.
SELECT event_store.relay_route('orders', 'notify:orders_channel');
SELECT event_store.relay_route('mixed', 'NOTIFY:Mixed Case "Quoted" Channel');
SELECT topic, sink, paused FROM event_store.relay_routes ORDER BY topic;
-- A route replaces the topic's previous sink.
SELECT event_store.relay_route('mixed', 'notify:mixed_channel');
SELECT topic, sink FROM event_store.relay_routes ORDER BY topic;

-- Routed messages leave the outbox: relayed and acknowledged.
SELECT count(event_store.outbox_send('orders', jsonb_build_object('n', n), 'order-' || (n % 3)))
FROM generate_series(1, 10) AS n;
SELECT wait_for($$NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'orders')$$);
-- The worker counts them at the end of its cycle, after the messages left.
SELECT wait_for($$(SELECT messages_relayed >= 10 AND last_batch_at IS NOT NULL
				  FROM event_store.relay_workers WHERE database = current_database())$$)
	AS relayed_and_batched;

-- A message too large for NOTIFY goes as a reference; relay_fetch resolves it.
SELECT event_store.outbox_send('orders', jsonb_build_object('big', repeat('x', 9000))) AS big_id \gset
SELECT wait_for($$NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'orders')$$);
SELECT id = :big_id AS same_id, topic, length(payload->>'big') AS size
FROM event_store.relay_fetch(:big_id);
SELECT (event_store.relay_fetch(424242)).id IS NULL AS unknown_is_null;
-- A copy older than event_store.relay_reference_ttl (an hour) is gone,
-- even before a worker deletes it (in one transaction, so that no worker
-- deletes it meanwhile).
BEGIN;
UPDATE event_store.relay_parked SET parked_at = now() - interval '59 minutes' WHERE id = :big_id;
SELECT (event_store.relay_fetch(:big_id)).id = :big_id AS still_there;
UPDATE event_store.relay_parked SET parked_at = now() - interval '61 minutes' WHERE id = :big_id;
SELECT (event_store.relay_fetch(:big_id)).id IS NULL AS expired;
SELECT count(*) AS still_stored FROM event_store.relay_parked WHERE id = :big_id;
COMMIT;

-- A message of a topic routed for the purpose, sent and relayed twice, is
-- proof that the relay has run a whole cycle since the messages before the
-- first one were committed: the test sees what the relay did, not how fast.
SELECT event_store.relay_route('zz_marker', 'notify:marker_channel');
CREATE FUNCTION relay_cycled() RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
	RETURN wait_for($c$NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'zz_marker')$c$);
END
$$;

-- Paused: messages wait; resumed: they go.
SELECT event_store.relay_pause('orders');
SELECT event_store.outbox_send('orders', '{"while": "paused"}') AS paused_id \gset
SELECT event_store.outbox_send('zz_marker', '{}') > 0 AS marked;
SELECT relay_cycled();
SELECT event_store.outbox_send('zz_marker', '{}') > 0 AS marked;
SELECT relay_cycled();
SELECT count(*) AS waiting FROM event_store.outbox WHERE id = :paused_id;
SELECT event_store.relay_resume('orders');
SELECT wait_for($$NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'orders')$$);

-- Unrouted: messages stay for other consumers.
SELECT event_store.relay_unroute('orders');
SELECT event_store.relay_unroute('orders');
SELECT event_store.outbox_send('orders', '{"after": "unroute"}') AS kept_id \gset
SELECT event_store.outbox_send('zz_marker', '{}') > 0 AS marked;
SELECT relay_cycled();
SELECT event_store.outbox_send('zz_marker', '{}') > 0 AS marked;
SELECT relay_cycled();
SELECT count(*) AS kept FROM event_store.outbox WHERE id = :kept_id;

-- Routed again, what waited goes.
SELECT event_store.relay_route('orders', 'notify:orders_channel');
SELECT wait_for($$NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'orders')$$);

-- Bad input.
SELECT event_store.relay_unroute('zz_marker');
SELECT try($$SELECT event_store.relay_route(NULL, 'notify:c')$$);
SELECT try($$SELECT event_store.relay_route('', 'notify:c')$$);
SELECT try($$SELECT event_store.relay_route('t', NULL)$$);
SELECT try($$SELECT event_store.relay_route('t', 'no scheme')$$);
SELECT try($$SELECT event_store.relay_route('t', 'smtp:someone')$$);
SELECT try($$SELECT event_store.relay_route('t', 'kafka://broker:9092/topic')$$);
SELECT try($$SELECT event_store.relay_route('t', 'https://example.invalid/hook')$$);
SELECT try($$SELECT event_store.relay_route('t', 'notify:')$$);
SELECT try(format($f$SELECT event_store.relay_route('t', 'notify:%s')$f$, repeat('c', 64)));
SELECT event_store.relay_route('t', 'notify:' || repeat('c', 63));
SELECT try($$SELECT event_store.relay_unroute(NULL)$$);
SELECT try($$SELECT event_store.relay_pause('no-route')$$);
SELECT try($$SELECT event_store.relay_resume('no-route')$$);
SELECT topic, length(sink) FROM event_store.relay_routes ORDER BY topic;
