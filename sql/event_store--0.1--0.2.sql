-- event_store 0.1 -> 0.2: run by ALTER EXTENSION event_store UPDATE.
--
-- Every change of the install script (sql/install/) between the two
-- releases is repeated here, so that an updated database has exactly the
-- objects of a fresh 0.2 install (test/t/010_upgrade.pl compares both
-- catalogs).

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
		RAISE EXCEPTION 'schema "%" grants CREATE to roles that are not superusers: %', nsp_name, creator
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The extension''s functions run with superuser privileges and find their objects in this schema: those roles could put objects in their way.',
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
		  FROM pg_catalog.pg_operator AS o WHERE o.oprnamespace = nsp) AS o
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
-- outbox_nack also take text[] and text, and the by-id forms are renamed
-- outbox_ack_ids and outbox_nack_ids (the old overloads made a call with an
-- untyped literal, a list of strings or NULL ambiguous).
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

CREATE OR REPLACE FUNCTION event_store.outbox_claim(
	topic text,
	max_count integer DEFAULT 100,
	lease interval DEFAULT NULL)
RETURNS SETOF event_store.outbox_message
AS 'MODULE_PATHNAME', 'event_store_outbox_claim'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off
ROWS 100;

DROP FUNCTION event_store.outbox_ack(bigint[]);
DROP FUNCTION event_store.outbox_nack(bigint[], interval, text);

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

CREATE OR REPLACE FUNCTION event_store.outbox_configure(
	topic text,
	max_attempts integer DEFAULT NULL,
	backoff_base interval DEFAULT NULL,
	backoff_max interval DEFAULT NULL,
	lease interval DEFAULT NULL)
RETURNS event_store.outbox_topics
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result event_store.outbox_topics;
BEGIN
	PERFORM event_store.check_topic(topic);
	IF max_attempts < 1 THEN
		RAISE EXCEPTION 'max_attempts must be at least 1: %', max_attempts
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF backoff_base <= '0'::interval OR backoff_max <= '0'::interval OR lease <= '0'::interval THEN
		RAISE EXCEPTION 'backoff_base, backoff_max and lease must be positive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	INSERT INTO event_store.outbox_topics AS t
	SELECT * FROM event_store.outbox_topic_settings(outbox_configure.topic)
	ON CONFLICT ON CONSTRAINT outbox_topics_pkey DO NOTHING;
	UPDATE event_store.outbox_topics AS t
	SET max_attempts = coalesce(outbox_configure.max_attempts, t.max_attempts),
		backoff_base = coalesce(outbox_configure.backoff_base, t.backoff_base),
		backoff_max = coalesce(outbox_configure.backoff_max, t.backoff_max),
		lease = coalesce(outbox_configure.lease, t.lease)
	WHERE t.topic = outbox_configure.topic
	RETURNING * INTO result;
	RETURN result;
