-- Shape of the extension: schema, types, tables, functions.
BEGIN;
SELECT plan(31);

SELECT has_schema('event_store');
SELECT has_type('event_store', 'event', 'composite type event_store.event');
SELECT columns_are('event_store', 'event',
	ARRAY['position', 'stream', 'version', 'type', 'data', 'metadata', 'id', 'recorded_at']);
SELECT col_type_is('event_store', 'event', 'position', 'bigint', 'event.position is bigint');
SELECT col_type_is('event_store', 'event', 'data', 'jsonb', 'event.data is jsonb');
SELECT col_type_is('event_store', 'event', 'id', 'uuid', 'event.id is uuid');
SELECT col_type_is('event_store', 'event', 'recorded_at', 'timestamp with time zone', 'event.recorded_at is timestamptz');

SELECT has_table('event_store', 'events', 'table event_store.events');
SELECT col_is_pk('event_store', 'events', 'position', 'events are keyed by position');
SELECT col_is_unique('event_store', 'events', ARRAY['stream', 'version'], '(stream, version) is unique');
SELECT col_is_unique('event_store', 'events', ARRAY['id'], 'event ids are unique');
SELECT has_index('event_store', 'events', 'events_category_position_idx',
	ARRAY['event_store.category(stream)', '"position"'], 'category index for read_category');

SELECT has_function('event_store', 'append', ARRAY['text', 'jsonb', 'bigint']);
SELECT has_function('event_store', 'append_event', ARRAY['text', 'text', 'jsonb', 'jsonb', 'bigint', 'uuid']);
SELECT has_function('event_store', 'read_stream', ARRAY['text', 'bigint', 'integer', 'boolean']);
SELECT has_function('event_store', 'stream_version', ARRAY['text']);
SELECT has_function('event_store', 'read_all', ARRAY['bigint', 'integer']);
SELECT has_function('event_store', 'read_category', ARRAY['text', 'bigint', 'integer', 'integer', 'integer']);
SELECT has_function('event_store', 'feed_head', ARRAY[]::name[]);
SELECT function_returns('event_store', 'read_all', ARRAY['bigint', 'integer'], 'setof event_store.event');
SELECT has_function('event_store', 'subscription_create', ARRAY['text', 'text', 'integer', 'bigint', 'boolean']);
SELECT has_function('event_store', 'subscription_fetch', ARRAY['text', 'integer', 'integer']);
SELECT has_function('event_store', 'subscription_ack', ARRAY['text', 'bigint', 'integer']);
SELECT has_view('event_store', 'subscription_lag', 'view event_store.subscription_lag');
SELECT has_view('event_store', 'feed_status', 'view event_store.feed_status');
SELECT has_view('event_store', 'streams', 'view event_store.streams');
SELECT has_view('event_store', 'categories', 'view event_store.categories');
SELECT function_returns('event_store', 'read_stream', ARRAY['text', 'bigint', 'integer', 'boolean'], 'setof event_store.event');

SELECT has_sequence('event_store', 'position_high_water',
	'sequence event_store.position_high_water, the durable high-water mark of positions');
SELECT set_eq(
	$$SELECT c.relname::text FROM pg_extension e, unnest(e.extconfig) AS u(relid)
	  JOIN pg_class c ON c.oid = u.relid WHERE e.extname = 'event_store'$$,
	ARRAY['events', 'position_high_water', 'subscriptions', 'subscription_checkpoints',
		  'outbox', 'outbox_id_seq', 'outbox_dead_letters', 'outbox_topics', 'outbox_dedup',
		  'event_routes', 'relay_routes', 'relay_sink_definitions'],
	'pg_dump saves every table and sequence holding data (not relay_parked, not relay_sink_state)');

SELECT is((SELECT extrelocatable FROM pg_extension WHERE extname = 'event_store'), false,
	'the extension is not relocatable');

SELECT * FROM finish();
ROLLBACK;
