-- Filtered feeds: event_types and stream_prefix in read_all,
-- read_category and subscriptions.
SELECT reset_event_store();

SELECT event_store.append_event(s, t, '{}')
FROM (VALUES ('order-1', 'Placed'), ('order-1', 'Paid'), ('order-22', 'Placed'),
			 ('invoice-1', 'Issued'), ('order-3', 'Shipped'), ('orders-1', 'Placed'))
	 AS v(s, t);

SELECT position, stream, type FROM event_store.read_all(event_types => '{Placed}');
SELECT position, stream, type FROM event_store.read_all(event_types => '{Placed,Issued}', max_count => 2);
SELECT position, stream, type FROM event_store.read_all(3, event_types => '{Placed,Issued}');
SELECT position, stream, type FROM event_store.read_all(stream_prefix => 'order-');
SELECT position, stream, type FROM event_store.read_all(stream_prefix => 'order-', event_types => '{Placed}');
SELECT position, stream, type FROM event_store.read_category('order', event_types => '{Placed,Shipped}');
SELECT position, stream, type FROM event_store.read_category('order', stream_prefix => 'order-2');
SELECT position, stream, type FROM event_store.read_category('order', 0, 10, 0, 1, '{Paid}');
SELECT position, stream, type FROM event_store.read_all(event_types => '{Nothing}');
-- A type given twice is read once.
SELECT position, stream, type FROM event_store.read_all(event_types => '{Paid,Issued,Paid}');

-- Bad filters.
SELECT try($$SELECT * FROM event_store.read_all(event_types => '{}')$$);
SELECT try($$SELECT * FROM event_store.read_all(event_types => '{Placed,NULL}')$$);
SELECT try($$SELECT * FROM event_store.read_all(event_types => '{""}')$$);
SELECT try($$SELECT * FROM event_store.read_all(event_types => '{{a},{b}}')$$);
SELECT try($$SELECT * FROM event_store.read_all(event_types => array_fill('x'::text, ARRAY[101]))$$);
SELECT try($$SELECT * FROM event_store.read_all(stream_prefix => '')$$);
SELECT try($$SELECT * FROM event_store.read_all(stream_prefix => repeat('x', 1025))$$);
SELECT try($$SELECT * FROM event_store.read_category('order', event_types => '{}')$$);
SELECT try($$SELECT event_store.subscription_create('bad', event_types => '{}')$$);
SELECT try($$SELECT event_store.subscription_create('bad', stream_prefix => '')$$);

-- A filtered subscription: only its events; its checkpoint moves past
-- what the filter skipped when nothing was selected.
SELECT event_store.subscription_create('placed', event_types => '{Placed}');
SELECT event_store.subscription_create('invoices', stream_prefix => 'invoice-');
SELECT event_store.subscription_create('rare', event_types => '{Refunded}');
SELECT name, event_types, stream_prefix FROM event_store.subscriptions ORDER BY name;
SELECT position, stream, type FROM event_store.subscription_fetch('placed', 2);
SELECT event_store.subscription_ack('placed', 3);
SELECT position, stream, type FROM event_store.subscription_fetch('placed');
SELECT position, stream, type FROM event_store.subscription_fetch('invoices');
SELECT position, stream, type FROM event_store.subscription_fetch('rare');
SELECT subscription, checkpoint, head, pending_events FROM event_store.subscription_lag ORDER BY subscription;
SELECT event_store.append_event('order-1', 'Refunded', '{}');
SELECT subscription, checkpoint, pending_events FROM event_store.subscription_lag ORDER BY subscription;
SELECT position, stream, type FROM event_store.subscription_fetch('rare');
-- if_not_exists compares the filters too.
SELECT event_store.subscription_create('rare', event_types => '{Refunded}', if_not_exists => true);
SELECT try($$SELECT event_store.subscription_create('rare', event_types => '{Paid}', if_not_exists => true)$$);
SELECT try($$SELECT event_store.subscription_create('rare2', stream_prefix => repeat('x', 1025))$$);