END
$$;

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
	IF octet_length(category) > 1024 OR octet_length(event_type) > 1024 THEN
		RAISE EXCEPTION 'category and event type are at most 1024 bytes'
			USING ERRCODE = 'program_limit_exceeded';
	END IF;
	PERFORM event_store.check_category(category);
	IF event_type = '' THEN
		RAISE EXCEPTION 'event type must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A NULL event type stands for every type.';
	END IF;
	INSERT INTO event_store.event_routes AS r (category, event_type, topic)
	VALUES (category, event_type, topic)
	ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$$;

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
CREATE FUNCTION event_store.subscription_create(
	subscription text,
	category text DEFAULT NULL,
	group_size integer DEFAULT 1,
	from_position bigint DEFAULT 0,
	if_not_exists boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	checkpoint bigint;
	existing event_store.subscriptions;
BEGIN
	PERFORM event_store.check_subscription_name(subscription);
	IF octet_length(category) > 1024 THEN
		RAISE EXCEPTION 'category name is too long'
			USING ERRCODE = 'program_limit_exceeded';
	END IF;
	IF category = '' THEN
		RAISE EXCEPTION 'category must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to subscribe to the whole feed.';
	END IF;
	IF strpos(category, '-') > 0 THEN
		RAISE EXCEPTION 'invalid category "%"', category
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A category is the part of a stream name before its first "-": it never contains "-".';
	END IF;
	IF group_size IS NULL THEN
		RAISE EXCEPTION 'group_size must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF group_size < 1 THEN
		RAISE EXCEPTION 'consumer group size must be at least 1: %', group_size
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF group_size > 1024 THEN
		RAISE EXCEPTION 'consumer group size must be at most 1024: %', group_size
			USING ERRCODE = 'program_limit_exceeded';
	END IF;
	IF from_position < 0 THEN
		RAISE EXCEPTION 'from_position must not be negative: %', from_position
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF if_not_exists IS NULL THEN
		RAISE EXCEPTION 'if_not_exists must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;

	-- NULL: only events after the current head.
	checkpoint := CASE WHEN from_position IS NULL THEN event_store.feed_head()
					   ELSE greatest(from_position - 1, 0) END;

	INSERT INTO event_store.subscriptions AS s (name, category, group_size)
	VALUES (subscription, category, group_size)
	ON CONFLICT (name) DO NOTHING;
	IF NOT FOUND THEN
		-- Waited for a concurrent creator, if any: its row is committed.
		SELECT * INTO existing FROM event_store.subscriptions AS s
		WHERE s.name = subscription;
		IF if_not_exists AND existing.category IS NOT DISTINCT FROM category
				AND existing.group_size = group_size THEN
			RAISE NOTICE 'subscription "%" already exists, skipping', subscription;
			RETURN;
		END IF;
		IF if_not_exists THEN
			RAISE EXCEPTION 'subscription "%" already exists with another definition', subscription
				USING ERRCODE = 'duplicate_object',
					  DETAIL = format('It has category %s and a consumer group of size %s.',
									  coalesce(quote_literal(existing.category), 'NULL'),
									  existing.group_size);
		END IF;
		RAISE EXCEPTION 'subscription "%" already exists', subscription
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO event_store.subscription_checkpoints (subscription, member, position)
	SELECT subscription_create.subscription, m, checkpoint
	FROM generate_series(0, group_size - 1) AS m;
	IF NOT event_store.relay_available() THEN
		RAISE WARNING 'the relay workers are not running'
			USING DETAIL = format('event_store is not in shared_preload_libraries: LISTEN %s will not fire.',
								  'event_store_sub_' || subscription),
				  HINT = 'Poll subscription_fetch, or add event_store to shared_preload_libraries and restart the server.';
	END IF;
	-- The relay worker announces subscriptions: let it know there is one.
	PERFORM event_store.relay_wake();
END
$$;

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

-- The session's memory of the fence it fetched with (src/subscription.c).
-- Not granted; the subscription functions call them.
CREATE FUNCTION event_store.subscription_remember(subscription text, member integer, fence uuid)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_subscription_remember'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION event_store.subscription_remembered(subscription text, member integer)
RETURNS uuid
AS 'MODULE_PATHNAME', 'event_store_subscription_remembered'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

-- The next events after the member's checkpoint, in position order.
-- Reading does not move the checkpoint: subscription_ack does.  The fetch
-- locks the member's checkpoint until the transaction ends, so a second
-- fetcher of the same member waits: a member is processed by one
-- transaction at a time.
CREATE OR REPLACE FUNCTION event_store.subscription_fetch(
	subscription text,
	max_count integer DEFAULT 100,
	member integer DEFAULT 0)
RETURNS SETOF event_store.event
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sub event_store.subscriptions := event_store.find_subscription(subscription);
	checkpoint bigint;
	fence uuid;
BEGIN
	PERFORM event_store.check_member(sub, member);
	-- A standby cannot lock rows: refuse with the feed's own error first.
	IF pg_catalog.pg_is_in_recovery() THEN
		PERFORM event_store.feed_head();
	END IF;
	-- Read the subscription and the checkpoint in one statement, so that a
	-- concurrent drop (and create) is seen whole or not at all.
	SELECT c.position, c.fence, s.category, s.group_size
	INTO checkpoint, fence, sub.category, sub.group_size
	FROM event_store.subscription_checkpoints AS c
	JOIN event_store.subscriptions AS s ON s.name = c.subscription
	WHERE c.subscription = sub.name AND c.member = subscription_fetch.member
	FOR NO KEY UPDATE OF c;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" does not exist', subscription
			USING ERRCODE = 'undefined_object';
	END IF;
	PERFORM event_store.subscription_remember(sub.name, member, fence);
	RETURN QUERY SELECT * FROM event_store.read_feed(sub.category, checkpoint + 1,
		max_count, member, sub.group_size);
END
$$;

-- Record that the member has processed everything up to up_to_position.
-- A position below the checkpoint changes nothing (a late or repeated ack);
-- one beyond the feed head is refused, since events may still commit
-- below it.  An ack from a session whose last fetch of this member was
-- before a reset (or from a dropped incarnation of the subscription)
-- changes nothing either, with a warning.  Returns the member's checkpoint:
-- less than up_to_position exactly when the ack was not applied.
CREATE OR REPLACE FUNCTION event_store.subscription_ack(
	subscription text,
	up_to_position bigint,
	member integer DEFAULT 0)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sub event_store.subscriptions := event_store.find_subscription(subscription);
	head bigint;
	checkpoint bigint;
	fetched_fence uuid;
BEGIN
	PERFORM event_store.check_member(sub, member);
	IF up_to_position IS NULL THEN
		RAISE EXCEPTION 'up_to_position must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF up_to_position < 0 THEN
		RAISE EXCEPTION 'up_to_position must not be negative: %', up_to_position
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	head := event_store.feed_head();
	IF up_to_position > head THEN
		RAISE EXCEPTION 'position % is beyond the feed head %', up_to_position, head
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Acknowledge positions of events that subscription_fetch returned.';
	END IF;
	fetched_fence := event_store.subscription_remembered(sub.name, member);
	UPDATE event_store.subscription_checkpoints AS c
	SET position = greatest(c.position, up_to_position), updated_at = now()
	WHERE c.subscription = sub.name AND c.member = subscription_ack.member
	  AND (fetched_fence IS NULL OR c.fence = fetched_fence)
	RETURNING c.position INTO checkpoint;
	IF NOT FOUND THEN
		SELECT c.position INTO checkpoint FROM event_store.subscription_checkpoints AS c
		WHERE c.subscription = sub.name AND c.member = subscription_ack.member;
		IF NOT FOUND THEN
			RAISE EXCEPTION 'subscription "%" does not exist', subscription
				USING ERRCODE = 'undefined_object';
		END IF;
		RAISE WARNING 'acknowledgement of position % for subscription "%" member % was not applied',
			up_to_position, sub.name, member
			USING DETAIL = 'The subscription was reset, or dropped and created again, since this session fetched from it.',
				  HINT = 'Fetch again: the events after the checkpoint are delivered again.';
	END IF;
	RETURN checkpoint;
END
$$;

-- Move every member's checkpoint so that the next fetch starts at
-- from_position (replay, or skip ahead), under a new fence.  Waits for the
-- members' fetches in progress; takes the members in order.
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
		RAISE EXCEPTION 'from_position must not be negative: %', from_position
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
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

REVOKE ALL ON FUNCTION
	event_store.subscription_create(text, text, integer, bigint, boolean),
	event_store.subscription_remember(text, integer, uuid),
	event_store.subscription_remembered(text, integer)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	event_store.subscription_create(text, text, integer, bigint, boolean)
TO event_store_admin;

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
	   'event_store_sub_' || s.name AS channel
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
) AS pending;

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

