-- Privileges: PUBLIC can do nothing; reader reads; writer appends; admin
-- administers.  Checked from the catalog for every function the extension
-- has, and enforced for real with SET ROLE.
BEGIN;
SELECT plan(51);

SELECT has_role('event_store_reader');
SELECT has_role('event_store_writer');
SELECT has_role('event_store_admin');
SELECT has_role('event_store_relay');
SELECT isnt_superuser('event_store_relay');
-- The relay workers' role: exactly the table privileges relaying needs.
SELECT set_eq(
	$$SELECT c.relname::text || ':' || p.privilege_type
	  FROM pg_class AS c,
		   LATERAL (SELECT privilege_type FROM aclexplode(c.relacl)
					WHERE grantee = 'event_store_relay'::regrole) AS p
	  WHERE c.relnamespace = 'event_store'::regnamespace$$,
	ARRAY['outbox:SELECT', 'outbox:UPDATE', 'outbox:DELETE',
		  'relay_parked:SELECT', 'relay_parked:INSERT', 'relay_parked:DELETE',
		  'relay_routes:SELECT', 'subscriptions:SELECT', 'events:SELECT',
		  'outbox_topics:SELECT', 'outbox_dead_letters:INSERT',
		  'relay_sink_definitions:SELECT', 'relay_sink_state:SELECT',
		  'relay_sink_state:INSERT', 'relay_sink_state:UPDATE'],
	'the relay role has exactly the table privileges relaying needs');
SELECT set_eq(
	$$SELECT oid::regprocedure::text FROM pg_proc
	  WHERE pronamespace = 'event_store'::regnamespace
	    AND has_function_privilege('event_store_relay', oid, 'EXECUTE')$$,
	ARRAY['event_store.category(text)', 'event_store.consumer_group_member(text,integer)',
		  'event_store.subscription_channel(text)', 'event_store.outbox_topic_settings(text)'],
	'the relay role can execute exactly the functions its statements use');
-- Every object says what it is; internal helpers are granted to no one.
SELECT is_empty(
	$$SELECT oid::regprocedure::text FROM pg_proc
	  WHERE pronamespace = 'event_store'::regnamespace
	    AND obj_description(oid, 'pg_proc') IS NULL
	  UNION ALL
	  SELECT oid::regclass::text FROM pg_class
	  WHERE relnamespace = 'event_store'::regnamespace
	    AND relkind IN ('r', 'v', 'S') AND obj_description(oid, 'pg_class') IS NULL
	  UNION ALL
	  SELECT t.oid::regtype::text FROM pg_type AS t JOIN pg_class AS c ON c.oid = t.typrelid
	  WHERE t.typnamespace = 'event_store'::regnamespace AND c.relkind = 'c'
	    AND obj_description(t.oid, 'pg_type') IS NULL$$,
	'every function, table, view, sequence and type has a comment');
SELECT is_empty(
	$$SELECT p.oid::regprocedure::text || ' to ' || a.grantee::regrole::text
	  FROM pg_proc AS p, LATERAL aclexplode(p.proacl) AS a
	  WHERE p.pronamespace = 'event_store'::regnamespace
	    AND obj_description(p.oid, 'pg_proc') LIKE 'Internal:%'
	    AND a.grantee <> p.proowner$$,
	'internal helpers are granted to no one');
SELECT is_member_of('event_store_reader', 'event_store_writer');
SELECT is_member_of('event_store_writer', 'event_store_admin');

CREATE TEMP TABLE expected_grants (role name, function text);
INSERT INTO expected_grants
SELECT 'event_store_reader', unnest(ARRAY[
	'event_store.read_stream(text,bigint,integer,boolean)',
	'event_store.stream_version(text)',
	'event_store.category(text)',
	'event_store.stream_hash(text)',
	'event_store.read_all(bigint,integer,text[],text)',
	'event_store.read_category(text,bigint,integer,integer,integer,text[],text)',
	'event_store.stream_metadata(text)',
	'event_store.feed_head()',
	'event_store.feed_state()',
	'event_store.consumer_group_member(text,integer)',
	'event_store.subscription_channel(text)',
	'event_store.subscription_fetch(text,integer,integer)',
	'event_store.subscription_ack(text,bigint,integer)',
	'event_store.relay_fetch(bigint)',
	'event_store.relay_worker_status()',
	'event_store.relay_available()',
	'event_store.relay_sink_mask_url(text)',
	'event_store.relay_sink_mask_options(jsonb)']);
