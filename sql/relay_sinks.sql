-- Named sinks: relay_sink_create, relay_sink_drop, the view relay_sinks
-- (credentials masked, never readable by non-admins), relay_route with a
-- destination, and bad input.  Publishing to real brokers is tested in
-- test/t/081_sink_amqp.pl and test/t/082_sink_kafka.pl.
SELECT reset_event_store();

SELECT event_store.relay_sink_create('rabbit', 'amqp://relay:s3cr3t-pw@127.0.0.1:5999/%2f',
	'{"heartbeat": 10}');
SELECT event_store.relay_sink_create('kafka1', 'kafka://127.0.0.1:9999,127.0.0.2:9999',
	'{"sasl.password": "kafka-s3cr3t", "linger.ms": 5, "compression.type": "lz4"}');
SELECT event_store.relay_sink_create('hook', 'https://example.invalid/hook',
	'{"secret": "whsec_s3cr3t", "headers": {"Authorization": "Bearer tok3n"}}');
SELECT event_store.relay_sink_create('plain', 'kafka://localhost:9092/');

-- The view masks every secret.
SELECT name, scheme, url, options, topics, connected, in_flight, delivered, retried, last_error
FROM event_store.relay_sinks ORDER BY name;
SELECT count(*) FROM event_store.relay_sinks
WHERE url || options::text ~ 's3cr3t|tok3n';

-- Routes to named sinks, with destinations.
SELECT event_store.relay_route('orders', 'kafka1', 'orders.v1');
SELECT event_store.relay_route('payments', 'kafka1');
SELECT event_store.relay_route('shipments', 'rabbit', 'amq.topic/shipments.created');
SELECT event_store.relay_route('emails', 'rabbit', 'mail');
SELECT event_store.relay_route('audit', 'rabbit');
SELECT event_store.relay_route('hooks', 'hook');
SELECT topic, sink, destination FROM event_store.relay_routes ORDER BY topic;
SELECT name, topics FROM event_store.relay_sinks ORDER BY name;
-- A route replaces the previous one, destination included.
SELECT event_store.relay_route('emails', 'notify:emails');
SELECT topic, sink, destination FROM event_store.relay_routes WHERE topic = 'emails';

-- Bad input.
SELECT try($$SELECT event_store.relay_sink_create(NULL, 'kafka://h:1')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', NULL)$$);
SELECT try($$SELECT event_store.relay_sink_create('has:colon', 'kafka://h:1')$$);
SELECT try($$SELECT event_store.relay_sink_create('', 'kafka://h:1')$$);
SELECT try($$SELECT event_store.relay_sink_create(repeat('n', 64), 'kafka://h:1')$$);
SELECT try($$SELECT event_store.relay_sink_create('rabbit', 'amqp://h')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'no url')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'smtp://mail.example')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'kafka://')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'kafka://host')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'kafka://h:1', '[1]')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'kafka://h:1', '{"acks": "1"}')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'kafka://h:1', '{"a": {"b": 1}}')$$);
-- The password of a bad url is not repeated in the error.
SELECT try($$SELECT event_store.relay_sink_create('x', 'amqp://u:pa55word@host:notaport/v')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'amqp://h:5672', '{"heartbeat": -1}')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'amqp://h:5672', '{"vhost": "v"}')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'https://h/p', '{"secret": 1}')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'https://', '{}')$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'https://h/p', '{"batch_wait_ms": 0}')$$);
SELECT event_store.relay_sink_validate('https://h/p', '{"batch_wait_ms": 200, "timeout_ms": 600000}');
SELECT try($$SELECT event_store.relay_route('t', 'missing')$$);
SELECT try($$SELECT event_store.relay_route('t', 'kafka://h:1')$$);
SELECT try($$SELECT event_store.relay_route('t', 'amqp://u:pa55word@h:1/v')$$);
SELECT try($$SELECT event_store.relay_route('t', 'kafka1', 'bad topic!')$$);
SELECT try($$SELECT event_store.relay_route('t', 'rabbit', repeat('e', 256) || '/k')$$);
SELECT try($$SELECT event_store.relay_route('t', 'hook', 'somewhere')$$);
SELECT try($$SELECT event_store.relay_route('t', 'notify:c', 'somewhere')$$);
SELECT try($$SELECT event_store.relay_sink_drop(NULL)$$);
SELECT try($$SELECT event_store.relay_sink_drop('missing')$$);
SELECT try($$SELECT event_store.relay_sink_drop('kafka1')$$);

-- Only admins create, drop and read credentials; readers see the view.
CREATE ROLE sink_reader;
GRANT event_store_reader TO sink_reader;
CREATE ROLE sink_writer;
GRANT event_store_writer TO sink_writer;
SET ROLE sink_reader;
SELECT name, url FROM event_store.relay_sinks WHERE name = 'rabbit';
SELECT try($$SELECT url FROM event_store.relay_sink_definitions$$);
SELECT try($$SELECT * FROM event_store.relay_sink_state$$);
SELECT try($$SELECT event_store.relay_sink_create('x', 'kafka://h:1')$$);
RESET ROLE;
SET ROLE sink_writer;
SELECT try($$SELECT url FROM event_store.relay_sink_definitions$$);
SELECT try($$SELECT event_store.relay_sink_drop('plain')$$);
SELECT try($$SELECT event_store.relay_route('t', 'plain')$$);
RESET ROLE;
DROP ROLE sink_reader;
DROP ROLE sink_writer;

-- Drop: refused while routed, then allowed.
SELECT event_store.relay_unroute('orders'), event_store.relay_unroute('payments');
SELECT event_store.relay_sink_drop('kafka1');
SELECT event_store.relay_sink_drop('plain');
SELECT name FROM event_store.relay_sinks ORDER BY name;
SELECT event_store.relay_unroute(topic) FROM event_store.relay_routes ORDER BY topic;
SELECT event_store.relay_sink_drop('rabbit');
SELECT event_store.relay_sink_drop('hook');
SELECT count(*) FROM event_store.relay_sinks;
