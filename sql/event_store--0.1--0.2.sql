-- event_store 0.1 -> 0.2: run by ALTER EXTENSION event_store UPDATE.
--
-- Every change of the install script (sql/install/) between the two
-- releases is repeated here, so that an updated database has exactly the
-- objects of a fresh 0.2 install (test/t/010_upgrade.pl compares both
-- catalogs).  The sections follow the changes in the order they were made;
-- a function or view that several of them change is defined once, in its
-- final form, in the last of them (check_category and
-- outbox_topic_settings, which later sections use, are defined at their
-- first change and replaced later).

\echo Use "ALTER EXTENSION event_store UPDATE" to load this file. \quit

--------------------------------------------------------------------------
-- Schema: refuse to run in a schema that a role other than a superuser
-- owns, may create objects in, or has objects in (the same check as the
-- install script's).  0.1 did not check: an installation in such a schema
-- must be made safe before it is updated.
--------------------------------------------------------------------------
DO $schema$
DECLARE
	nsp oid;
	nsp_name text;
	owner_name text;
	owner_is_superuser boolean;
	creator text;
	foreign_object text;
BEGIN
	SELECT e.extnamespace, n.nspname, r.rolname, r.rolsuper
	INTO nsp, nsp_name, owner_name, owner_is_superuser
	FROM pg_catalog.pg_extension AS e
	JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
	JOIN pg_catalog.pg_roles AS r ON r.oid = n.nspowner
	WHERE e.extname = 'event_store';

	IF NOT owner_is_superuser THEN
		RAISE EXCEPTION 'schema "%" is owned by role "%", which is not a superuser', nsp_name, owner_name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The extension''s functions run with superuser privileges and find their objects in this schema: its owner could replace them.',
				  HINT = format('Drop schema "%s" and run CREATE EXTENSION again (it creates the schema), or make a superuser its owner.', nsp_name);
	END IF;

	SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'
								  ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
	INTO creator
	FROM pg_catalog.pg_namespace AS n,
		 LATERAL pg_catalog.aclexplode(n.nspacl) AS a
	LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
	WHERE n.oid = nsp AND a.privilege_type = 'CREATE'
	  AND NOT coalesce(r.rolsuper, false);
	IF creator IS NOT NULL THEN
		RAISE EXCEPTION 'schema "%" grants CREATE to roles that are not superusers', nsp_name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('It grants CREATE to %s.  The extension''s functions run with superuser privileges and find their objects in this schema: those roles could put objects in their way.', creator),
				  HINT = format('Revoke CREATE on schema "%s" from them and run CREATE EXTENSION again.', nsp_name);
	END IF;

	SELECT o.kind || ' "' || o.name || '"' INTO foreign_object
	FROM (SELECT 'relation' AS kind, c.relname::text AS name, c.relowner AS owner
		  FROM pg_catalog.pg_class AS c WHERE c.relnamespace = nsp
		  UNION ALL
		  SELECT 'function', p.proname::text, p.proowner
		  FROM pg_catalog.pg_proc AS p WHERE p.pronamespace = nsp
		  UNION ALL
		  SELECT 'type', t.typname::text, t.typowner
		  FROM pg_catalog.pg_type AS t WHERE t.typnamespace = nsp
		  UNION ALL
		  SELECT 'operator', o.oprname::text, o.oprowner
		  FROM pg_catalog.pg_operator AS o WHERE o.oprnamespace = nsp
		  UNION ALL
		  SELECT 'operator class', c.opcname::text, c.opcowner
		  FROM pg_catalog.pg_opclass AS c WHERE c.opcnamespace = nsp
		  UNION ALL
		  SELECT 'operator family', f.opfname::text, f.opfowner
		  FROM pg_catalog.pg_opfamily AS f WHERE f.opfnamespace = nsp
		  UNION ALL
		  SELECT 'collation', c.collname::text, c.collowner
		  FROM pg_catalog.pg_collation AS c WHERE c.collnamespace = nsp
		  UNION ALL
		  SELECT 'conversion', c.conname::text, c.conowner
		  FROM pg_catalog.pg_conversion AS c WHERE c.connamespace = nsp
		  UNION ALL
		  SELECT 'statistics object', s.stxname::text, s.stxowner
		  FROM pg_catalog.pg_statistic_ext AS s WHERE s.stxnamespace = nsp
		  UNION ALL
		  SELECT 'text search configuration', c.cfgname::text, c.cfgowner
		  FROM pg_catalog.pg_ts_config AS c WHERE c.cfgnamespace = nsp
		  UNION ALL
		  SELECT 'text search dictionary', d.dictname::text, d.dictowner
		  FROM pg_catalog.pg_ts_dict AS d WHERE d.dictnamespace = nsp) AS o
	JOIN pg_catalog.pg_roles AS r ON r.oid = o.owner
	WHERE NOT r.rolsuper
	LIMIT 1;
	IF foreign_object IS NOT NULL THEN
		RAISE EXCEPTION 'schema "%" holds % owned by a role that is not a superuser', nsp_name, foreign_object
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('Move the objects of other owners out of schema "%s", or drop it, and run CREATE EXTENSION again.', nsp_name);
	END IF;
END
$schema$;

--------------------------------------------------------------------------
-- Outbox policy: the topic settings are the one source of every policy
-- value (outbox_topic_settings holds the defaults); a claim without a lease
-- uses the topic's.  Acknowledgements: the receipt forms of outbox_ack and
-- outbox_nack also take text[] and text (with only uuid[] and bigint[], a
-- call with an untyped literal, a list of strings or NULL was ambiguous;
-- now these resolve to the text forms), and the by-id forms, kept, are
-- also named outbox_ack_ids and outbox_nack_ids.
--------------------------------------------------------------------------
ALTER TABLE event_store.outbox_topics
	ALTER COLUMN max_attempts DROP DEFAULT,
	ALTER COLUMN backoff_base DROP DEFAULT,
	ALTER COLUMN backoff_max DROP DEFAULT,
	ALTER COLUMN lease DROP DEFAULT;

CREATE FUNCTION event_store.outbox_topic_settings(topic text)
RETURNS SETOF event_store.outbox_topics
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
AS $$
	SELECT t.* FROM event_store.outbox_topics AS t WHERE t.topic = $1
	UNION ALL
	SELECT $1, 10, interval '1 second', interval '1 hour', interval '30 seconds'
	WHERE NOT EXISTS (SELECT FROM event_store.outbox_topics AS t WHERE t.topic = $1)
$$;
REVOKE ALL ON FUNCTION event_store.outbox_topic_settings(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.outbox_topic_settings(text) TO event_store_admin;

CREATE FUNCTION event_store.outbox_ack(receipts text[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

CREATE FUNCTION event_store.outbox_ack(receipts text)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

CREATE FUNCTION event_store.outbox_ack_ids(ids bigint[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_ids'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

CREATE FUNCTION event_store.outbox_nack(
	receipts text[],
	retry_in interval DEFAULT NULL,
	error text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_nack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

CREATE FUNCTION event_store.outbox_nack(
	receipts text,
	retry_in interval DEFAULT NULL,
	error text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_nack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

CREATE FUNCTION event_store.outbox_nack_ids(
	ids bigint[],
	retry_in interval DEFAULT NULL,
	error text DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_nack_ids'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

REVOKE ALL ON FUNCTION
	event_store.outbox_ack(text[]),
	event_store.outbox_ack(text),
	event_store.outbox_ack_ids(bigint[]),
	event_store.outbox_nack(text[], interval, text),
	event_store.outbox_nack(text, interval, text),
	event_store.outbox_nack_ids(bigint[], interval, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	event_store.outbox_ack(text[]),
	event_store.outbox_ack(text),
	event_store.outbox_nack(text[], interval, text),
	event_store.outbox_nack(text, interval, text)
TO event_store_writer;
GRANT EXECUTE ON FUNCTION
	event_store.outbox_ack_ids(bigint[]),
	event_store.outbox_nack_ids(bigint[], interval, text)
TO event_store_admin;

--------------------------------------------------------------------------
-- API edges: a category no stream can be in (empty, or with a '-') and an
-- empty event type are refused by route_events; read_stream reads from the
-- end by default when it reads backward.
--------------------------------------------------------------------------
CREATE FUNCTION event_store.check_category(category text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF category = '' THEN
		RAISE EXCEPTION 'category must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A NULL category stands for every category.';
	END IF;
	IF strpos(category, '-') > 0 THEN
		RAISE EXCEPTION 'category "%" contains "-"', category
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'The category of a stream is the part of its name before the first "-": no stream is in this category.';
	END IF;
END
$$;
REVOKE ALL ON FUNCTION event_store.check_category(text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION event_store.read_stream(
	stream text,
	from_version bigint DEFAULT NULL,
	max_count integer DEFAULT 1000,
	backward boolean DEFAULT false)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_stream'
LANGUAGE C STABLE PARALLEL SAFE ROWS 100;

-- The feed on replicas, and subscriptions: feed_state() and the state
-- column of feed_status (a hot standby and a logical replica refuse feed
-- reads; their views show a NULL head); a fence per checkpoint that acks
-- must match; fetches that lock their member; drops seen atomically;
-- subscription_create(..., if_not_exists) and its checks of the category.
--------------------------------------------------------------------------
ALTER TABLE event_store.subscription_checkpoints
	ADD COLUMN fence uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid();

CREATE FUNCTION event_store.feed_state()
RETURNS text
AS 'MODULE_PATHNAME', 'event_store_feed_state'
LANGUAGE C STABLE PARALLEL RESTRICTED;

REVOKE ALL ON FUNCTION event_store.feed_state() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.feed_state() TO event_store_reader;

DROP FUNCTION event_store.subscription_create(text, text, integer, bigint);
CREATE OR REPLACE FUNCTION event_store.subscription_drop(subscription text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.find_subscription(subscription);
	-- Waits for the members' fetches in progress (they lock their row).
	DELETE FROM event_store.subscriptions AS s WHERE s.name = subscription;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" does not exist', subscription
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

CREATE OR REPLACE VIEW event_store.feed_status AS
SELECT h.head,
	   (SELECT max(e.position) FROM event_store.events AS e) AS last_position,
	   CASE WHEN h.head IS NOT NULL THEN
		   (SELECT count(*) FROM event_store.events AS e
			WHERE e.position > h.head) END AS held_back_events,
	   h.state
FROM (SELECT st.state,
			 CASE WHEN st.state = 'primary' THEN event_store.feed_head() END AS head
	  FROM (SELECT event_store.feed_state() AS state) AS st) AS h;

-- Durable positions: a high-water mark of the feed's positions that
-- survives restarts, crashes and restores, and a trigger that makes the
-- feed read its counter again after rows are loaded by a statement.
--------------------------------------------------------------------------
CREATE SEQUENCE event_store.position_high_water AS bigint
	MINVALUE 0 START WITH 0 NO CYCLE;
REVOKE ALL ON event_store.position_high_water FROM PUBLIC;

-- Every position 0.1 handed out that anyone may have seen: the log's
-- largest position, or a checkpoint above it (the head of 0.1 could pass
-- the last event when a transaction that appended rolled back).
SELECT pg_catalog.setval('event_store.position_high_water', h.position, true)
FROM (SELECT greatest((SELECT max(e.position) FROM event_store.events AS e),
					  (SELECT max(c.position) FROM event_store.subscription_checkpoints AS c))
		  AS position) AS h
WHERE h.position > 0;

CREATE FUNCTION event_store.events_loaded()
RETURNS trigger
AS 'MODULE_PATHNAME', 'event_store_events_loaded'
LANGUAGE C;
REVOKE ALL ON FUNCTION event_store.events_loaded() FROM PUBLIC;

CREATE TRIGGER events_loaded
	AFTER INSERT ON event_store.events
	FOR EACH STATEMENT EXECUTE FUNCTION event_store.events_loaded();

--------------------------------------------------------------------------
-- Backups: pg_dump saves the extension's data (see the install script).
-- Checkpoints lose their foreign key, which a parallel pg_restore cannot
-- honour; a trigger removes a subscription's checkpoints with it.
--------------------------------------------------------------------------
ALTER TABLE event_store.subscription_checkpoints
	DROP CONSTRAINT subscription_checkpoints_subscription_fkey;

CREATE FUNCTION event_store.subscription_deleted()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM event_store.subscription_checkpoints AS c
	WHERE c.subscription = OLD.name;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION event_store.subscription_deleted() FROM PUBLIC;

CREATE TRIGGER subscription_deleted
	AFTER DELETE ON event_store.subscriptions
	FOR EACH ROW EXECUTE FUNCTION event_store.subscription_deleted();

SELECT pg_catalog.pg_extension_config_dump('event_store.events', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.position_high_water', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.subscription_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_topics', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.event_routes', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.relay_routes', '');

--------------------------------------------------------------------------
-- Relay: workers on demand, failed messages through backoff to the dead
-- letters, consumer group members woken for their own streams, a warning
-- when no worker can serve the database (src/relay.c, src/launcher.c).
--------------------------------------------------------------------------
GRANT SELECT ON event_store.outbox_topics TO event_store_relay;
GRANT INSERT ON event_store.outbox_dead_letters TO event_store_relay;
GRANT EXECUTE ON FUNCTION event_store.consumer_group_member(text, integer)
	TO event_store_relay;

-- Warn when no relay worker can serve this database now (library not
-- preloaded, launcher not running, no background worker slot free).
CREATE FUNCTION event_store.relay_check()
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_relay_check'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION event_store.relay_check() FROM PUBLIC;

--------------------------------------------------------------------------
-- Queue features: outbox_claim(..., wait) sleeps until a commit sends to
-- the topic; outbox_send_batch; outbox_extend, lease extension by receipt;
-- outbox_send(..., dedup_key, dedup_window) with the table outbox_dedup
-- and outbox_dedup_purge; outbox_consume, claim and ack in one
-- statement.  outbox_send and outbox_claim gain trailing arguments: their
-- old signatures are dropped.
--------------------------------------------------------------------------
DROP FUNCTION event_store.outbox_send(text, jsonb, text, jsonb, interval);
DROP FUNCTION event_store.outbox_claim(text, integer, interval);

-- Deduplication keys: the message a key was last sent as to a topic, and
-- when.  outbox_send reads and writes it as the table's owner; a row
-- older than the sender's window is overwritten by the next send of the
-- key; outbox_dedup_purge removes old rows.
CREATE TABLE event_store.outbox_dedup (
	topic		text COLLATE "C" NOT NULL,
	dedup_key	text COLLATE "C" NOT NULL,
	message_id	bigint NOT NULL,
	sent_at		timestamptz NOT NULL,
	PRIMARY KEY (topic, dedup_key)
);
COMMENT ON TABLE event_store.outbox_dedup IS
'Deduplication keys of outbox_send: the message each key of a topic was sent as, and when.';
REVOKE ALL ON event_store.outbox_dedup FROM PUBLIC;
GRANT SELECT ON event_store.outbox_dedup TO event_store_admin;

CREATE FUNCTION event_store.outbox_send(
	topic text,
	payload jsonb,
	key text DEFAULT NULL,
	headers jsonb DEFAULT NULL,
	delay interval DEFAULT NULL,
	dedup_key text DEFAULT NULL,
	dedup_window interval DEFAULT interval '5 minutes')
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_outbox_send'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION event_store.outbox_send(text, jsonb, text, jsonb, interval, text, interval) IS
'Enqueue a message in the caller''s transaction; returns its id.  With a dedup_key already sent to the topic within dedup_window, returns the first message''s id and writes nothing.';

CREATE FUNCTION event_store.outbox_send_batch(
	topic text,
	payloads jsonb[],
	keys text[] DEFAULT NULL,
	headers jsonb[] DEFAULT NULL,
	delay interval DEFAULT NULL)
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'event_store_outbox_send_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION event_store.outbox_send_batch(text, jsonb[], text[], jsonb[], interval) IS
'Enqueue one message per payload (keys and headers by the same index) in the caller''s transaction; returns their ids in order.';

-- A claim's lease (NULL: the topic's) runs from when outbox_claim returns:
-- see src/outbox.c.  With wait, a claim that finds nothing sleeps until a
-- commit sends to the topic, a delayed message is due, or the wait ends.
CREATE FUNCTION event_store.outbox_claim(
	topic text,
	max_count integer DEFAULT 100,
	lease interval DEFAULT NULL,
	wait interval DEFAULT NULL)
RETURNS SETOF event_store.outbox_message
AS 'MODULE_PATHNAME', 'event_store_outbox_claim'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off
ROWS 100;
COMMENT ON FUNCTION event_store.outbox_claim(text, integer, interval, interval) IS
'Lease up to max_count available messages of a topic in id order (per-key FIFO); with wait, sleep until a commit sends to the topic or the wait ends.';

-- Claim and acknowledge in one statement of the caller's transaction.
CREATE FUNCTION event_store.outbox_consume(
	topic text,
	max_count integer DEFAULT 100,
	wait interval DEFAULT NULL)
RETURNS SETOF event_store.outbox_message
AS 'MODULE_PATHNAME', 'event_store_outbox_consume'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100;
COMMENT ON FUNCTION event_store.outbox_consume(text, integer, interval) IS
'Take up to max_count available messages of a topic and delete them in the caller''s transaction (claim and ack in one statement); with wait, sleep like outbox_claim.';

-- Lease extension by receipt, fenced like outbox_ack, in the same three
-- forms.
CREATE FUNCTION event_store.outbox_extend(
	receipts uuid[],
	lease interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_extend_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;
COMMENT ON FUNCTION event_store.outbox_extend(uuid[], interval) IS
'Lease the messages of these current receipts for lease (NULL: the topic''s) from now; returns how many.';

CREATE FUNCTION event_store.outbox_extend(
	receipts text[],
	lease interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_extend_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;
COMMENT ON FUNCTION event_store.outbox_extend(text[], interval) IS
'Lease the messages of these current receipts for lease (NULL: the topic''s) from now; returns how many.';

CREATE FUNCTION event_store.outbox_extend(
	receipts text,
	lease interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_extend_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;
COMMENT ON FUNCTION event_store.outbox_extend(text, interval) IS
'Lease the messages of these current receipts for lease (NULL: the topic''s) from now; returns how many.';

-- Forget the deduplication keys sent before older_than ago.
CREATE FUNCTION event_store.outbox_dedup_purge(older_than interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged integer;
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'older_than must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM event_store.outbox_dedup AS d WHERE d.sent_at < now() - older_than;
	GET DIAGNOSTICS purged = ROW_COUNT;
	RETURN purged;
END
$$;
COMMENT ON FUNCTION event_store.outbox_dedup_purge(interval) IS
'Delete the deduplication keys sent more than older_than ago; returns how many.';

SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_dedup', '');

REVOKE ALL ON FUNCTION
	event_store.outbox_send(text, jsonb, text, jsonb, interval, text, interval),
	event_store.outbox_send_batch(text, jsonb[], text[], jsonb[], interval),
	event_store.outbox_claim(text, integer, interval, interval),
	event_store.outbox_consume(text, integer, interval),
	event_store.outbox_extend(uuid[], interval),
	event_store.outbox_extend(text[], interval),
	event_store.outbox_extend(text, interval),
	event_store.outbox_dedup_purge(interval)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	event_store.outbox_send(text, jsonb, text, jsonb, interval, text, interval),
	event_store.outbox_send_batch(text, jsonb[], text[], jsonb[], interval),
	event_store.outbox_claim(text, integer, interval, interval),
	event_store.outbox_consume(text, integer, interval),
	event_store.outbox_extend(uuid[], interval),
	event_store.outbox_extend(text[], interval),
	event_store.outbox_extend(text, interval)
TO event_store_writer;
GRANT EXECUTE ON FUNCTION event_store.outbox_dedup_purge(interval) TO event_store_admin;

--------------------------------------------------------------------------
-- Checks and messages: the checks of a topic, a category and an event type
-- are the C functions' (one message per condition); messages carry no
-- value after a colon; the subscriptions' channel has one definition;
-- failed relayed messages follow the topic's settings.
--------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION event_store.check_topic(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_topic'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE OR REPLACE FUNCTION event_store.check_category(category text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_category'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION event_store.check_event_type(event_type text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_event_type'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION event_store.check_event_type(text) FROM PUBLIC;

CREATE FUNCTION event_store.subscription_channel(subscription text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT 'event_store_sub_' || $1 $$;
REVOKE ALL ON FUNCTION event_store.subscription_channel(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.subscription_channel(text) TO event_store_reader;
GRANT EXECUTE ON FUNCTION event_store.subscription_channel(text) TO event_store_relay;
GRANT EXECUTE ON FUNCTION event_store.outbox_topic_settings(text) TO event_store_relay;

CREATE OR REPLACE FUNCTION event_store.route_events(
	topic text,
	category text DEFAULT NULL,
	event_type text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.check_topic(topic);
	PERFORM event_store.check_category(category);
	PERFORM event_store.check_event_type(event_type);
	INSERT INTO event_store.event_routes AS r (category, event_type, topic)
	VALUES (category, event_type, topic)
	ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$$;

-- Internal helper, never granted: refuse to start a subscription beyond
-- the feed head (one above it is the next event): the events below the
-- start, still to be written, would be skipped.  Where the feed cannot be
-- read (a logical replica) there is no head to compare with.
CREATE FUNCTION event_store.check_start_position(from_position bigint)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	head bigint;
BEGIN
	IF from_position > 1 AND event_store.feed_state() = 'primary' THEN
		head := event_store.feed_head();
		IF from_position > head + 1 THEN
			RAISE EXCEPTION 'from_position % is beyond the feed head %', from_position, head
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = CASE WHEN from_position - 1 = head + 1
							   THEN format('The event at position %s would be skipped when it is written.', head + 1)
							   ELSE format('The events at positions %s to %s would be skipped when they are written.',
										   head + 1, from_position - 1) END,
					  HINT = 'Start at most one above feed_head().';
		END IF;
	END IF;
END
$$;
REVOKE ALL ON FUNCTION event_store.check_start_position(bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION event_store.subscription_reset(
	subscription text,
	from_position bigint DEFAULT 0)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sub event_store.subscriptions := event_store.find_subscription(subscription);
BEGIN
	IF from_position IS NULL THEN
		RAISE EXCEPTION 'from_position must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF from_position < 0 THEN
		RAISE EXCEPTION 'from_position must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM event_store.check_start_position(from_position);
	PERFORM FROM event_store.subscription_checkpoints AS c
	WHERE c.subscription = sub.name
	ORDER BY c.member
	FOR NO KEY UPDATE;
	UPDATE event_store.subscription_checkpoints AS c
	SET position = greatest(from_position - 1, 0), updated_at = now(),
		fence = pg_catalog.gen_random_uuid()
	WHERE c.subscription = sub.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" does not exist', subscription
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

--------------------------------------------------------------------------
-- Comments: every object of the extension says what it is; internal
-- helpers say "Internal:" and are never granted.
--------------------------------------------------------------------------
-- The event log and the feed.
COMMENT ON TYPE event_store.event IS
	'An event as read_stream, read_all, read_category and subscription_fetch return it.';
COMMENT ON TABLE event_store.events IS
	'The event log: one row per event, in global position order.';
COMMENT ON SEQUENCE event_store.position_high_water IS
	'Durable high-water mark of the feed''s positions: no position at or below it is handed out again after a crash.';
COMMENT ON FUNCTION event_store.append(text, jsonb, bigint) IS
	'Appends one event or an array of events to a stream, optionally at an expected version; returns the stream''s new version.';
COMMENT ON FUNCTION event_store.append_event(text, text, jsonb, jsonb, bigint, uuid) IS
	'Appends one event given by its type, data, metadata and id; returns the stream''s new version.';
COMMENT ON FUNCTION event_store.read_stream(text, bigint, integer, boolean) IS
	'Reads the events of one stream, forward or backward from a version.';
COMMENT ON FUNCTION event_store.stream_version(text) IS
	'Returns the version of the last event of a stream, or -1 when it has none.';
COMMENT ON FUNCTION event_store.delete_stream(text, bigint) IS
	'Deletes a stream by appending its tombstone event; returns the tombstone''s version.';
COMMENT ON FUNCTION event_store.category(text) IS
	'Returns the category of a stream name: the part before its first "-".';
COMMENT ON FUNCTION event_store.stream_hash(text) IS
	'Returns the stable 64-bit hash of a stream name that consumer groups use.';
COMMENT ON FUNCTION event_store.read_all(bigint, integer) IS
	'Reads the global feed from a position, gap-safe.';
COMMENT ON FUNCTION event_store.read_category(text, bigint, integer, integer, integer) IS
	'Reads the events of one category from a position, gap-safe, optionally those of one consumer group member.';
COMMENT ON FUNCTION event_store.feed_head() IS
	'Returns the gap-safe head of the feed: every event at or below it is visible.';
COMMENT ON FUNCTION event_store.feed_state() IS
	'Returns whether this server is the primary, a hot standby or a logical replica, as the feed sees it.';
COMMENT ON FUNCTION event_store.consumer_group_member(text, integer) IS
	'Returns the member of a consumer group of the given size that a stream belongs to.';
COMMENT ON VIEW event_store.feed_status IS
	'The feed''s head, the last position handed out, and the state of this server.';
COMMENT ON VIEW event_store.streams IS
	'One row per stream: its category, version, event count and whether it is deleted.';
COMMENT ON VIEW event_store.categories IS
	'One row per category: its streams and events.';

-- Subscriptions.
COMMENT ON TABLE event_store.subscriptions IS
	'Subscriptions: a name, an optional category, a consumer group size.';
COMMENT ON TABLE event_store.subscription_checkpoints IS
	'Where each member of each subscription stands in the feed.';
COMMENT ON FUNCTION event_store.subscription_drop(text) IS
	'Drops a subscription and its checkpoints.';
COMMENT ON FUNCTION event_store.subscription_fetch(text, integer, integer) IS
	'Returns the next events after a member''s checkpoint, gap-safe, without moving it.';
COMMENT ON FUNCTION event_store.subscription_ack(text, bigint, integer) IS
	'Moves a member''s checkpoint up to a position; returns the checkpoint.';
COMMENT ON FUNCTION event_store.subscription_reset(text, bigint) IS
	'Moves every member of a subscription to a position, for a replay or a skip.';
COMMENT ON FUNCTION event_store.subscription_channel(text) IS
	'Returns the channel to LISTEN on to be woken when a subscription has new events.';
COMMENT ON VIEW event_store.subscription_lag IS
	'Per subscription and member: its checkpoint, the feed head, the pending events and its channel.';

-- The outbox.
COMMENT ON TYPE event_store.outbox_message IS
	'A message as outbox_claim returns it, with the receipt that acknowledges it.';
COMMENT ON TABLE event_store.outbox IS
	'The outbox: messages waiting to be relayed or claimed.';
COMMENT ON SEQUENCE event_store.outbox_id_seq IS
	'Ids of outbox messages, in send order.';
COMMENT ON TABLE event_store.outbox_dead_letters IS
	'Messages that used up their attempts, with their last error.';
COMMENT ON TABLE event_store.outbox_topics IS
	'Per-topic settings: attempts, backoff and lease; a topic without a row uses the defaults.';
COMMENT ON TABLE event_store.event_routes IS
	'Routes from the event log to the outbox: events of a category and type are sent to a topic.';
COMMENT ON FUNCTION event_store.outbox_ack(uuid[]) IS
	'Acknowledges claimed messages by their receipts; returns how many were deleted.';
COMMENT ON FUNCTION event_store.outbox_ack(text[]) IS
	'Acknowledges claimed messages by their receipts; returns how many were deleted.';
COMMENT ON FUNCTION event_store.outbox_ack(text) IS
	'Acknowledges claimed messages by their receipts, given as an array literal; returns how many were deleted.';
COMMENT ON FUNCTION event_store.outbox_ack_ids(bigint[]) IS
	'Deletes messages by id, whoever claimed them: for operators.';
COMMENT ON FUNCTION event_store.outbox_ack(bigint[]) IS
	'Deletes messages by id, whoever claimed them: for operators (the same as outbox_ack_ids).';
COMMENT ON FUNCTION event_store.outbox_nack(uuid[], interval, text) IS
	'Returns claimed messages to the queue after a delay or the topic''s backoff, or to the dead letters after their last attempt.';
COMMENT ON FUNCTION event_store.outbox_nack(text[], interval, text) IS
	'Returns claimed messages to the queue after a delay or the topic''s backoff, or to the dead letters after their last attempt.';
COMMENT ON FUNCTION event_store.outbox_nack(text, interval, text) IS
	'Returns claimed messages, given as an array literal of receipts, to the queue or to the dead letters.';
COMMENT ON FUNCTION event_store.outbox_nack_ids(bigint[], interval, text) IS
	'Returns messages by id to the queue or to the dead letters, whoever claimed them: for operators.';
COMMENT ON FUNCTION event_store.outbox_nack(bigint[], interval, text) IS
	'Returns messages by id to the queue or to the dead letters, whoever claimed them: for operators (the same as outbox_nack_ids).';
COMMENT ON FUNCTION event_store.outbox_topic_settings(text) IS
	'Returns the settings in effect for a topic: its own, or the defaults.';
COMMENT ON FUNCTION event_store.outbox_redrive(bigint[]) IS
	'Puts dead letters back in the queue with their attempts reset; returns how many.';
COMMENT ON FUNCTION event_store.outbox_redrive_topic(text) IS
	'Puts every dead letter of a topic back in the queue; returns how many.';
COMMENT ON FUNCTION event_store.outbox_purge_dead_letters(bigint[]) IS
	'Deletes dead letters by id; returns how many.';
COMMENT ON FUNCTION event_store.route_events(text, text, text) IS
	'Routes the events of a category and type (NULL: any) to a topic; returns whether the route is new.';
COMMENT ON FUNCTION event_store.unroute_events(text, text, text) IS
	'Removes a route from the event log to a topic; returns whether it existed.';
COMMENT ON VIEW event_store.outbox_depth IS
	'Per topic: available, blocked, leased, delayed and dead messages, and the age of the oldest.';

-- The relay.
COMMENT ON TABLE event_store.relay_routes IS
	'Routes from outbox topics to sinks, which the relay workers publish to.';
COMMENT ON TABLE event_store.relay_parked IS
	'Copies of relayed messages too large to publish inline, for relay_fetch.';
COMMENT ON FUNCTION event_store.relay_unroute(text) IS
	'Removes the route of a topic; its messages stay in the outbox.';
COMMENT ON FUNCTION event_store.relay_pause(text) IS
	'Pauses the relay of a topic; its messages stay in the outbox.';
COMMENT ON FUNCTION event_store.relay_resume(text) IS
	'Resumes the relay of a paused topic.';
-- relay_fetch: NULL once the copy is older than relay_reference_ttl, even
-- before a worker deletes it.
CREATE OR REPLACE FUNCTION event_store.relay_fetch(id bigint)
RETURNS event_store.outbox_message
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	-- The workers delete expired copies from time to time; until then the
	-- age decides.  Without the library loaded the setting is unknown: its
	-- default.
	SELECT p.id, p.topic, p.key, p.payload, p.headers, 1, p.created_at, NULL::uuid
	FROM event_store.relay_parked AS p
	WHERE p.id = relay_fetch.id
	  AND p.parked_at > now() - coalesce(current_setting('event_store.relay_reference_ttl', true),
										 '1h')::interval
$$;

COMMENT ON FUNCTION event_store.relay_fetch(bigint) IS
	'Returns the payload and headers of a message published as a reference.';
COMMENT ON FUNCTION event_store.relay_worker_status() IS
	'Returns the launcher and this database''s relay worker, as relay_workers shows them.';
COMMENT ON FUNCTION event_store.relay_available() IS
	'Returns whether relay workers can run: the library is in shared_preload_libraries.';
COMMENT ON VIEW event_store.relay_workers IS
	'The launcher and this database''s relay worker: state, counters, last error.';

-- Internal helpers.
COMMENT ON FUNCTION event_store.read_feed(text, bigint, integer, integer, integer) IS
	'Internal: the gap-safe feed that the subscription functions read.';
COMMENT ON FUNCTION event_store.events_loaded() IS
	'Internal: trigger that resets the feed''s counter when rows enter the log without append.';
COMMENT ON FUNCTION event_store.check_subscription_name(text) IS
	'Internal: raises the error for a bad subscription name.';
COMMENT ON FUNCTION event_store.check_start_position(bigint) IS
	'Internal: raises the error for a subscription start beyond the feed head.';
COMMENT ON FUNCTION event_store.find_subscription(text) IS
	'Internal: the row of a subscription, or the error for one that does not exist.';
COMMENT ON FUNCTION event_store.check_member(event_store.subscriptions, integer) IS
	'Internal: raises the error for a member outside a subscription''s consumer group.';
COMMENT ON FUNCTION event_store.subscription_deleted() IS
	'Internal: trigger that removes the checkpoints of a dropped subscription.';
COMMENT ON FUNCTION event_store.check_topic(text) IS
	'Internal: raises the error for a bad topic.';
COMMENT ON FUNCTION event_store.check_category(text) IS
	'Internal: raises the error for a category no stream can be in; NULL passes.';
COMMENT ON FUNCTION event_store.check_event_type(text) IS
	'Internal: raises the error for a bad event type to match; NULL passes.';
COMMENT ON FUNCTION event_store.outbox_new_receipt(bigint) IS
	'Internal: a fresh claim receipt for a message id.';
COMMENT ON FUNCTION event_store.event_routes_changed() IS
	'Internal: trigger that tells every session to reload the event routes.';
COMMENT ON FUNCTION event_store.relay_set_paused(text, boolean) IS
	'Internal: pauses or resumes the relay of a topic.';
COMMENT ON FUNCTION event_store.relay_wake() IS
	'Internal: wakes the relay of this database when the transaction commits.';
COMMENT ON FUNCTION event_store.relay_start() IS
	'Internal: starts the relay of this database when CREATE EXTENSION commits.';
COMMENT ON FUNCTION event_store.relay_check() IS
	'Internal: warns when no relay worker can serve this database.';

--------------------------------------------------------------------------
-- Sinks: named Kafka, AMQP and HTTP(S) sinks (relay_sink_create,
-- relay_sink_drop, view relay_sinks); relay_route takes a named sink and a
-- destination, so its two-argument form is replaced.
--------------------------------------------------------------------------
ALTER TABLE event_store.relay_routes ADD COLUMN destination text;
DROP FUNCTION event_store.relay_route(text, text);
-- Route a topic to a sink: notify:<channel> (LISTEN/NOTIFY), or the name
-- of a sink made by relay_sink_create, with a destination: the Kafka topic
-- (default: the outbox topic), or for AMQP exchange/routing_key (default
-- exchange ''; without a routing key, the message key, else the topic).
-- Replaces the topic's previous route.
CREATE FUNCTION event_store.relay_route(topic text, sink text, destination text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	scheme text;
	target text;
	sink_scheme text;
BEGIN
	PERFORM event_store.check_topic(topic);
	IF sink IS NULL THEN
		RAISE EXCEPTION 'sink must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	scheme := lower(substring(sink FROM '^([A-Za-z][A-Za-z0-9+.-]*):'));
	IF scheme IS NULL THEN
		-- A named sink.
		SELECT d.scheme INTO sink_scheme FROM event_store.relay_sink_definitions AS d
		WHERE d.name = relay_route.sink FOR SHARE;
		IF sink_scheme IS NULL THEN
			RAISE EXCEPTION 'sink "%" does not exist', sink
				USING ERRCODE = 'undefined_object',
					  HINT = 'A sink is notify:<channel> or the name of a sink made with relay_sink_create.';
		END IF;
		IF sink_scheme = 'kafka' THEN
			IF destination IS NOT NULL AND destination !~ '^[A-Za-z0-9._-]{1,249}$' THEN
				RAISE EXCEPTION 'invalid Kafka topic "%"', left(destination, 255)
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = 'Kafka topics have 1 to 249 letters, digits, dots, underscores and dashes.';
			END IF;
		ELSIF sink_scheme = 'amqp' THEN
			IF destination IS NOT NULL AND
			   (octet_length(split_part(destination, '/', 1)) > 255 OR
				octet_length(substr(destination, strpos(destination, '/') + 1)) > 255) THEN
				RAISE EXCEPTION 'invalid AMQP destination "%..."', left(destination, 32)
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = 'Exchange names and routing keys are at most 255 bytes.';
			END IF;
		ELSIF destination IS NOT NULL THEN
			RAISE EXCEPTION '% sink "%" takes no destination', sink_scheme, sink
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		target := sink;
	ELSE
		target := substr(sink, length(scheme) + 2);
		IF scheme = 'notify' THEN
			IF target = '' THEN
				RAISE EXCEPTION 'notify sink "%" has an empty channel name', sink
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF octet_length(target) > 63 THEN
				RAISE EXCEPTION 'channel name "%..." is too long', left(target, 32)
					USING ERRCODE = 'program_limit_exceeded',
						  DETAIL = format('Channel names are at most 63 bytes; this one has %s.',
										  octet_length(target));
			END IF;
			IF destination IS NOT NULL THEN
				RAISE EXCEPTION 'notify sinks take no destination'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'The channel is part of the sink: notify:<channel>.';
			END IF;
			target := scheme || ':' || target;
		ELSIF scheme IN ('http', 'https', 'kafka', 'amqp') THEN
			RAISE EXCEPTION 'a route names a sink, not the url "%"', event_store.relay_sink_mask_url(sink)
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Create it with relay_sink_create(name, url, options), then route to its name.';
		ELSE
			RAISE EXCEPTION 'unknown sink scheme "%"', scheme
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A sink is notify:<channel> or the name of a sink made with relay_sink_create.';
		END IF;
	END IF;

	INSERT INTO event_store.relay_routes AS r (topic, sink, destination)
	VALUES (topic, target, destination)
	ON CONFLICT ON CONSTRAINT relay_routes_pkey
	DO UPDATE SET sink = excluded.sink, destination = excluded.destination;
	PERFORM event_store.relay_wake();
	PERFORM event_store.relay_check();
END
$$;
COMMENT ON FUNCTION event_store.relay_route(text, text, text) IS
'Route an outbox topic to notify:<channel> or to a named sink, with an optional destination.';


CREATE TABLE event_store.relay_sink_definitions (
	name		text COLLATE "C" PRIMARY KEY,
	scheme		text NOT NULL,
	url			text NOT NULL,
	options		jsonb NOT NULL DEFAULT '{}',
	created_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE event_store.relay_sink_definitions IS
'Named sinks of the relay: broker URL and client options, with their credentials (read relay_sinks instead).';

-- What the relay workers last saw of each sink, written at the end of each
-- of their batches.  Not saved by pg_dump.
CREATE TABLE event_store.relay_sink_state (
	name		text COLLATE "C" PRIMARY KEY,
	connected	boolean NOT NULL DEFAULT false,
	in_flight	integer NOT NULL DEFAULT 0,
	delivered	bigint NOT NULL DEFAULT 0,
	retried		bigint NOT NULL DEFAULT 0,
	last_error	text,
	last_error_at timestamptz,
	updated_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE event_store.relay_sink_state IS
'Per-sink counters of the relay workers (read relay_sinks instead).';

REVOKE ALL ON event_store.relay_sink_definitions, event_store.relay_sink_state FROM PUBLIC;
GRANT SELECT ON event_store.relay_sink_definitions TO event_store_admin, event_store_relay;
GRANT SELECT, INSERT, UPDATE ON event_store.relay_sink_state TO event_store_relay;

-- A URL with its password replaced by ********.
CREATE FUNCTION event_store.relay_sink_mask_url(url text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT regexp_replace(url, '^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*):[^@/]*@', '\1:********@')
$$;
COMMENT ON FUNCTION event_store.relay_sink_mask_url(text) IS
'A sink URL with its password shown as ********.';

-- Options with every secret value replaced by ********: keys that name a
-- password, secret, token or private key, and every value of "headers"
-- (which often carry credentials).
CREATE FUNCTION event_store.relay_sink_mask_options(options jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT coalesce(jsonb_object_agg(o.key,
		CASE
			WHEN o.key = 'headers' AND jsonb_typeof(o.value) = 'object' THEN
				(SELECT coalesce(jsonb_object_agg(h.key, '********'), '{}')
				 FROM jsonb_each(o.value) AS h)
			WHEN o.key ~* '(password|secret|token|credential|private|ssl\.key|sasl\.oauthbearer)' THEN
				'"********"'::jsonb
			ELSE o.value
		END), '{}')
	FROM jsonb_each(options) AS o
$$;
COMMENT ON FUNCTION event_store.relay_sink_mask_options(jsonb) IS
'Sink options with every secret value shown as ********.';

-- Check a sink's URL and options for its scheme.  Each scheme has its own
-- branch; a scheme the relay cannot publish to is refused here.
CREATE FUNCTION event_store.relay_sink_validate(url text, options jsonb)
RETURNS text
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	scheme text;
	masked text := event_store.relay_sink_mask_url(url);
	o record;
BEGIN
	IF url IS NULL THEN
		RAISE EXCEPTION 'url must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF jsonb_typeof(options) IS DISTINCT FROM 'object' THEN
		RAISE EXCEPTION 'options must be a JSON object'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The options are a JSON %s.', jsonb_typeof(options));
	END IF;
	scheme := lower(substring(url FROM '^([A-Za-z][A-Za-z0-9+.-]*)://'));
	IF scheme IS NULL THEN
		RAISE EXCEPTION 'invalid sink url "%"', masked
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A sink url is kafka://host:port[,host:port...], amqp://user:password@host:port/vhost or http(s)://host[:port]/path.';
	END IF;
	IF scheme = 'kafka' THEN
		IF url !~* '^kafka://[A-Za-z0-9._\[\]:-]+:[0-9]{1,5}(,[A-Za-z0-9._\[\]:-]+:[0-9]{1,5})*/?$' THEN
			RAISE EXCEPTION 'invalid Kafka sink url "%"', masked
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Name the bootstrap brokers as kafka://host:port[,host:port...].';
		END IF;
		-- librdkafka properties, as strings, numbers or booleans; the ones the
		-- relay sets itself cannot be overridden.
		FOR o IN SELECT * FROM jsonb_each(options) LOOP
			IF jsonb_typeof(o.value) NOT IN ('string', 'number', 'boolean') THEN
				RAISE EXCEPTION 'Kafka option "%" must be a string, a number or a boolean', o.key
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF o.key IN ('bootstrap.servers', 'metadata.broker.list', 'enable.idempotence',
						 'acks', 'request.required.acks', 'dr_msg_cb', 'dr_cb') THEN
				RAISE EXCEPTION 'Kafka option "%" is set by the relay', o.key
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'The relay uses an idempotent producer with acks=all and the brokers of the url.';
			END IF;
		END LOOP;
	ELSIF scheme = 'amqp' THEN
		IF url !~* '^amqp://([^:/@]+(:[^@/]*)?@)?[A-Za-z0-9._-]+(:[0-9]{1,5})?(/[^/?#]*)?$' THEN
			RAISE EXCEPTION 'invalid AMQP sink url "%"', masked
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Write it as amqp://user:password@host:port/vhost.';
		END IF;
		FOR o IN SELECT * FROM jsonb_each(options) LOOP
			IF o.key NOT IN ('heartbeat', 'connect_timeout_ms', 'frame_max') THEN
				RAISE EXCEPTION 'unknown AMQP option "%"', o.key
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'AMQP sinks take heartbeat, connect_timeout_ms and frame_max.';
			END IF;
			IF jsonb_typeof(o.value) <> 'number' OR o.value::text !~ '^[0-9]{1,9}$' THEN
				RAISE EXCEPTION 'AMQP option "%" must be a non-negative integer', o.key
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
		END LOOP;
	ELSIF scheme IN ('http', 'https') THEN
		-- Webhooks: the url, and the options secret and headers.
		IF url !~* '^https?://[^/?#\s]+(/[^\s]*)?$' THEN
			RAISE EXCEPTION 'invalid HTTP sink url "%"', masked
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Write it as http(s)://host[:port]/path.';
		END IF;
		FOR o IN SELECT * FROM jsonb_each(options) LOOP
			IF o.key IN ('secret', 'ca_file') AND jsonb_typeof(o.value) = 'string' THEN
				CONTINUE;
			ELSIF o.key = 'headers' AND jsonb_typeof(o.value) = 'object' THEN
				CONTINUE;
			ELSIF o.key = 'tls_verify' AND jsonb_typeof(o.value) = 'boolean' THEN
				CONTINUE;
			ELSIF o.key IN ('timeout_ms', 'connect_timeout_ms', 'batch_wait_ms')
				  AND jsonb_typeof(o.value) = 'number'
				  AND o.value::text ~ '^[0-9]{1,6}$' AND o.value::text::integer BETWEEN 1 AND 600000 THEN
				CONTINUE;
			ELSIF o.key = 'max_in_flight' AND jsonb_typeof(o.value) = 'number'
				  AND o.value::text ~ '^[0-9]{1,4}$' AND o.value::text::integer BETWEEN 1 AND 1000 THEN
				CONTINUE;
			END IF;
			RAISE EXCEPTION 'invalid HTTP sink option "%"', o.key
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'HTTP sinks take secret and ca_file (strings), headers (an object), tls_verify (a boolean), timeout_ms, connect_timeout_ms and batch_wait_ms (1 to 600000) and max_in_flight (1 to 1000).';
		END LOOP;
	ELSE
		RAISE EXCEPTION 'unknown sink scheme "%"', scheme
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Sinks are kafka://, amqp://, http:// or https:// urls.';
	END IF;
	RETURN scheme;
END
$$;
COMMENT ON FUNCTION event_store.relay_sink_validate(text, jsonb) IS
'Check a sink URL and its options for the URL''s scheme; returns the scheme.';

-- Create a named sink.  Only admins: its url and options hold credentials.
CREATE FUNCTION event_store.relay_sink_create(name text, url text, options jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	scheme text;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'sink name must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF name !~ '^[A-Za-z_][A-Za-z0-9_.-]*$' OR octet_length(name) > 63 THEN
		RAISE EXCEPTION 'invalid sink name "%"', left(name, 64)
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A sink name starts with a letter or an underscore and has at most 63 letters, digits, underscores, dots and dashes.';
	END IF;
	scheme := event_store.relay_sink_validate(url, coalesce(options, '{}'));
	IF EXISTS (SELECT FROM event_store.relay_sink_definitions AS d
			   WHERE d.name = relay_sink_create.name) THEN
		RAISE EXCEPTION 'sink "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Choose another name, or drop the sink first.';
	END IF;
	INSERT INTO event_store.relay_sink_definitions AS d (name, scheme, url, options)
	VALUES (name, scheme, url, coalesce(options, '{}'));
END
$$;
COMMENT ON FUNCTION event_store.relay_sink_create(text, text, jsonb) IS
'Create a named relay sink: kafka://, amqp:// or http(s):// url, client options.';

-- Drop a named sink; refused while a route uses it.
CREATE FUNCTION event_store.relay_sink_drop(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	topics text;
BEGIN
	IF name IS NULL THEN
		RAISE EXCEPTION 'sink name must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM FROM event_store.relay_sink_definitions AS d
	WHERE d.name = relay_sink_drop.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'sink "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	SELECT string_agg(format('%I', r.topic), ', ' ORDER BY r.topic) INTO topics
	FROM event_store.relay_routes AS r WHERE r.sink = relay_sink_drop.name;
	IF topics IS NOT NULL THEN
		RAISE EXCEPTION 'sink "%" is in use', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  DETAIL = format('Topics routed to it: %s.', topics),
				  HINT = 'Route them elsewhere or unroute them with relay_unroute first.';
	END IF;
	DELETE FROM event_store.relay_sink_definitions AS d WHERE d.name = relay_sink_drop.name;
	DELETE FROM event_store.relay_sink_state AS s WHERE s.name = relay_sink_drop.name;
END
$$;
COMMENT ON FUNCTION event_store.relay_sink_drop(text) IS
'Drop a named relay sink that no route uses.';

-- The sinks, their credentials masked, and what the relay last saw of them.
CREATE VIEW event_store.relay_sinks AS
SELECT d.name,
	   d.scheme,
	   event_store.relay_sink_mask_url(d.url) AS url,
	   event_store.relay_sink_mask_options(d.options) AS options,
	   (SELECT array_agg(r.topic ORDER BY r.topic) FROM event_store.relay_routes AS r
		WHERE r.sink = d.name) AS topics,
	   coalesce(s.connected, false) AS connected,
	   coalesce(s.in_flight, 0) AS in_flight,
	   coalesce(s.delivered, 0) AS delivered,
	   coalesce(s.retried, 0) AS retried,
	   s.last_error,
	   s.last_error_at,
	   s.updated_at,
	   d.created_at
FROM event_store.relay_sink_definitions AS d
LEFT JOIN event_store.relay_sink_state AS s ON s.name = d.name;
COMMENT ON VIEW event_store.relay_sinks IS
'The named relay sinks (secrets shown as ********), their routes, connection and counters.';

-- The view runs with its owner's rights: readers see the masked columns
-- only, never the table.
REVOKE ALL ON event_store.relay_sinks FROM PUBLIC;
GRANT SELECT ON event_store.relay_sinks TO event_store_reader;
SELECT pg_catalog.pg_extension_config_dump('event_store.relay_sink_definitions', '');
REVOKE ALL ON FUNCTION
	event_store.relay_route(text, text, text),
	event_store.relay_sink_create(text, text, jsonb),
	event_store.relay_sink_drop(text),
	event_store.relay_sink_mask_url(text),
	event_store.relay_sink_mask_options(jsonb),
	event_store.relay_sink_validate(text, jsonb)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	event_store.relay_route(text, text, text),
	event_store.relay_sink_create(text, text, jsonb),
	event_store.relay_sink_drop(text)
TO event_store_admin;
-- The view relay_sinks calls the masks with its reader's rights.
GRANT EXECUTE ON FUNCTION
	event_store.relay_sink_mask_url(text),
	event_store.relay_sink_mask_options(jsonb)
TO event_store_reader;

-- Stream lifecycle and filtered feeds: stream metadata (retention) in
-- event_store.stream_settings, which read_stream and append read;
-- delete_stream(..., soft); scavenge, erase_stream; read_all,
-- read_category and subscriptions take event_types and stream_prefix
-- filters (src/lifecycle.c, src/read_feed.c).
CREATE TABLE event_store.stream_settings (
	stream		text COLLATE "C" PRIMARY KEY,
	max_count	bigint CHECK (max_count >= 1),
	max_age		interval CHECK (max_age > '0'::interval),
	truncate_before bigint CHECK (truncate_before >= 0),
	deleted_before bigint NOT NULL DEFAULT 0 CHECK (deleted_before >= 0),
	removed_through bigint,
	updated_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE event_store.stream_settings IS
	'Retention limits and soft deletion of streams (set_stream_metadata, delete_stream(soft => true)).';

REVOKE ALL ON event_store.stream_settings FROM PUBLIC;

-- The stream's append lock, for the functions below (src/lifecycle.c).
-- Not granted.
CREATE FUNCTION event_store.lock_stream(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_lock_stream'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Set a stream's retention: NULL clears a limit.  read_stream applies the
-- limits at once; scavenge removes the events they cover.
CREATE FUNCTION event_store.set_stream_metadata(
	stream text,
	max_count bigint DEFAULT NULL,
	max_age interval DEFAULT NULL,
	truncate_before bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.lock_stream(stream);
	IF max_count < 1 THEN
		RAISE EXCEPTION 'max_count must be at least 1: %', max_count
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to keep every event, or delete the stream.';
	END IF;
	IF max_age <= '0'::interval THEN
		RAISE EXCEPTION 'max_age must be positive: %', max_age
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF truncate_before < 0 THEN
		RAISE EXCEPTION 'truncate_before must not be negative: %', truncate_before
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- EV003 for a deleted stream.
	PERFORM event_store.stream_version(stream);
	INSERT INTO event_store.stream_settings AS s (stream, max_count, max_age, truncate_before)
	VALUES (set_stream_metadata.stream, set_stream_metadata.max_count,
			set_stream_metadata.max_age, set_stream_metadata.truncate_before)
	ON CONFLICT ON CONSTRAINT stream_settings_pkey DO UPDATE
	SET max_count = excluded.max_count, max_age = excluded.max_age,
		truncate_before = excluded.truncate_before, updated_at = now();
END
$$;
COMMENT ON FUNCTION event_store.set_stream_metadata(text, bigint, interval, bigint) IS
	'Set the retention of a stream (max_count, max_age, truncate_before); NULL clears a limit.';

-- Internal helper, never granted: the checks of a stream name argument
-- (src/stream.c): NULL, empty and too long names are refused.
CREATE FUNCTION event_store.check_stream(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_stream'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION event_store.check_stream(text) FROM PUBLIC;
COMMENT ON FUNCTION event_store.check_stream(text) IS
	'Internal: raises the error for a NULL, empty or too long stream name.';

-- A stream's retention and soft deletion: one row, NULL limits when none.
CREATE FUNCTION event_store.stream_metadata(stream text)
RETURNS TABLE (max_count bigint, max_age interval, truncate_before bigint,
			   deleted_before bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.check_stream(stream);
	RETURN QUERY
	SELECT s.max_count, s.max_age, s.truncate_before,
		   nullif(s.deleted_before, 0)
	FROM (SELECT) AS one
	LEFT JOIN event_store.stream_settings AS s ON s.stream = stream_metadata.stream;
END
$$;
COMMENT ON FUNCTION event_store.stream_metadata(text) IS
	'The retention of a stream, and the version below which it was soft-deleted.';

-- Remove the events that retention and soft deletes cover, at most
-- max_events of them (NULL: all), stream by stream.  A tombstone is never
-- removed.  Then zeroes the free space of pages that erasures left and
-- VACUUM cleaned.  Returns how many events it removed.
CREATE FUNCTION event_store.scavenge(max_events bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s event_store.stream_settings;
	p event_store.erased_pages;
	head bigint;
	cut bigint;
	oldest timestamptz;
	n bigint;
	last_removed bigint;
	removed bigint := 0;
BEGIN
	IF max_events < 1 THEN
		RAISE EXCEPTION 'max_events must be at least 1: %', max_events
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to remove everything there is to remove.';
	END IF;
	FOR s IN SELECT * FROM event_store.stream_settings AS st
			 WHERE st.max_count IS NOT NULL OR st.max_age IS NOT NULL
				OR st.truncate_before IS NOT NULL OR st.deleted_before > 0
			 ORDER BY st.stream
	LOOP
		EXIT WHEN removed >= max_events;
		SELECT e.version INTO head FROM event_store.events AS e
		WHERE e.stream = s.stream ORDER BY e.version DESC LIMIT 1;
		CONTINUE WHEN head IS NULL;
		cut := greatest(coalesce(s.truncate_before, 0), s.deleted_before,
						head - s.max_count + 1);
		oldest := now() - s.max_age;
		WITH gone AS (
			DELETE FROM event_store.events AS e
			WHERE e.position IN (
				SELECT c.position FROM event_store.events AS c
				WHERE c.stream = s.stream
				  AND c.type <> '$stream_deleted'
				  AND (c.version < cut OR c.recorded_at < oldest)
				ORDER BY c.version
				LIMIT max_events - removed)
			RETURNING e.version)
		SELECT count(*), max(gone.version) INTO n, last_removed FROM gone;
		-- The stream's last event is gone: remember its version.
		IF last_removed = head THEN
			UPDATE event_store.stream_settings AS st
			SET removed_through = greatest(st.removed_through, head)
			WHERE st.stream = s.stream;
		END IF;
		removed := removed + n;
	END LOOP;
	-- Wipe what erasures left in pages that VACUUM has cleaned since.
	FOR p IN SELECT * FROM event_store.erased_pages AS ep
			 ORDER BY ep.relname, ep.block
	LOOP
		IF event_store.scrub_page(p.relname, p.block) THEN
			DELETE FROM event_store.erased_pages AS ep
			WHERE ep.relname = p.relname AND ep.block = p.block;
		END IF;
	END LOOP;
	RETURN removed;
END
$$;
COMMENT ON FUNCTION event_store.scavenge(bigint) IS
	'Remove the events that retention and soft deletes cover, at most max_events; returns how many.';

-- Pages of the extension's tables that held row versions erase_stream
-- replaced or deleted.  VACUUM frees those versions but leaves their bytes
-- in the page's free space; scavenge zeroes it (scrub_page) once VACUUM
-- removed them, then forgets the page.  Not saved by pg_dump: the pages of
-- a restored table are new.
CREATE TABLE event_store.erased_pages (
	relname		text COLLATE "C" NOT NULL,
	block		bigint NOT NULL,
	erased_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (relname, block)
);
COMMENT ON TABLE event_store.erased_pages IS
	'Pages whose free space scavenge still has to zero after an erasure.';
REVOKE ALL ON event_store.erased_pages FROM PUBLIC;

-- See src/lifecycle.c.  Not granted.
CREATE FUNCTION event_store.scrub_page(relname text, block bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'event_store_scrub_page'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Erase a stream's personal data for good: every event keeps its position,
-- stream, version, type, id and time, but its data becomes JSON null and
-- its metadata NULL; the messages routed from its events are deleted from
-- the outbox, the dead letters and the parked notifications of the relay.
-- VACUUM then frees the old row versions, and scavenge zeroes the bytes
-- they leave in the pages.
-- Returns how many events it erased.
CREATE FUNCTION event_store.erase_stream(stream text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM event_store.lock_stream(stream);
	INSERT INTO event_store.erased_pages (relname, block)
	SELECT DISTINCT 'events', (e.ctid::text::point)[0]::bigint
	FROM event_store.events AS e
	WHERE e.stream = erase_stream.stream
	  AND (e.data <> 'null'::jsonb OR e.metadata IS NOT NULL)
	UNION
	SELECT 'outbox', (o.ctid::text::point)[0]::bigint
	FROM event_store.outbox AS o
	WHERE o.key = erase_stream.stream AND o.headers ? 'event_id'
	  AND o.headers ->> 'stream' = erase_stream.stream
	UNION
	SELECT 'outbox_dead_letters', (d.ctid::text::point)[0]::bigint
	FROM event_store.outbox_dead_letters AS d
	WHERE d.key = erase_stream.stream AND d.headers ? 'event_id'
	  AND d.headers ->> 'stream' = erase_stream.stream
	UNION
	SELECT 'relay_parked', (r.ctid::text::point)[0]::bigint
	FROM event_store.relay_parked AS r
	WHERE r.key = erase_stream.stream AND r.headers ? 'event_id'
	  AND r.headers ->> 'stream' = erase_stream.stream
	ON CONFLICT DO NOTHING;
	UPDATE event_store.events AS e
	SET data = 'null'::jsonb, metadata = NULL
	WHERE e.stream = erase_stream.stream
	  AND (e.data <> 'null'::jsonb OR e.metadata IS NOT NULL);
	GET DIAGNOSTICS n = ROW_COUNT;
	-- Routed copies carry the stream in their headers (src/route.c).
	DELETE FROM event_store.outbox AS o
	WHERE o.key = erase_stream.stream
	  AND o.headers ? 'event_id'
	  AND o.headers ->> 'stream' = erase_stream.stream;
	DELETE FROM event_store.outbox_dead_letters AS d
	WHERE d.key = erase_stream.stream
	  AND d.headers ? 'event_id'
	  AND d.headers ->> 'stream' = erase_stream.stream;
	DELETE FROM event_store.relay_parked AS r
	WHERE r.key = erase_stream.stream
	  AND r.headers ? 'event_id'
	  AND r.headers ->> 'stream' = erase_stream.stream;
	RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.erase_stream(text) IS
	'Erase the data and metadata of a stream''s events and their routed outbox messages and dead letters; returns how many events it erased.';

-- Feed reads filtered by event types (src/read_feed.c).  Builds the index
-- over the whole log: on a large store, expect the update to take a while.
CREATE INDEX events_type_position_idx
	ON event_store.events (type COLLATE "C", position);

DROP FUNCTION event_store.delete_stream(text, bigint);
CREATE FUNCTION event_store.delete_stream(
	stream text,
	expected_version bigint DEFAULT NULL,
	soft boolean DEFAULT false)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_delete_stream'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

DROP FUNCTION event_store.read_all(bigint, integer);
CREATE FUNCTION event_store.read_all(
	from_position bigint DEFAULT 0,
	max_count integer DEFAULT 1000,
	event_types text[] DEFAULT NULL,
	stream_prefix text DEFAULT NULL)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_all'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;

DROP FUNCTION event_store.read_category(text, bigint, integer, integer, integer);
CREATE FUNCTION event_store.read_category(
	category text,
	from_position bigint DEFAULT 0,
	max_count integer DEFAULT 1000,
	consumer_group_member integer DEFAULT NULL,
	consumer_group_size integer DEFAULT NULL,
	event_types text[] DEFAULT NULL,
	stream_prefix text DEFAULT NULL)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_category'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;

DROP FUNCTION event_store.read_feed(text, bigint, integer, integer, integer);
CREATE FUNCTION event_store.read_feed(
	category text,
	from_position bigint,
	max_count integer,
	consumer_group_member integer,
	consumer_group_size integer,
	event_types text[],
	stream_prefix text)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_feed'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 100;

CREATE FUNCTION event_store.read_feed_covered()
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_read_feed_covered'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

ALTER TABLE event_store.subscriptions
	ADD COLUMN event_types text[],
	ADD COLUMN stream_prefix text COLLATE "C";

CREATE FUNCTION event_store.subscription_create(
	subscription text,
	category text DEFAULT NULL,
	group_size integer DEFAULT 1,
	from_position bigint DEFAULT 0,
	if_not_exists boolean DEFAULT false,
	event_types text[] DEFAULT NULL,
	stream_prefix text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	checkpoint bigint;
	existing event_store.subscriptions;
BEGIN
	PERFORM event_store.check_subscription_name(subscription);
	PERFORM event_store.check_category(category);
	IF group_size IS NULL THEN
		RAISE EXCEPTION 'group_size must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF group_size < 1 THEN
		RAISE EXCEPTION 'consumer group size must be at least 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF group_size > 1024 THEN
		RAISE EXCEPTION 'consumer group size must be at most 1024'
			USING ERRCODE = 'program_limit_exceeded';
	END IF;
	IF from_position < 0 THEN
		RAISE EXCEPTION 'from_position must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF if_not_exists IS NULL THEN
		RAISE EXCEPTION 'if_not_exists must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- The feed's own checks of the filter (no rows are read).
	PERFORM FROM event_store.read_all(0, 0, event_types, stream_prefix);

	-- NULL: only events after the current head.
	checkpoint := CASE WHEN from_position IS NULL THEN event_store.feed_head()
					   ELSE greatest(from_position - 1, 0) END;
	PERFORM event_store.check_start_position(from_position);

	INSERT INTO event_store.subscriptions AS s
		(name, category, group_size, event_types, stream_prefix)
	VALUES (subscription, category, group_size, event_types, stream_prefix)
	ON CONFLICT (name) DO NOTHING;
	IF NOT FOUND THEN
		-- Waited for a concurrent creator, if any: its row is committed.
		SELECT * INTO existing FROM event_store.subscriptions AS s
		WHERE s.name = subscription;
		IF if_not_exists AND existing.category IS NOT DISTINCT FROM category
				AND existing.group_size = group_size
				AND existing.event_types IS NOT DISTINCT FROM event_types
				AND existing.stream_prefix IS NOT DISTINCT FROM stream_prefix THEN
			RAISE NOTICE 'subscription "%" already exists, skipping', subscription;
			RETURN;
		END IF;
		IF if_not_exists THEN
			RAISE EXCEPTION 'subscription "%" already exists with another definition', subscription
				USING ERRCODE = 'duplicate_object',
					  DETAIL = format('It has category %s, a consumer group of size %s, event types %s and stream prefix %s.',
									  coalesce(quote_literal(existing.category), 'NULL'),
									  existing.group_size,
									  coalesce(quote_literal(existing.event_types::text), 'NULL'),
									  coalesce(quote_literal(existing.stream_prefix), 'NULL'));
		END IF;
		RAISE EXCEPTION 'subscription "%" already exists', subscription
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO event_store.subscription_checkpoints (subscription, member, position)
	SELECT subscription_create.subscription, m, checkpoint
	FROM generate_series(0, group_size - 1) AS m;
	IF NOT event_store.relay_available() THEN
		RAISE WARNING 'the relay workers are not running'
			USING DETAIL = format('The event_store library is not in shared_preload_libraries: LISTEN %s will not fire.',
								  event_store.subscription_channel(subscription)),
				  HINT = 'Poll subscription_fetch, or add event_store to shared_preload_libraries and restart the server.';
	END IF;
	-- The relay worker announces subscriptions: let it know there is one.
	PERFORM event_store.relay_wake();
END
$$;

CREATE OR REPLACE VIEW event_store.subscription_lag AS
SELECT s.name AS subscription,
	   s.category,
	   c.member,
	   s.group_size,
	   c.position AS checkpoint,
	   h.head,
	   pending.events AS pending_events,
	   now() - pending.oldest AS oldest_pending_age,
	   c.updated_at AS acked_at,
	   event_store.subscription_channel(s.name) AS channel
FROM event_store.subscriptions AS s
JOIN event_store.subscription_checkpoints AS c ON c.subscription = s.name
CROSS JOIN (SELECT CASE WHEN event_store.feed_state() = 'primary'
				   THEN event_store.feed_head() END AS head) AS h
CROSS JOIN LATERAL (
	SELECT CASE WHEN h.head IS NOT NULL THEN count(*) END AS events,
		   min(e.recorded_at) AS oldest
	FROM event_store.events AS e
	WHERE e.position > c.position AND e.position <= h.head
	  AND (s.category IS NULL OR event_store.category(e.stream) = s.category)
	  AND (s.group_size = 1 OR
		   event_store.consumer_group_member(e.stream, s.group_size) = c.member)
	  AND (s.event_types IS NULL OR e.type = ANY (s.event_types))
	  AND (s.stream_prefix IS NULL OR starts_with(e.stream, s.stream_prefix))
) AS pending;

COMMENT ON FUNCTION event_store.delete_stream(text, bigint, boolean) IS
	'End a stream with a tombstone, or soft-delete it (it reads as empty and can be written again).';
COMMENT ON FUNCTION event_store.read_all(bigint, integer, text[], text) IS
	'The global feed in position order, gap-safe, optionally filtered by event types and stream prefix.';
COMMENT ON FUNCTION event_store.read_category(text, bigint, integer, integer, integer, text[], text) IS
	'The feed of one category, gap-safe, optionally one consumer group member, optionally filtered by event types and stream prefix.';
COMMENT ON FUNCTION event_store.subscription_create(text, text, integer, bigint, boolean, text[], text) IS
	'Create a durable subscription to the feed or a category, optionally filtered by event types and stream prefix.';

SELECT pg_catalog.pg_extension_config_dump('event_store.stream_settings', '');

REVOKE ALL ON FUNCTION
	event_store.lock_stream(text),
	event_store.scrub_page(text, bigint),
	event_store.set_stream_metadata(text, bigint, interval, bigint),
	event_store.stream_metadata(text),
	event_store.scavenge(bigint),
	event_store.erase_stream(text),
	event_store.delete_stream(text, bigint, boolean),
	event_store.read_all(bigint, integer, text[], text),
	event_store.read_category(text, bigint, integer, integer, integer, text[], text),
	event_store.read_feed(text, bigint, integer, integer, integer, text[], text),
	event_store.read_feed_covered(),
	event_store.subscription_create(text, text, integer, bigint, boolean, text[], text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	event_store.read_all(bigint, integer, text[], text),
	event_store.read_category(text, bigint, integer, integer, integer, text[], text),
	event_store.stream_metadata(text)
TO event_store_reader;
GRANT EXECUTE ON FUNCTION
	event_store.delete_stream(text, bigint, boolean),
	event_store.set_stream_metadata(text, bigint, interval, bigint),
	event_store.scavenge(bigint),
	event_store.erase_stream(text),
	event_store.subscription_create(text, text, integer, bigint, boolean, text[], text)
TO event_store_admin;

-- Comments of the internal helpers of the filtered feed and the stream
-- lifecycle, as the install script gives them.
COMMENT ON FUNCTION event_store.read_feed(text, bigint, integer, integer, integer, text[], text) IS
	'Internal: the gap-safe feed that the subscription functions read.';
COMMENT ON FUNCTION event_store.lock_stream(text) IS
	'Internal: takes the append lock of a stream, for the lifecycle functions.';
COMMENT ON FUNCTION event_store.read_feed_covered() IS
	'Internal: how far the session''s last read_feed covered the feed.';
COMMENT ON FUNCTION event_store.scrub_page(text, bigint) IS
	'Internal: wipes the free space of a page that held erased data.';

--------------------------------------------------------------------------
-- WAL topics: outbox_configure(..., delivery => 'wal') makes outbox_send
-- and event routes to a topic emit transactional logical decoding messages
-- instead of outbox rows; backends cache which topics those are, and a
-- trigger on outbox_topics tells them to read it again.
--------------------------------------------------------------------------
ALTER TABLE event_store.outbox_topics
	ADD COLUMN delivery text NOT NULL DEFAULT 'table'
		CONSTRAINT outbox_topics_delivery_check CHECK (delivery IN ('table', 'wal'));

CREATE OR REPLACE FUNCTION event_store.outbox_topic_settings(topic text)
RETURNS SETOF event_store.outbox_topics
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
AS $$
	SELECT t.* FROM event_store.outbox_topics AS t WHERE t.topic = $1
	UNION ALL
	SELECT $1, 10, interval '1 second', interval '1 hour', interval '30 seconds', 'table'
	WHERE NOT EXISTS (SELECT FROM event_store.outbox_topics AS t WHERE t.topic = $1)
$$;

CREATE FUNCTION event_store.outbox_topics_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'event_store_outbox_topics_changed'
LANGUAGE C;
REVOKE ALL ON FUNCTION event_store.outbox_topics_changed() FROM PUBLIC;

CREATE TRIGGER outbox_topics_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_store.outbox_topics
	FOR EACH STATEMENT EXECUTE FUNCTION event_store.outbox_topics_changed();

DROP FUNCTION event_store.outbox_configure(text, integer, interval, interval, interval);
CREATE FUNCTION event_store.outbox_configure(
	topic text,
	max_attempts integer DEFAULT NULL,
	backoff_base interval DEFAULT NULL,
	backoff_max interval DEFAULT NULL,
	lease interval DEFAULT NULL,
	delivery text DEFAULT NULL)
RETURNS event_store.outbox_topics
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result event_store.outbox_topics;
BEGIN
	PERFORM event_store.check_topic(topic);
	IF max_attempts < 1 THEN
		RAISE EXCEPTION 'max_attempts must be at least 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF backoff_base <= '0'::interval OR backoff_max <= '0'::interval OR lease <= '0'::interval THEN
		RAISE EXCEPTION 'backoff_base, backoff_max and lease must be positive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF delivery NOT IN ('table', 'wal') THEN
		RAISE EXCEPTION 'invalid delivery "%"', delivery
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A topic is delivered through the outbox table (''table'') or the WAL (''wal'').';
	END IF;
	IF delivery = 'wal' AND current_setting('wal_level') <> 'logical' THEN
		RAISE EXCEPTION 'topic "%" cannot be delivered through the WAL: wal_level is "%"',
			topic, current_setting('wal_level')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Set wal_level = logical and restart the server.';
	END IF;
	INSERT INTO event_store.outbox_topics AS t
	SELECT * FROM event_store.outbox_topic_settings(outbox_configure.topic)
	ON CONFLICT ON CONSTRAINT outbox_topics_pkey DO NOTHING;
	UPDATE event_store.outbox_topics AS t
	SET max_attempts = coalesce(outbox_configure.max_attempts, t.max_attempts),
		backoff_base = coalesce(outbox_configure.backoff_base, t.backoff_base),
		backoff_max = coalesce(outbox_configure.backoff_max, t.backoff_max),
		lease = coalesce(outbox_configure.lease, t.lease),
		delivery = coalesce(outbox_configure.delivery, t.delivery)
	WHERE t.topic = outbox_configure.topic
	RETURNING * INTO result;
	RETURN result;
END
$$;
REVOKE ALL ON FUNCTION
	event_store.outbox_configure(text, integer, interval, interval, interval, text)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	event_store.outbox_configure(text, integer, interval, interval, interval, text)
TO event_store_admin;

COMMENT ON COLUMN event_store.outbox_topics.delivery IS
	'table: messages are rows of event_store.outbox; wal: transactional logical decoding messages with prefix event_store, no row';
COMMENT ON FUNCTION event_store.outbox_configure(text, integer, interval, interval, interval, text) IS
	'Sets a topic''s attempts, backoff, lease and delivery (table or wal); NULL keeps the current value.';
COMMENT ON FUNCTION event_store.outbox_topics_changed() IS
	'Trigger: backends read the topics delivered through the WAL again';

--------------------------------------------------------------------------
-- Subscriptions in C: subscription_fetch reads the feed straight into its
-- result, as read_all does, and subscription_ack runs two prepared
-- statements (src/subscription.c).  Same signatures: privileges and
-- comments stay.
--------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store.subscription_fetch(
	subscription text,
	max_count integer DEFAULT 100,
	member integer DEFAULT 0)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_subscription_fetch'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100;

CREATE OR REPLACE FUNCTION event_store.subscription_ack(
	subscription text,
	up_to_position bigint,
	member integer DEFAULT 0)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_subscription_ack'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- Outbox claims: where claims start.  Claims remember, per topic, an id
-- below which nothing is claimable any more; a redrive, which puts back
-- rows with earlier ids, tells them first (outbox_reinsert_begin).
CREATE FUNCTION event_store.outbox_reinsert_begin(ids bigint[])
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_outbox_reinsert_begin'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;
REVOKE ALL ON FUNCTION event_store.outbox_reinsert_begin(bigint[]) FROM PUBLIC;
COMMENT ON FUNCTION event_store.outbox_reinsert_begin(bigint[]) IS
	'Internal: tells claims that this transaction inserts outbox rows with these earlier ids.';

CREATE OR REPLACE FUNCTION event_store.outbox_redrive(ids bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	moved integer;
BEGIN
	IF ids IS NULL THEN
		RAISE EXCEPTION 'ids must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	PERFORM event_store.outbox_reinsert_begin(ids);
	WITH revived AS (
		DELETE FROM event_store.outbox_dead_letters AS d WHERE d.id = ANY (ids)
		RETURNING d.*)
	INSERT INTO event_store.outbox (id, topic, key, payload, headers, attempts,
									created_at, available_at, last_error)
	SELECT r.id, r.topic, r.key, r.payload, r.headers, 0, r.created_at,
		   clock_timestamp(), r.last_error
	FROM revived AS r;
	GET DIAGNOSTICS moved = ROW_COUNT;
	RETURN moved;
END
$$;

-- Outbox claims and acks by receipt: written against the table directly,
-- they set the plan settings only around the statements they still run.
ALTER FUNCTION event_store.outbox_claim(text, integer, interval, interval)
	RESET jit RESET enable_seqscan RESET enable_bitmapscan;
ALTER FUNCTION event_store.outbox_ack(uuid[])
	RESET jit RESET enable_seqscan RESET enable_bitmapscan;
ALTER FUNCTION event_store.outbox_ack(text[])
	RESET jit RESET enable_seqscan RESET enable_bitmapscan;
ALTER FUNCTION event_store.outbox_ack(text)
	RESET jit RESET enable_seqscan RESET enable_bitmapscan;
