-- event_store: an event store and transactional outbox inside PostgreSQL.
--
-- This file is the source of the install script event_store--<version>.sql.
-- Every object lives in schema event_store (created by CREATE EXTENSION from
-- the control file) and is named with its schema.

\echo Use "CREATE EXTENSION event_store" to load this file. \quit

--------------------------------------------------------------------------
-- The schema.  The SECURITY DEFINER functions below run as the superuser
-- who installs the extension and reach its objects through this schema:
-- whoever owns it, or may create objects in it, could put their own code
-- in their way.  CREATE EXTENSION creates the schema, owned by that
-- superuser; it also accepts one that exists already (pg_restore creates
-- it first), and then it must be just as safe.
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

-- The durable high-water mark of positions (src/feed.c): no position above
-- its value has ever been handed out, and the feed never hands out one at
-- or below it again.  Raised ahead of use by the C functions, logged and
-- flushed before the positions it covers are used, so it survives crashes,
-- restarts, failover and pg_dump.  Not a source of positions itself.
CREATE SEQUENCE event_store.position_high_water AS bigint
	MINVALUE 0 START WITH 0 NO CYCLE;
REVOKE ALL ON event_store.position_high_water FROM PUBLIC;

-- Rows written into the log by a statement (pg_restore's COPY, an INSERT by
-- an administrator), not by append: the feed reads its counter again.
CREATE FUNCTION event_store.events_loaded()
RETURNS trigger
AS 'MODULE_PATHNAME', 'event_store_events_loaded'
LANGUAGE C;

CREATE TRIGGER events_loaded
	AFTER INSERT ON event_store.events
	FOR EACH STATEMENT EXECUTE FUNCTION event_store.events_loaded();

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
	from_version bigint DEFAULT NULL,
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

-- Where the feed can be read: 'primary', 'standby' (a hot standby) or
-- 'logical replica' (the events table is a subscription's target); feed
-- reads work only on the primary (src/replica.c).
CREATE FUNCTION event_store.feed_state()
RETURNS text
AS 'MODULE_PATHNAME', 'event_store_feed_state'
LANGUAGE C STABLE PARALLEL RESTRICTED;

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
-- last position the member acknowledged (0: none yet).  The fence is new
-- at creation and at every reset: acknowledgements of what a session
-- fetched under another fence are not applied (src/subscription.c).  No
-- foreign key to subscriptions: a parallel pg_restore loads the two tables
-- in any order (the subscription functions keep them consistent, and the
-- trigger below removes a subscription's checkpoints with it).
CREATE TABLE event_store.subscription_checkpoints (
	subscription text COLLATE "C" NOT NULL,
	member		integer NOT NULL,
	position	bigint NOT NULL CHECK (position >= 0),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	fence		uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
	PRIMARY KEY (subscription, member)
);

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

CREATE TRIGGER subscription_deleted
	AFTER DELETE ON event_store.subscriptions
	FOR EACH ROW EXECUTE FUNCTION event_store.subscription_deleted();

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

CREATE FUNCTION event_store.subscription_drop(subscription text)
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

-- Per-topic settings; a topic without a row uses the defaults, which
-- outbox_topic_settings below holds.
CREATE TABLE event_store.outbox_topics (
	topic		text COLLATE "C" PRIMARY KEY,
	max_attempts integer NOT NULL CHECK (max_attempts >= 1),
	backoff_base interval NOT NULL CHECK (backoff_base > '0'::interval),
	backoff_max	interval NOT NULL CHECK (backoff_max > '0'::interval),
	lease		interval NOT NULL CHECK (lease > '0'::interval)
);

-- The settings in effect for a topic: its row, or the defaults.  The one
-- place the defaults are written: outbox_configure, claims and nacks all
-- read them here.  (A single SELECT in SQL, so the planner inlines it into
-- the statements that use it.)
CREATE FUNCTION event_store.outbox_topic_settings(topic text)
RETURNS SETOF event_store.outbox_topics
LANGUAGE sql STABLE PARALLEL SAFE ROWS 1
AS $$
	SELECT t.* FROM event_store.outbox_topics AS t WHERE t.topic = $1
	UNION ALL
	SELECT $1, 10, interval '1 second', interval '1 hour', interval '30 seconds'
	WHERE NOT EXISTS (SELECT FROM event_store.outbox_topics AS t WHERE t.topic = $1)
$$;

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
--
-- A claim's lease (NULL: the topic's) runs from when outbox_claim returns:
-- see src/outbox.c.
CREATE FUNCTION event_store.outbox_claim(
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

-- Acknowledgement by receipt, the consumers' form.  The receipts come as
-- uuid[], as text[] (a driver's list of strings), or as text: an array
-- literal, which is also what an untyped literal, an untyped parameter and
-- NULL resolve to (a string type wins over arrays), so every driver finds
-- exactly one function.
CREATE FUNCTION event_store.outbox_ack(receipts uuid[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

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

-- Acknowledgement by message id, unfenced: for operators.
CREATE FUNCTION event_store.outbox_ack_ids(ids bigint[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_ids'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

-- Negative acknowledgement by receipt, in the same three forms as
-- outbox_ack.
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

-- Negative acknowledgement by message id, unfenced: for operators.
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

-- Raise the contract's error for a category that no stream can be in: an
-- empty one, or one with a '-' (a category is the part of a stream name
-- before its first '-').  NULL passes: it stands for every category.
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

-- The feed: its safe head, the last position visible to the caller, how
-- many committed events wait above the head for a transaction that may
-- still commit below them, and where the feed can be read (feed_state):
-- on a standby or a logical replica the head and what depends on it are
-- NULL.
CREATE VIEW event_store.feed_status AS
SELECT h.head,
	   (SELECT max(e.position) FROM event_store.events AS e) AS last_position,
	   CASE WHEN h.head IS NOT NULL THEN
		   (SELECT count(*) FROM event_store.events AS e
			WHERE e.position > h.head) END AS held_back_events,
	   h.state
FROM (SELECT st.state,
			 CASE WHEN st.state = 'primary' THEN event_store.feed_head() END AS head
	  FROM (SELECT event_store.feed_state() AS state) AS st) AS h;

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
-- Backups.  pg_dump saves the rows of these tables and the values of these
-- sequences (an extension's own tables are otherwise left out of a dump).
-- Not saved: event_store.relay_parked, copies of messages already relayed
-- that expire within event_store.relay_reference_ttl.  README.md, "Backup
-- and restore", says what a restore brings back.
--------------------------------------------------------------------------
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
	event_store.feed_state(),
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
	event_store.outbox_ack(text[]),
	event_store.outbox_ack(text),
	event_store.outbox_nack(uuid[], interval, text),
	event_store.outbox_nack(text[], interval, text),
	event_store.outbox_nack(text, interval, text)
TO event_store_writer;

GRANT EXECUTE ON FUNCTION
	event_store.delete_stream(text, bigint),
	event_store.subscription_create(text, text, integer, bigint, boolean),
	event_store.subscription_drop(text),
	event_store.subscription_reset(text, bigint),
	event_store.outbox_ack_ids(bigint[]),
	event_store.outbox_nack_ids(bigint[], interval, text),
	event_store.outbox_configure(text, integer, interval, interval, interval),
	event_store.outbox_topic_settings(text),
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