INSERT INTO expected_grants
SELECT 'event_store_writer', function FROM expected_grants WHERE role = 'event_store_reader'
UNION ALL SELECT 'event_store_writer', unnest(ARRAY[
	'event_store.append(text,jsonb,bigint)',
	'event_store.append_event(text,text,jsonb,jsonb,bigint,uuid)',
	'event_store.outbox_send(text,jsonb,text,jsonb,interval,text,interval)',
	'event_store.outbox_send_batch(text,jsonb[],text[],jsonb[],interval)',
	'event_store.outbox_claim(text,integer,interval,interval)',
	'event_store.outbox_consume(text,integer,interval)',
	'event_store.outbox_extend(uuid[],interval)',
	'event_store.outbox_extend(text[],interval)',
	'event_store.outbox_extend(text,interval)',
	'event_store.outbox_ack(uuid[])',
	'event_store.outbox_ack(text[])',
	'event_store.outbox_ack(text)',
	'event_store.outbox_nack(uuid[],interval,text)',
	'event_store.outbox_nack(text[],interval,text)',
	'event_store.outbox_nack(text,interval,text)']);
INSERT INTO expected_grants
SELECT 'event_store_admin', function FROM expected_grants WHERE role = 'event_store_writer'
UNION ALL SELECT 'event_store_admin', unnest(ARRAY[
	'event_store.delete_stream(text,bigint,boolean)',
	'event_store.set_stream_metadata(text,bigint,interval,bigint)',
	'event_store.scavenge(bigint)',
	'event_store.erase_stream(text)',
	'event_store.subscription_create(text,text,integer,bigint,boolean,text[],text)',
	'event_store.subscription_drop(text)',
	'event_store.subscription_reset(text,bigint)',
	'event_store.outbox_ack_ids(bigint[])',
	'event_store.outbox_ack(bigint[])',
	'event_store.outbox_nack_ids(bigint[],interval,text)',
	'event_store.outbox_nack(bigint[],interval,text)',
	'event_store.outbox_configure(text,integer,interval,interval,interval,text)',
	'event_store.outbox_topic_settings(text)',
	'event_store.outbox_redrive(bigint[])',
	'event_store.outbox_redrive_topic(text)',
	'event_store.outbox_purge_dead_letters(bigint[])',
	'event_store.outbox_dedup_purge(interval)',
	'event_store.route_events(text,text,text)',
	'event_store.unroute_events(text,text,text)',
	'event_store.relay_route(text,text,text)',
	'event_store.relay_sink_create(text,text,jsonb)',
	'event_store.relay_sink_drop(text)',
	'event_store.relay_unroute(text)',
	'event_store.relay_pause(text)',
	'event_store.relay_resume(text)']);

-- Every function of the schema, for each role: EXECUTE exactly as expected
-- (signatures, so that overloads are told apart).
SELECT set_eq(
	format($$SELECT oid::regprocedure::text FROM pg_proc
			 WHERE pronamespace = 'event_store'::regnamespace
			   AND has_function_privilege(%L, oid, 'EXECUTE')$$, role),
	format($$SELECT function FROM expected_grants WHERE role = %L$$, role),
	role || ' can execute exactly its functions')
FROM (VALUES ('event_store_reader'), ('event_store_writer'), ('event_store_admin')) AS r(role);

SELECT is_empty($$SELECT proname FROM pg_proc
				  WHERE pronamespace = 'event_store'::regnamespace
				    AND has_function_privilege('public', oid, 'EXECUTE')$$,
	'PUBLIC can execute no function of the extension');
SELECT is_empty($$SELECT relname FROM pg_class
				  WHERE relnamespace = 'event_store'::regnamespace
				    AND has_table_privilege('public', oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE')$$,
	'PUBLIC has no privilege on any table of the extension');
SELECT ok(NOT has_schema_privilege('public', 'event_store', 'USAGE'),
	'PUBLIC cannot use the schema');
SELECT is_empty($$SELECT relname FROM pg_class
				  WHERE relnamespace = 'event_store'::regnamespace AND relkind IN ('r', 'v')
				    AND has_table_privilege('event_store_admin', oid, 'INSERT,UPDATE,DELETE,TRUNCATE')$$,
	'no role changes tables except through the functions');
-- No SQL is built from strings: no function of the extension runs dynamic
-- SQL (the C functions run only constant statements).
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc AS p
				  JOIN pg_language AS l ON l.oid = p.prolang
				  WHERE p.pronamespace = 'event_store'::regnamespace
				    AND l.lanname IN ('plpgsql', 'sql')
				    AND p.prosrc ~* '\mEXECUTE\M'$$,
	'no function of the extension runs dynamic SQL');
SELECT is_empty($$SELECT p.oid::regprocedure FROM pg_proc AS p
				  WHERE p.pronamespace = 'event_store'::regnamespace AND p.prosecdef
				    AND NOT EXISTS (SELECT FROM unnest(p.proconfig) AS c
									WHERE c LIKE 'search_path=%')$$,
	'every SECURITY DEFINER function pins search_path');

-- Enforcement.
CREATE ROLE es_test_nobody;
CREATE ROLE es_test_reader IN ROLE event_store_reader;
CREATE ROLE es_test_writer IN ROLE event_store_writer;
CREATE ROLE es_test_admin IN ROLE event_store_admin;

