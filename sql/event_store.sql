-- event_store: an event store and transactional outbox inside PostgreSQL.
--
-- This file is the source of the install script event_store--<version>.sql.
-- Every object lives in schema event_store (created by CREATE EXTENSION from
-- the control file) and is named with its schema.

\echo Use "CREATE EXTENSION event_store" to load this file. \quit

--------------------------------------------------------------------------
-- Roles.  Roles are cluster-wide, so a second database that installs the
-- extension finds them already there; DROP EXTENSION leaves them behind.
--------------------------------------------------------------------------
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'event_store_reader') THEN
		CREATE ROLE event_store_reader NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'event_store_writer') THEN
		CREATE ROLE event_store_writer NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'event_store_admin') THEN
		CREATE ROLE event_store_admin NOLOGIN;
	END IF;
END
$roles$;

-- A writer can do everything a reader can, an admin everything a writer can.
GRANT event_store_reader TO event_store_writer;
GRANT event_store_writer TO event_store_admin;

REVOKE ALL ON SCHEMA event_store FROM PUBLIC;
GRANT USAGE ON SCHEMA event_store TO event_store_reader;

--------------------------------------------------------------------------
-- Event log
--------------------------------------------------------------------------

-- What every read function returns.
CREATE TYPE event_store.event AS (
	position	bigint,
	stream		text,
	version		bigint,
	type		text,
	data		jsonb,
	metadata	jsonb,
	id			uuid,
	recorded_at	timestamptz
);

-- The category of a stream: the part before its first '-'.
CREATE FUNCTION event_store.category(stream text)
RETURNS text
AS 'MODULE_PATHNAME', 'event_store_category'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The log.  Rows are written only by the C functions below; a row is
-- exactly an event_store.event, so reads return stored rows as they are.
-- Positions are assigned by the feed (src/feed.c), not by a column
-- default, because the feed must know which positions are in flight.
CREATE TABLE event_store.events (
	position	bigint NOT NULL,
	stream		text COLLATE "C" NOT NULL,
	version		bigint NOT NULL,
	type		text NOT NULL,
	data		jsonb NOT NULL,
	metadata	jsonb,
	id			uuid NOT NULL,
	recorded_at	timestamptz NOT NULL,
	CONSTRAINT events_pkey PRIMARY KEY (position),
	CONSTRAINT events_stream_version_key UNIQUE (stream, version),
	CONSTRAINT events_id_key UNIQUE (id)
);
CREATE INDEX events_category_position_idx
	ON event_store.events ((event_store.category(stream)) COLLATE "C", position);

REVOKE ALL ON event_store.events FROM PUBLIC;
GRANT SELECT ON event_store.events TO event_store_reader;

CREATE FUNCTION event_store.append(
	stream text,
	events jsonb,
	expected_version bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_append'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION event_store.append_event(
	stream text,
	type text,
	data jsonb,
	metadata jsonb DEFAULT NULL,
	expected_version bigint DEFAULT NULL,
	id uuid DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_append_event'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION event_store.delete_stream(
	stream text,
	expected_version bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_delete_stream'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION event_store.read_stream(
	stream text,
	from_version bigint DEFAULT 0,
	max_count integer DEFAULT 1000,
	backward boolean DEFAULT false)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_stream'
LANGUAGE C STABLE PARALLEL SAFE ROWS 100;