-- Route a topic to a sink: notify:<channel> (LISTEN/NOTIFY).  Replaces the
-- topic's previous sink.
CREATE OR REPLACE FUNCTION event_store.relay_route(topic text, sink text)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	scheme text;
	target text;
BEGIN
	PERFORM event_store.check_topic(topic);
	IF sink IS NULL THEN
		RAISE EXCEPTION 'sink must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	scheme := lower(substring(sink FROM '^([A-Za-z][A-Za-z0-9+.-]*):'));
	IF scheme IS NULL THEN
		RAISE EXCEPTION 'invalid sink "%"', sink
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A sink is a URI such as notify:<channel>.';
	END IF;
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
	ELSIF scheme IN ('http', 'https', 'kafka', 'amqp') THEN
		RAISE EXCEPTION 'sink scheme "%" is not supported yet', scheme
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Use notify:<channel>.';
	ELSE
		RAISE EXCEPTION 'unknown sink scheme "%"', scheme
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use notify:<channel>.';
	END IF;

	INSERT INTO event_store.relay_routes AS r (topic, sink)
	VALUES (topic, scheme || ':' || target)
	ON CONFLICT ON CONSTRAINT relay_routes_pkey
	DO UPDATE SET sink = excluded.sink;
	PERFORM event_store.relay_wake();
	PERFORM event_store.relay_check();
END
$$;

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
		RAISE EXCEPTION 'max_attempts must be at least 1: %', max_attempts
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
	'Set a topic''s retry policy, lease and delivery (table or wal); NULL keeps the current value';
COMMENT ON FUNCTION event_store.outbox_topics_changed() IS
	'Trigger: backends read the topics delivered through the WAL again';