SET ROLE es_test_nobody;
SELECT throws_ok($$SELECT * FROM event_store.read_stream('s-1')$$, '42501', NULL,
	'a role without grants cannot read');
SELECT throws_ok($$SELECT event_store.append_event('s-1', 'T', '{}')$$, '42501', NULL,
	'a role without grants cannot append');
SELECT throws_ok($$SELECT * FROM event_store.feed_status$$, '42501', NULL,
	'a role without grants cannot see the feed status');
RESET ROLE;

SELECT event_store.subscription_create('privileges_test');
SET ROLE es_test_reader;
SELECT lives_ok($$SELECT * FROM event_store.read_stream('s-1')$$, 'a reader reads');
SELECT lives_ok($$SELECT * FROM event_store.stream_metadata('s-1')$$, 'a reader reads stream metadata');
SELECT lives_ok($$SELECT (SELECT count(*) FROM event_store.feed_status) +
						 (SELECT count(*) FROM event_store.streams) +
						 (SELECT count(*) FROM event_store.categories)$$,
	'a reader sees the feed status, streams and categories');
SELECT lives_ok($$SELECT * FROM event_store.subscription_fetch('privileges_test')$$,
	'a reader consumes a subscription');
SELECT throws_ok($$SELECT event_store.subscription_create('by_reader')$$, '42501', NULL,
	'a reader cannot create subscriptions');
SELECT throws_ok($$SELECT event_store.outbox_send('t', '{}')$$, '42501', NULL,
	'a reader cannot send');
SELECT throws_ok($$SELECT event_store.append_event('s-1', 'T', '{}')$$, '42501', NULL,
	'a reader cannot append');
RESET ROLE;

SET ROLE es_test_writer;
SELECT is(event_store.append_event('s-1', 'T', '{}'), 0::bigint, 'a writer appends');
SELECT throws_ok($$SELECT event_store.delete_stream('s-1')$$, '42501', NULL,
	'a writer cannot delete streams');
SELECT throws_ok($$SELECT event_store.set_stream_metadata('s-1', max_count => 1)$$, '42501', NULL,
	'a writer cannot set retention');
SELECT throws_ok($$SELECT event_store.erase_stream('s-1')$$, '42501', NULL,
	'a writer cannot erase streams');
SELECT throws_ok($$SELECT event_store.scavenge()$$, '42501', NULL,
	'a writer cannot scavenge');
SELECT throws_ok($$INSERT INTO event_store.events VALUES (1000, 's', 0, 'T', '{}', NULL, gen_random_uuid(), now())$$,
	'42501', NULL, 'a writer cannot insert into the table directly');
SELECT isnt(event_store.outbox_send('t', '{}'), NULL, 'a writer sends');
SELECT is((SELECT event_store.outbox_ack(array_agg(receipt)) FROM event_store.outbox_claim('t')), 1,
	'a writer claims and acknowledges by receipt');
SELECT throws_ok($$SELECT event_store.outbox_ack_ids(ARRAY[1])$$, '42501', NULL,
	'a writer cannot acknowledge by id');
SELECT throws_ok($$SELECT event_store.outbox_ack(ARRAY[1])$$, '42501', NULL,
	'a writer cannot acknowledge by id with outbox_ack(bigint[])');
SELECT throws_ok($$SELECT event_store.outbox_nack(ARRAY[1]::bigint[])$$, '42501', NULL,
	'a writer cannot nack by id with outbox_nack(bigint[])');
SELECT throws_ok($$SELECT * FROM event_store.outbox$$, '42501', NULL,
	'a writer cannot read the outbox table directly');
SELECT throws_ok($$SELECT event_store.relay_route('t', 'notify:t')$$, '42501', NULL,
	'a writer cannot route topics to the relay');
RESET ROLE;

SET ROLE es_test_admin;
SELECT is(event_store.delete_stream('s-1', soft => true), 0::bigint, 'an admin soft-deletes streams');
SELECT lives_ok($$SELECT event_store.set_stream_metadata('s-1', max_count => 1)$$, 'an admin sets retention');
SELECT is(event_store.scavenge(), 1::bigint, 'an admin scavenges');
SELECT is(event_store.erase_stream('s-1'), 0::bigint, 'an admin erases streams');
SELECT is(event_store.delete_stream('s-1'), 1::bigint, 'an admin deletes streams');
SELECT is(event_store.outbox_ack_ids(ARRAY[424242]), 0, 'an admin acknowledges by id');
SELECT is(event_store.outbox_ack(ARRAY[424242]), 0, 'an admin acknowledges by id with outbox_ack(bigint[])');
SELECT lives_ok($$SELECT event_store.relay_route('t', 'notify:t')$$, 'an admin routes topics to the relay');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