CREATE FUNCTION event_store.stream_version(stream text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_stream_version'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION event_store.stream_hash(stream text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_stream_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

--------------------------------------------------------------------------
-- Global feed (gap-safe; see src/feed.c)
--------------------------------------------------------------------------

CREATE FUNCTION event_store.read_all(
	from_position bigint DEFAULT 0,
	max_count integer DEFAULT 1000)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_all'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;

CREATE FUNCTION event_store.read_category(
	category text,
	from_position bigint DEFAULT 0,
	max_count integer DEFAULT 1000,
	consumer_group_member integer DEFAULT NULL,
	consumer_group_size integer DEFAULT NULL)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_category'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;

CREATE FUNCTION event_store.feed_head()
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_feed_head'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE FUNCTION event_store.consumer_group_member(stream text, group_size integer)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_consumer_group_member'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The feed, optionally one category, optionally one member of a consumer
-- group: what subscriptions read.  Not granted; the subscription functions
-- call it.
CREATE FUNCTION event_store.read_feed(
	category text,
	from_position bigint,
	max_count integer,
	consumer_group_member integer,
	consumer_group_size integer)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_feed'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 100;

--------------------------------------------------------------------------
-- Durable subscriptions
--------------------------------------------------------------------------

CREATE TABLE event_store.subscriptions (
	name		text COLLATE "C" PRIMARY KEY,
	category	text COLLATE "C",	-- NULL: the whole feed
	group_size	integer NOT NULL CHECK (group_size >= 1),
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- One checkpoint per member of the subscription's consumer group: the
-- last position the member acknowledged (0: none yet).
CREATE TABLE event_store.subscription_checkpoints (
	subscription text COLLATE "C" NOT NULL
		REFERENCES event_store.subscriptions (name) ON DELETE CASCADE,
	member		integer NOT NULL,
	position	bigint NOT NULL CHECK (position >= 0),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (subscription, member)
);

REVOKE ALL ON event_store.subscriptions, event_store.subscription_checkpoints
	FROM PUBLIC;

-- Raise the contract's error for a bad subscription name.
CREATE FUNCTION event_store.check_subscription_name(subscription text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF subscription IS NULL THEN
		RAISE EXCEPTION 'subscription name must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF octet_length(subscription) > 47 THEN
		RAISE EXCEPTION 'subscription name "%..." is too long', left(subscription, 32)
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = format('Subscription names are at most 47 bytes; this one has %s.',
								  octet_length(subscription));
	END IF;
	IF subscription !~ '^[a-z][a-z0-9_]*$' THEN
		RAISE EXCEPTION 'invalid subscription name "%"', subscription
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use lower-case letters, digits and underscores, starting with a letter.';
	END IF;
END
$$;

-- The subscription's row, or the contract's error when there is none.
CREATE FUNCTION event_store.find_subscription(subscription text)
RETURNS event_store.subscriptions
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_row event_store.subscriptions;
BEGIN
	PERFORM event_store.check_subscription_name(subscription);
	SELECT * INTO found_row FROM event_store.subscriptions AS s
	WHERE s.name = subscription;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" does not exist', subscription
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN found_row;
END
$$;

CREATE FUNCTION event_store.check_member(sub event_store.subscriptions, member integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF member IS NULL THEN
		RAISE EXCEPTION 'member must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF member < 0 OR member >= sub.group_size THEN
		RAISE EXCEPTION 'member % is out of range for subscription "%"', member, sub.name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The subscription has a consumer group of size %s: members 0 to %s.',
								  sub.group_size, sub.group_size - 1);
	END IF;
END
$$;

CREATE FUNCTION event_store.subscription_create(
	subscription text,
	category text DEFAULT NULL,
	group_size integer DEFAULT 1,
	from_position bigint DEFAULT 0)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	checkpoint bigint;
BEGIN
	PERFORM event_store.check_subscription_name(subscription);
	IF octet_length(category) > 1024 THEN
		RAISE EXCEPTION 'category name is too long'
			USING ERRCODE = 'program_limit_exceeded';
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

	-- NULL: only events after the current head.
	checkpoint := CASE WHEN from_position IS NULL THEN event_store.feed_head()
					   ELSE greatest(from_position - 1, 0) END;

	INSERT INTO event_store.subscriptions AS s (name, category, group_size)
	VALUES (subscription, category, group_size)
	ON CONFLICT (name) DO NOTHING;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" already exists', subscription
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO event_store.subscription_checkpoints (subscription, member, position)
	SELECT subscription_create.subscription, m, checkpoint
	FROM generate_series(0, group_size - 1) AS m;
	-- The relay worker announces subscriptions: let it know there is one.
	PERFORM event_store.relay_wake();
END
$$;

CREATE FUNCTION event_store.subscription_drop(subscription text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.find_subscription(subscription);
	DELETE FROM event_store.subscriptions AS s WHERE s.name = subscription;
END
$$;

-- The next events after the member's checkpoint, in position order.
-- Reading does not move the checkpoint: subscription_ack does.
CREATE FUNCTION event_store.subscription_fetch(
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
BEGIN
	PERFORM event_store.check_member(sub, member);
	SELECT c.position INTO checkpoint FROM event_store.subscription_checkpoints AS c
	WHERE c.subscription = sub.name AND c.member = subscription_fetch.member;
	RETURN QUERY SELECT * FROM event_store.read_feed(sub.category, checkpoint + 1,
		max_count, member, sub.group_size);
END
$$;

-- Record that the member has processed everything up to up_to_position.
-- A position below the checkpoint changes nothing (a late or repeated ack);
-- one beyond the feed head is refused, since events may still commit
-- below it.  Returns the member's checkpoint.
CREATE FUNCTION event_store.subscription_ack(
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
	UPDATE event_store.subscription_checkpoints AS c
	SET position = greatest(c.position, up_to_position), updated_at = now()
	WHERE c.subscription = sub.name AND c.member = subscription_ack.member
	RETURNING c.position INTO checkpoint;
	RETURN checkpoint;
END
$$;

-- Move every member's checkpoint so that the next fetch starts at
-- from_position (replay, or skip ahead).
CREATE FUNCTION event_store.subscription_reset(
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
	UPDATE event_store.subscription_checkpoints AS c
	SET position = greatest(from_position - 1, 0), updated_at = now()
	WHERE c.subscription = sub.name;
END
$$;

-- Where each member of each subscription stands.
CREATE VIEW event_store.subscription_lag AS
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
CROSS JOIN (SELECT event_store.feed_head() AS head) AS h
CROSS JOIN LATERAL (
	SELECT count(*) AS events, min(e.recorded_at) AS oldest
	FROM event_store.events AS e
	WHERE e.position > c.position AND e.position <= h.head
	  AND (s.category IS NULL OR event_store.category(e.stream) = s.category)
	  AND (s.group_size = 1 OR
		   event_store.consumer_group_member(e.stream, s.group_size) = c.member)
) AS pending;

REVOKE ALL ON event_store.subscription_lag FROM PUBLIC;
GRANT SELECT ON event_store.subscription_lag TO event_store_reader;

--------------------------------------------------------------------------
-- Outbox
--------------------------------------------------------------------------

-- What outbox_claim returns.
CREATE TYPE event_store.outbox_message AS (
	id			bigint,
	topic		text,
	key			text,
	payload		jsonb,
	headers		jsonb,
	attempts	integer,
	created_at	timestamptz,
	receipt		uuid
);

-- Ids are handed out in send order, one at a time (no per-session cache,
-- which would let a later send get a lower id than an earlier one).
CREATE SEQUENCE event_store.outbox_id_seq AS bigint NO CYCLE;

-- The queue.  A message is available when available_at has passed; a claim
-- sets receipt and pushes available_at to the end of the lease; ack deletes
-- the row.  The columns a claim changes are not indexed, so claims are HOT
-- updates, and the free space left by fillfactor keeps them on the page.
-- Autovacuum is told to clean it often: it is a queue, its dead rows are
-- its whole churn.
CREATE TABLE event_store.outbox (
	id			bigint PRIMARY KEY,
	topic		text COLLATE "C" NOT NULL,
	key			text COLLATE "C",
	payload		jsonb NOT NULL,
	headers		jsonb,
	attempts	integer NOT NULL DEFAULT 0,
	created_at	timestamptz NOT NULL,
	available_at timestamptz NOT NULL,
	receipt		uuid,
	last_error	text
) WITH (fillfactor = 70,
		autovacuum_vacuum_scale_factor = 0,
		autovacuum_vacuum_threshold = 1000,
		autovacuum_vacuum_insert_scale_factor = 0,
		autovacuum_vacuum_insert_threshold = 1000,
		autovacuum_vacuum_cost_delay = 0);
-- Claims scan a topic in id order.  The second column is id + 0, not id,
-- so that this index serves claims only and every lookup by id takes the
-- primary key: planned on the statistics of a mostly empty queue (many
-- pages, few rows), a lookup could otherwise scan this whole index.
CREATE INDEX outbox_topic_id_idx ON event_store.outbox (topic, (id + 0));
-- Per-key order: is there an earlier message with the same key?
CREATE INDEX outbox_topic_key_id_idx ON event_store.outbox (topic, key, id)
	WHERE key IS NOT NULL;

-- Messages that used up their attempts.
CREATE TABLE event_store.outbox_dead_letters (
	id			bigint PRIMARY KEY,
	topic		text COLLATE "C" NOT NULL,
	key			text COLLATE "C",
	payload		jsonb NOT NULL,
	headers		jsonb,
	attempts	integer NOT NULL,
	created_at	timestamptz NOT NULL,
	last_error	text,
	died_at		timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_dead_letters_topic_idx
	ON event_store.outbox_dead_letters (topic, id);

-- Per-topic settings; a topic without a row uses the defaults.
CREATE TABLE event_store.outbox_topics (
	topic		text COLLATE "C" PRIMARY KEY,
	max_attempts integer NOT NULL DEFAULT 10 CHECK (max_attempts >= 1),
	backoff_base interval NOT NULL DEFAULT '1 second'
		CHECK (backoff_base > '0'::interval),
	backoff_max	interval NOT NULL DEFAULT '1 hour'
		CHECK (backoff_max > '0'::interval),
	lease		interval NOT NULL DEFAULT '30 seconds'
		CHECK (lease > '0'::interval)
);

-- Routes from the event log to the outbox: append enqueues a message to
-- topic for each event whose category (NULL: any) and type (NULL: any)
-- match.  Cached by every backend; the trigger below tells them to reload.
CREATE TABLE event_store.event_routes (
	category	text COLLATE "C",
	event_type	text COLLATE "C",
	topic		text COLLATE "C" NOT NULL,
	created_at	timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX event_routes_key
	ON event_store.event_routes (coalesce(category, ''), coalesce(event_type, ''), topic);

CREATE FUNCTION event_store.event_routes_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'event_store_event_routes_changed'
LANGUAGE C;

CREATE TRIGGER event_routes_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_store.event_routes
	FOR EACH STATEMENT EXECUTE FUNCTION event_store.event_routes_changed();

REVOKE ALL ON event_store.outbox, event_store.outbox_dead_letters,
	event_store.outbox_topics, event_store.event_routes,
	event_store.outbox_id_seq FROM PUBLIC;
GRANT SELECT ON event_store.outbox_dead_letters, event_store.outbox_topics,
	event_store.event_routes TO event_store_admin;

-- A fresh claim receipt for a message id (used by outbox_claim).
CREATE FUNCTION event_store.outbox_new_receipt(id bigint)
RETURNS uuid
AS 'MODULE_PATHNAME', 'event_store_outbox_new_receipt'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

CREATE FUNCTION event_store.outbox_send(
	topic text,
	payload jsonb,
	key text DEFAULT NULL,
	headers jsonb DEFAULT NULL,
	delay interval DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_outbox_send'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- The consumer functions read and change the outbox as the extension's
-- owner: consumers need no privilege on the tables.  Their statements keep
-- one plan per session (src/plans.c), which must not depend on the
-- outbox's statistics: a queue has few live rows and many dead ones, and a
-- plan made while it looked empty would scan it whole on every call, or
-- read a whole topic through a bitmap and sort it to claim ten messages, so
-- sequential and bitmap scans are off.  JIT is off too: the statements are
-- short, and a plan's cost estimate could make it compile them on every call.
CREATE FUNCTION event_store.outbox_claim(
	topic text,
	max_count integer DEFAULT 100,
	lease interval DEFAULT '30 seconds')
RETURNS SETOF event_store.outbox_message
AS 'MODULE_PATHNAME', 'event_store_outbox_claim'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off
ROWS 100;

CREATE FUNCTION event_store.outbox_ack(receipts uuid[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

CREATE FUNCTION event_store.outbox_ack(ids bigint[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_ids'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

CREATE FUNCTION event_store.outbox_nack(
	receipts uuid[],
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

-- Raise the contract's error for a bad topic name.
CREATE FUNCTION event_store.check_topic(topic text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF topic IS NULL THEN
		RAISE EXCEPTION 'topic must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF topic = '' THEN
		RAISE EXCEPTION 'topic must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF octet_length(topic) > 255 THEN
		RAISE EXCEPTION 'topic "%..." is too long', left(topic, 32)
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = format('Topics are at most 255 bytes; this one has %s.', octet_length(topic));
	END IF;
END
$$;

-- Per-topic settings; NULL keeps the current value (or the default).
CREATE FUNCTION event_store.outbox_configure(
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
	INSERT INTO event_store.outbox_topics AS t (topic) VALUES (topic)
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

-- Put dead letters back in the queue, with their attempts reset.  They keep
-- their ids, so they come before later messages of the same key.
CREATE FUNCTION event_store.outbox_redrive(ids bigint[])
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

CREATE FUNCTION event_store.outbox_redrive_topic(topic text)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.check_topic(topic);
	RETURN event_store.outbox_redrive(ARRAY(
		SELECT d.id FROM event_store.outbox_dead_letters AS d
		WHERE d.topic = outbox_redrive_topic.topic));
END
$$;

CREATE FUNCTION event_store.outbox_purge_dead_letters(ids bigint[])
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged integer;
BEGIN
	IF ids IS NULL THEN
		RAISE EXCEPTION 'ids must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM event_store.outbox_dead_letters AS d WHERE d.id = ANY (ids);
	GET DIAGNOSTICS purged = ROW_COUNT;
	RETURN purged;
END
$$;

CREATE FUNCTION event_store.route_events(
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
	INSERT INTO event_store.event_routes AS r (category, event_type, topic)
	VALUES (category, event_type, topic)
	ON CONFLICT DO NOTHING;
	RETURN FOUND;
END
$$;

CREATE FUNCTION event_store.unroute_events(
	topic text,
	category text DEFAULT NULL,
	event_type text DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.check_topic(topic);
	DELETE FROM event_store.event_routes AS r
	WHERE r.topic = unroute_events.topic
	  AND r.category IS NOT DISTINCT FROM unroute_events.category
	  AND r.event_type IS NOT DISTINCT FROM unroute_events.event_type;
	RETURN FOUND;
END
$$;

-- Depth of the outbox per topic: available (claimable now), blocked
-- (available, but behind an earlier message of the same key), leased,
-- delayed (by send or by a retry), dead.
CREATE VIEW event_store.outbox_depth AS
WITH messages AS (
	SELECT o.topic, o.available_at, o.created_at,
		   o.available_at <= now() AS due,
		   o.receipt IS NOT NULL AS leased,
		   o.key IS NOT NULL AND EXISTS (
			   SELECT FROM event_store.outbox AS earlier
			   WHERE earlier.topic = o.topic AND earlier.key = o.key AND earlier.id < o.id) AS blocked
	FROM event_store.outbox AS o
), topics AS (
	SELECT topic FROM messages
	UNION
	SELECT topic FROM event_store.outbox_dead_letters
)
SELECT t.topic,
	   count(m.topic) FILTER (WHERE m.due AND NOT m.blocked) AS available,
	   count(m.topic) FILTER (WHERE m.due AND m.blocked) AS blocked,
	   count(m.topic) FILTER (WHERE NOT m.due AND m.leased) AS leased,
	   count(m.topic) FILTER (WHERE NOT m.due AND NOT m.leased) AS delayed,
	   (SELECT count(*) FROM event_store.outbox_dead_letters AS d WHERE d.topic = t.topic) AS dead,
	   now() - min(m.available_at) FILTER (WHERE m.due AND NOT m.blocked) AS oldest_available_age,
	   now() - min(m.created_at) AS oldest_message_age
FROM topics AS t
LEFT JOIN messages AS m ON m.topic = t.topic
GROUP BY t.topic;

REVOKE ALL ON event_store.outbox_depth FROM PUBLIC;
GRANT SELECT ON event_store.outbox_depth TO event_store_reader;

--------------------------------------------------------------------------
-- Relay: background workers publishing the outbox (src/relay.c)
--------------------------------------------------------------------------

-- The role whose privileges the relay workers use (event_store.relay_role
-- names it, or another role that is a member of it).
DO $relay_role$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'event_store_relay') THEN
		CREATE ROLE event_store_relay NOLOGIN;
	END IF;
END
$relay_role$;

-- Which topic goes to which sink.  One sink per topic.
CREATE TABLE event_store.relay_routes (
	topic		text COLLATE "C" PRIMARY KEY,
	sink		text NOT NULL,
	paused		boolean NOT NULL DEFAULT false,
	created_at	timestamptz NOT NULL DEFAULT now()
);

-- Relayed messages too large for NOTIFY: the listener gets a reference and
-- reads the message with relay_fetch until event_store.relay_reference_ttl.
CREATE TABLE event_store.relay_parked (
	id			bigint PRIMARY KEY,
	topic		text COLLATE "C" NOT NULL,
	key			text COLLATE "C",
	payload		jsonb NOT NULL,
	headers		jsonb,
	created_at	timestamptz NOT NULL,
	parked_at	timestamptz NOT NULL
);
CREATE INDEX relay_parked_parked_at_idx ON event_store.relay_parked (parked_at);

REVOKE ALL ON event_store.relay_routes, event_store.relay_parked FROM PUBLIC;
GRANT SELECT ON event_store.relay_routes TO event_store_admin;
GRANT USAGE ON SCHEMA event_store TO event_store_relay;
GRANT SELECT, UPDATE, DELETE ON event_store.outbox TO event_store_relay;
GRANT SELECT, INSERT, DELETE ON event_store.relay_parked TO event_store_relay;
GRANT SELECT ON event_store.relay_routes, event_store.subscriptions,
	event_store.events TO event_store_relay;
GRANT EXECUTE ON FUNCTION event_store.category(text) TO event_store_relay;
-- Failed messages go through their topic's backoff to the dead letters.
GRANT SELECT ON event_store.outbox_topics TO event_store_relay;
GRANT INSERT ON event_store.outbox_dead_letters TO event_store_relay;

CREATE FUNCTION event_store.relay_available()
RETURNS boolean
AS 'MODULE_PATHNAME', 'event_store_relay_available'
LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION event_store.relay_start()
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_relay_start'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_store.relay_wake()
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_relay_wake'
LANGUAGE C VOLATILE;

-- Warn when no relay worker can serve this database now (library not
-- preloaded, launcher not running, no background worker slot free).
CREATE FUNCTION event_store.relay_check()
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_relay_check'
LANGUAGE C VOLATILE;

-- Route a topic to a sink: notify:<channel> (LISTEN/NOTIFY).  Replaces the
-- topic's previous sink.
CREATE FUNCTION event_store.relay_route(topic text, sink text)
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

CREATE FUNCTION event_store.relay_unroute(topic text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.check_topic(topic);
	DELETE FROM event_store.relay_routes AS r WHERE r.topic = relay_unroute.topic;
	RETURN FOUND;
END
$$;

-- Pause or resume the relay of a topic; while paused, its messages wait in
-- the outbox.
CREATE FUNCTION event_store.relay_set_paused(topic text, paused boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.check_topic(topic);
	IF paused IS NULL THEN
		RAISE EXCEPTION 'paused must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	UPDATE event_store.relay_routes AS r SET paused = relay_set_paused.paused
	WHERE r.topic = relay_set_paused.topic;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'topic "%" has no relay route', topic USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT paused THEN
		PERFORM event_store.relay_wake();
	END IF;
	RETURN true;
END
$$;

CREATE FUNCTION event_store.relay_pause(topic text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT event_store.relay_set_paused(topic, true) $$;

CREATE FUNCTION event_store.relay_resume(topic text)
RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT event_store.relay_set_paused(topic, false) $$;

-- A relayed message that was too large for NOTIFY, by the id its reference
-- carries; NULL once it is past event_store.relay_reference_ttl.
CREATE FUNCTION event_store.relay_fetch(id bigint)
RETURNS event_store.outbox_message
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT p.id, p.topic, p.key, p.payload, p.headers, 1, p.created_at, NULL::uuid
	FROM event_store.relay_parked AS p WHERE p.id = relay_fetch.id
$$;

CREATE FUNCTION event_store.relay_worker_status(
	OUT kind text,
	OUT database text,
	OUT pid integer,
	OUT state text,
	OUT started_at timestamptz,
	OUT last_batch_at timestamptz,
	OUT last_batch_size integer,
	OUT messages_relayed bigint,
	OUT batches bigint,
	OUT feed_notifications bigint,
	OUT last_error text,
	OUT last_error_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'event_store_relay_worker_status'
LANGUAGE C VOLATILE;

-- The launcher, and this database's relay: its worker (if one runs now),
-- its state (running, idle, no worker, waiting for a worker, starting,
-- error, failed, stopping) and counters.  Other databases are not shown.
CREATE VIEW event_store.relay_workers AS
SELECT * FROM event_store.relay_worker_status();

REVOKE ALL ON event_store.relay_workers FROM PUBLIC;
GRANT SELECT ON event_store.relay_workers TO event_store_reader;

--------------------------------------------------------------------------
-- Observability of the event log.  The feed's status is cheap (two index
-- probes and a range scan above the head); streams and categories read the
-- whole table unless filtered by stream (or category): for inspection,
-- not for a tight monitoring loop.
--------------------------------------------------------------------------

-- The feed: its safe head, the last position visible to the caller, and how
-- many committed events wait above the head for a transaction that may
-- still commit below them.
CREATE VIEW event_store.feed_status AS
SELECT h.head,
	   (SELECT max(e.position) FROM event_store.events AS e) AS last_position,
	   (SELECT count(*) FROM event_store.events AS e
		WHERE e.position > h.head) AS held_back_events
FROM (SELECT event_store.feed_head() AS head) AS h;

-- One row per stream.
CREATE VIEW event_store.streams AS
SELECT e.stream,
	   event_store.category(e.stream) AS category,
	   max(e.version) AS version,
	   count(*) AS events,
	   max(e.position) AS last_position,
	   max(e.recorded_at) AS last_recorded_at,
	   bool_or(e.type = '$stream_deleted') AS deleted
FROM event_store.events AS e
GROUP BY e.stream;

-- One row per category.
CREATE VIEW event_store.categories AS
SELECT event_store.category(e.stream) AS category,
	   count(DISTINCT e.stream) AS streams,
	   count(*) AS events,
	   max(e.position) AS last_position,
	   max(e.recorded_at) AS last_recorded_at
FROM event_store.events AS e
GROUP BY event_store.category(e.stream);

REVOKE ALL ON event_store.feed_status, event_store.streams, event_store.categories
	FROM PUBLIC;
GRANT SELECT ON event_store.feed_status, event_store.streams, event_store.categories
	TO event_store_reader;

--------------------------------------------------------------------------
-- Privileges.  Functions are executable by PUBLIC by default; take that
-- away from everything the extension creates, then grant per role.
--------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA event_store FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	event_store.read_stream(text, bigint, integer, boolean),
	event_store.stream_version(text),
	event_store.category(text),
	event_store.stream_hash(text),
	event_store.read_all(bigint, integer),
	event_store.read_category(text, bigint, integer, integer, integer),
	event_store.feed_head(),
	event_store.consumer_group_member(text, integer),
	event_store.subscription_fetch(text, integer, integer),
	event_store.subscription_ack(text, bigint, integer),
	event_store.relay_fetch(bigint),
	event_store.relay_worker_status(),
	event_store.relay_available()
TO event_store_reader;

GRANT EXECUTE ON FUNCTION
	event_store.append(text, jsonb, bigint),
	event_store.append_event(text, text, jsonb, jsonb, bigint, uuid),
	event_store.outbox_send(text, jsonb, text, jsonb, interval),
	event_store.outbox_claim(text, integer, interval),
	event_store.outbox_ack(uuid[]),
	event_store.outbox_nack(uuid[], interval, text)
TO event_store_writer;

GRANT EXECUTE ON FUNCTION
	event_store.delete_stream(text, bigint),
	event_store.subscription_create(text, text, integer, bigint),
	event_store.subscription_drop(text),
	event_store.subscription_reset(text, bigint),
	event_store.outbox_ack(bigint[]),
	event_store.outbox_nack(bigint[], interval, text),
	event_store.outbox_configure(text, integer, interval, interval, interval),
	event_store.outbox_redrive(bigint[]),
	event_store.outbox_redrive_topic(text),
	event_store.outbox_purge_dead_letters(bigint[]),
	event_store.route_events(text, text, text),
	event_store.unroute_events(text, text, text),
	event_store.relay_route(text, text),
	event_store.relay_unroute(text),
	event_store.relay_pause(text),
	event_store.relay_resume(text)
TO event_store_admin;

-- The relay wakes consumer group members for their own streams.
GRANT EXECUTE ON FUNCTION event_store.consumer_group_member(text, integer)
	TO event_store_relay;

-- The launcher starts this database's relay worker once the extension is
-- committed.
SELECT event_store.relay_start();
