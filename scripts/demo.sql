-- The walk-through run by scripts/demo.sh.
\pset footer off
\echo '== 1. Install the extension'
CREATE EXTENSION event_store;

\echo '== 2. Append: a new order stream (expected version -1: it must not exist yet)'
SELECT event_store.append('order-42', '[
  {"type": "OrderPlaced",  "data": {"customer": "ann", "total": 30}},
  {"type": "ItemAdded",    "data": {"sku": "book", "price": 30}}
]', -1) AS new_version;

\echo '== 3. Append one more event, expecting the stream to be at version 1'
SELECT event_store.append_event('order-42', 'OrderPaid', '{"amount": 30}',
       expected_version => 1) AS new_version;

\echo '== 4. A writer with a stale view expects version 1 again: conflict (EV001)'
\set ON_ERROR_STOP 0
\set VERBOSITY verbose
SELECT event_store.append_event('order-42', 'OrderCancelled', '{}', expected_version => 1);
\set VERBOSITY default
\set ON_ERROR_STOP 1

\echo '== 5. Read the stream forward, then its last event backward'
SELECT position, version, type, data FROM event_store.read_stream('order-42');
SELECT version, type FROM event_store.read_stream('order-42', NULL, 1, true);
SELECT event_store.stream_version('order-42') AS current_version;

\echo '== 6. Outbox: a message sent in the same transaction as a business write'
CREATE TABLE orders (id int PRIMARY KEY, status text);
BEGIN;
INSERT INTO orders VALUES (42, 'paid');
SELECT event_store.outbox_send('billing', '{"order": 42, "event": "paid"}', key => 'order-42') AS message_id;
COMMIT;

\echo '== 7. A consumer claims it: a lease, an attempt count and a receipt'
CREATE TEMP TABLE claimed AS SELECT * FROM event_store.outbox_claim('billing', 10);
SELECT id, topic, key, payload, attempts, receipt FROM claimed;
SELECT topic, available, leased FROM event_store.outbox_depth;

\echo '== 8. ... and acknowledges it with the receipt: done, never handed out again'
SELECT event_store.outbox_ack(array_agg(receipt)) AS acknowledged FROM claimed;
SELECT count(*) AS left_in_outbox FROM event_store.outbox_claim('billing', 10);

\echo '== 9. Relay: route the topic to a NOTIFY channel; this session listens on it'
-- Waiting without leasing anything away from the relay: a condition,
-- checked every 50 ms for up to 30 s.
CREATE FUNCTION pg_temp.wait_until(condition text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	ok boolean;
BEGIN
	FOR i IN 1..600 LOOP
		EXECUTE 'SELECT ' || condition INTO ok;
		IF ok THEN
			RETURN true;
		END IF;
		PERFORM pg_sleep(0.05);
	END LOOP;
	RETURN false;
END
$$;
SELECT event_store.relay_route('billing', 'notify:billing_events');
LISTEN billing_events;
SELECT event_store.outbox_send('billing', '{"order": 43, "event": "refunded"}', key => 'order-43') AS message_id;
\echo '   (the relay worker publishes it the moment the send commits; once it has,'
\echo '    psql shows the notification:)'
SELECT pg_temp.wait_until($$NOT EXISTS (SELECT FROM event_store.outbox WHERE topic = 'billing')$$) AS published;
SELECT count(*) AS left_in_outbox FROM event_store.outbox WHERE topic = 'billing';

\echo '== 10. A subscription, woken by a notification when its events commit'
SELECT event_store.subscription_create('order_projection', 'order');
LISTEN event_store_sub_order_projection;
SELECT coalesce(feed_notifications, 0) AS notified_before
FROM event_store.relay_workers WHERE kind = 'relay' \gset
SELECT event_store.append_event('order-42', 'OrderShipped', '{"carrier": "post"}') AS new_version;
\echo '   (psql shows the notification once the relay has sent it:)'
SELECT pg_temp.wait_until(format(
	'(SELECT coalesce(feed_notifications, 0) FROM event_store.relay_workers WHERE kind = %L) > %s',
	'relay', :notified_before)) AS notified;
SELECT position, stream, version, type FROM event_store.subscription_fetch('order_projection');

\echo '== 11. The workers'
SELECT kind, database, state, messages_relayed, feed_notifications FROM event_store.relay_workers;
