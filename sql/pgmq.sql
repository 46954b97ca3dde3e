-- event_store_pgmq: pgmq 1.x's SQL API on the event store's outbox.
--
-- This file is the source of the install script event_store_pgmq--<version>.sql.
-- Schema pgmq holds the functions and types pgmq's clients call, with
-- pgmq's names, signatures and results.  A queue is an outbox topic of
-- the same name; its messages are outbox messages: msg_id is the outbox
-- id, read_ct the attempts, enqueued_at the created_at, vt the end of the
-- lease, and the header x-pgmq-group the message key (so a group is
-- delivered in order).  Reads are outbox claims, deletes are
-- acknowledgements.  Queues are listed in pgmq.meta; archived messages are
-- kept in pgmq.archived_messages.
--
-- pgmq's API addresses messages by id, not by receipt: deletes, archives
-- and set_vt are not fenced (use the outbox API for fenced acks).  They
-- run as the extension's owner, since the outbox has no by-id API for
-- writers; they touch only messages of queues listed in pgmq.meta.

\echo Use "CREATE EXTENSION event_store_pgmq" to load this file. \quit

--------------------------------------------------------------------------
-- The schema.  The SECURITY DEFINER functions below run as the superuser
-- who installs the extension: a role that is not a superuser must not own
-- the schema or be able to create objects in it.
--------------------------------------------------------------------------
DO $schema$
DECLARE
	owner_is_superuser boolean;
	creator text;
BEGIN
	SELECT r.rolsuper INTO owner_is_superuser
	FROM pg_catalog.pg_namespace AS n
	JOIN pg_catalog.pg_roles AS r ON r.oid = n.nspowner
	WHERE n.nspname = 'pgmq';

	IF NOT owner_is_superuser THEN
		RAISE EXCEPTION 'schema "pgmq" is owned by a role that is not a superuser'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The extension''s functions run with superuser privileges and find their objects in this schema: its owner could replace them.',
				  HINT = 'Drop schema "pgmq" and run CREATE EXTENSION again (it creates the schema), or make a superuser its owner.';
	END IF;
	SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'
								  ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
	INTO creator
	FROM pg_catalog.pg_namespace AS n,
		 LATERAL pg_catalog.aclexplode(n.nspacl) AS a
	LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
	WHERE n.nspname = 'pgmq' AND a.privilege_type = 'CREATE'
	  AND NOT coalesce(r.rolsuper, false);
	IF creator IS NOT NULL THEN
		RAISE EXCEPTION 'schema "pgmq" grants CREATE to roles that are not superusers: %', creator
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Revoke CREATE on schema "pgmq" from them and run CREATE EXTENSION again.';
	END IF;
END
$schema$;

REVOKE ALL ON SCHEMA pgmq FROM PUBLIC;
GRANT USAGE ON SCHEMA pgmq TO event_store_reader;

--------------------------------------------------------------------------
-- Queues and archives
--------------------------------------------------------------------------

-- The queues, as pgmq lists them.  is_unlogged is recorded as asked;
-- the messages themselves are always logged (they are outbox rows).
CREATE TABLE pgmq.meta (
	queue_name		varchar UNIQUE NOT NULL,
	is_partitioned	boolean NOT NULL,
	is_unlogged		boolean NOT NULL,
	created_at		timestamptz DEFAULT now() NOT NULL
);

-- Archived messages of every queue (pgmq keeps one table per queue).
CREATE TABLE pgmq.archived_messages (
	queue_name	varchar NOT NULL,
	msg_id		bigint PRIMARY KEY,
	read_ct		integer NOT NULL,
	enqueued_at	timestamptz NOT NULL,
	archived_at	timestamptz NOT NULL DEFAULT now(),
	vt			timestamptz NOT NULL,
	message		jsonb,
	headers		jsonb
);
CREATE INDEX archived_messages_queue_idx ON pgmq.archived_messages (queue_name, msg_id);

-- pg_dump carries the rows (the queues' messages are the outbox's).
SELECT pg_catalog.pg_extension_config_dump('pgmq.meta', '');
SELECT pg_catalog.pg_extension_config_dump('pgmq.archived_messages', '');

REVOKE ALL ON pgmq.meta, pgmq.archived_messages FROM PUBLIC;
GRANT SELECT ON pgmq.meta TO event_store_reader;
-- Archived messages keep their payloads: those who may read messages
-- (writers, who read queues) may read them, not readers, who may not read
-- the outbox either.
GRANT SELECT ON pgmq.archived_messages TO event_store_writer;

CREATE TYPE pgmq.message_record AS (
	msg_id		bigint,
	read_ct		integer,
	enqueued_at	timestamptz,
	vt			timestamptz,
	message		jsonb,
	headers		jsonb
);

CREATE TYPE pgmq.queue_record AS (
	queue_name		varchar,
	is_partitioned	boolean,
	is_unlogged		boolean,
	created_at		timestamptz
);

CREATE TYPE pgmq.metrics_result AS (
	queue_name				text,
	queue_length			bigint,
	newest_msg_age_sec		integer,
	oldest_msg_age_sec		integer,
	total_messages			bigint,
	scrape_time				timestamptz,
	queue_visible_length	bigint
);

--------------------------------------------------------------------------
-- Helpers
--------------------------------------------------------------------------

-- pgmq's limit (it builds table names from queue names).
CREATE FUNCTION pgmq.validate_queue_name(queue_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF pg_catalog.length(queue_name) > 47 THEN
		RAISE EXCEPTION 'queue name is too long, maximum length is 47 characters';
	END IF;
END
$$;

-- A queue that does not exist: pgmq finds no table (42P01).
CREATE FUNCTION pgmq._check_queue(queue_name text)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pgmq.meta AS m WHERE m.queue_name = _check_queue.queue_name) THEN
		RAISE EXCEPTION 'queue "%" does not exist', queue_name
			USING ERRCODE = 'undefined_table',
				  HINT = 'Create it with pgmq.create().';
	END IF;
END
$$;

-- pgmq filters reads by a JSON containment condition; claims take
-- messages in order and cannot skip some.
CREATE FUNCTION pgmq._check_conditional(conditional jsonb)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF conditional IS NOT NULL AND conditional <> '{}'::jsonb THEN
		RAISE EXCEPTION 'conditional reads are not supported'
			USING ERRCODE = 'feature_not_supported',
				  HINT = 'Read with conditional => ''{}'' and filter in the consumer, or use one queue per kind of message.';
	END IF;
END
$$;

-- A visibility timeout in seconds as a lease: a claim's lease must be
-- positive, and pgmq's vt 0 (visible again at once) is the shortest one.
CREATE FUNCTION pgmq._lease(vt integer)
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT greatest(pg_catalog.make_interval(secs => coalesce($1, 0)), interval '1 microsecond') $$;

--------------------------------------------------------------------------
-- Queue management
--------------------------------------------------------------------------

-- The topic's settings: pgmq never gives up on a message (read_ct grows
-- without bound), so its attempts are not limited.  A topic that has
-- settings already keeps them: they are an admin's (outbox_configure), and
-- creating a queue is a writer's.
CREATE FUNCTION pgmq._create(queue_name text, is_unlogged boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM pgmq.validate_queue_name(queue_name);
	PERFORM event_store.check_topic(queue_name);
	INSERT INTO pgmq.meta (queue_name, is_partitioned, is_unlogged)
	VALUES (_create.queue_name, false, coalesce(_create.is_unlogged, false))
	ON CONFLICT ON CONSTRAINT meta_queue_name_key DO NOTHING;
	IF FOUND AND NOT EXISTS (SELECT FROM event_store.outbox_topics AS t
							 WHERE t.topic = _create.queue_name) THEN
		PERFORM event_store.outbox_configure(queue_name, max_attempts => 2147483647);
	END IF;
END
$$;

CREATE FUNCTION pgmq."create"(queue_name text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pgmq._create($1, false) $$;

CREATE FUNCTION pgmq.create_non_partitioned(queue_name text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pgmq._create($1, false) $$;

CREATE FUNCTION pgmq.create_unlogged(queue_name text)
RETURNS void
LANGUAGE sql VOLATILE
AS $$ SELECT pgmq._create($1, true) $$;

CREATE FUNCTION pgmq.drop_queue(queue_name text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
	DELETE FROM pgmq.meta AS m WHERE m.queue_name = drop_queue.queue_name;
	IF NOT FOUND THEN
		RAISE NOTICE 'pgmq queue `%` does not exist', queue_name;
		RETURN false;
	END IF;
	PERFORM event_store.outbox_ack_ids(ARRAY(
		SELECT o.id FROM event_store.outbox AS o WHERE o.topic = drop_queue.queue_name
		ORDER BY o.id FOR UPDATE));
	DELETE FROM pgmq.archived_messages AS a WHERE a.queue_name = drop_queue.queue_name;
	DELETE FROM event_store.outbox_topics AS t WHERE t.topic = drop_queue.queue_name;
	RETURN true;
END
$$;

CREATE FUNCTION pgmq.drop_queue(queue_name text, partitioned boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	RAISE WARNING 'drop_queue(queue_name, partitioned) is deprecated: use drop_queue(queue_name)';
	RETURN pgmq.drop_queue(queue_name);
END
$$;

CREATE FUNCTION pgmq.list_queues()
RETURNS SETOF pgmq.queue_record
LANGUAGE sql STABLE
AS $$ SELECT m.queue_name, m.is_partitioned, m.is_unlogged, m.created_at FROM pgmq.meta AS m $$;

-- Delete every message of the queue, leased or not; returns how many.
CREATE FUNCTION pgmq.purge_queue(queue_name text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
	PERFORM pgmq._check_queue(queue_name);
	RETURN event_store.outbox_ack_ids(ARRAY(
		SELECT o.id FROM event_store.outbox AS o WHERE o.topic = purge_queue.queue_name
		ORDER BY o.id FOR UPDATE));
END
$$;

-- The archive is a table of this extension, shared by the queues: there
-- is nothing to detach.
CREATE FUNCTION pgmq.detach_archive(queue_name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	PERFORM pgmq._check_queue(queue_name);
END
$$;

--------------------------------------------------------------------------
-- Sending
--------------------------------------------------------------------------

-- Sends are the hot path: plpgsql (its plans are kept for the session)
-- with the checks inline.
CREATE FUNCTION pgmq._send(queue_name text, msg jsonb, headers jsonb, delay interval)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pgmq.meta AS m WHERE m.queue_name = _send.queue_name) THEN
		PERFORM pgmq._check_queue(queue_name);
	END IF;
	RETURN event_store.outbox_send(queue_name, msg, headers OPERATOR(pg_catalog.->>) 'x-pgmq-group',
								   headers, greatest(delay, interval '0'));
END
$$;

CREATE FUNCTION pgmq._send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay interval)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	message_headers jsonb;
BEGIN
	PERFORM pgmq._check_queue(queue_name);
	FOR i IN 1 .. coalesce(pg_catalog.array_length(msgs, 1), 0) LOOP
		message_headers := headers[i];
		RETURN NEXT event_store.outbox_send(queue_name, msgs[i],
											message_headers OPERATOR(pg_catalog.->>) 'x-pgmq-group',
											message_headers, greatest(delay, interval '0'));
	END LOOP;
END
$$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN NEXT pgmq._send(queue_name, msg, NULL, NULL); END $$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN NEXT pgmq._send(queue_name, msg, headers, NULL); END $$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN NEXT pgmq._send(queue_name, msg, NULL, pg_catalog.make_interval(secs => delay)); END $$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN NEXT pgmq._send(queue_name, msg, NULL, delay - pg_catalog.clock_timestamp()); END $$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN NEXT pgmq._send(queue_name, msg, headers, pg_catalog.make_interval(secs => delay)); END $$;

CREATE FUNCTION pgmq.send(queue_name text, msg jsonb, headers jsonb, delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN NEXT pgmq._send(queue_name, msg, headers, delay - pg_catalog.clock_timestamp()); END $$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[])
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._send_batch(queue_name, msgs, NULL, NULL); END $$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[])
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._send_batch(queue_name, msgs, headers, NULL); END $$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._send_batch(queue_name, msgs, NULL, pg_catalog.make_interval(secs => delay)); END $$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._send_batch(queue_name, msgs, NULL, delay - pg_catalog.clock_timestamp()); END $$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay integer)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._send_batch(queue_name, msgs, headers, pg_catalog.make_interval(secs => delay)); END $$;

CREATE FUNCTION pgmq.send_batch(queue_name text, msgs jsonb[], headers jsonb[], delay timestamptz)
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._send_batch(queue_name, msgs, headers, delay - pg_catalog.clock_timestamp()); END $$;

--------------------------------------------------------------------------
-- Reading
--------------------------------------------------------------------------

-- A claim of up to qty messages with a lease of vt seconds.  The vt shown
-- is taken after the claim, so it is no later than the lease's real end.
CREATE FUNCTION pgmq.read(
	queue_name text,
	vt integer,
	qty integer,
	conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql VOLATILE
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM pgmq.meta AS m WHERE m.queue_name = read.queue_name) THEN
		PERFORM pgmq._check_queue(queue_name);
	END IF;
	IF conditional <> '{}'::jsonb THEN
		PERFORM pgmq._check_conditional(conditional);
	END IF;
	RETURN QUERY
	SELECT c.id, c.attempts, c.created_at,
		   pg_catalog.clock_timestamp() + pgmq._lease(read.vt), c.payload, c.headers
	FROM event_store.outbox_claim(queue_name, qty, pgmq._lease(read.vt)) AS c;
END
$$;

CREATE FUNCTION pgmq.read_with_poll(
	queue_name text,
	vt integer,
	qty integer,
	max_poll_seconds integer DEFAULT 5,
	poll_interval_ms integer DEFAULT 100,
	conditional jsonb DEFAULT '{}')
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	stop_at timestamptz := pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => max_poll_seconds);
BEGIN
	LOOP
		RETURN QUERY SELECT * FROM pgmq.read(queue_name, vt, qty, conditional);
		IF FOUND OR pg_catalog.clock_timestamp() >= stop_at THEN
			RETURN;
		END IF;
		-- Never past the end of the polling.
		PERFORM pg_catalog.pg_sleep(least(greatest(poll_interval_ms, 0)::numeric / 1000,
										  extract(epoch FROM stop_at - pg_catalog.clock_timestamp())));
	END LOOP;
END
$$;

-- Read and delete one message.
CREATE FUNCTION pgmq.pop(queue_name text)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	claimed event_store.outbox_message[];
BEGIN
	PERFORM pgmq._check_queue(queue_name);
	claimed := ARRAY(SELECT c FROM event_store.outbox_claim(queue_name, 1) AS c);
	PERFORM event_store.outbox_ack(ARRAY(SELECT c.receipt FROM pg_catalog.unnest(claimed) AS c));
	RETURN QUERY
	SELECT c.id, c.attempts, c.created_at, pg_catalog.clock_timestamp(), c.payload, c.headers
	FROM pg_catalog.unnest(claimed) AS c;
END
$$;

--------------------------------------------------------------------------
-- Deleting, archiving, visibility
--------------------------------------------------------------------------

-- Remove the queue's messages among msg_ids (archiving them first if
-- asked); returns the ids removed.  Locks them first, so that the ids
-- returned are exactly the ones acknowledged.
CREATE FUNCTION pgmq._remove(queue_name text, msg_ids bigint[], archive boolean)
RETURNS SETOF bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
	ids bigint[];
BEGIN
	PERFORM pgmq._check_queue(queue_name);
	ids := ARRAY(SELECT o.id FROM event_store.outbox AS o
				 WHERE o.id = ANY (msg_ids) AND o.topic = _remove.queue_name
				 ORDER BY o.id FOR UPDATE);
	IF archive THEN
		INSERT INTO pgmq.archived_messages (queue_name, msg_id, read_ct, enqueued_at, vt, message, headers)
		SELECT _remove.queue_name, o.id, o.attempts, o.created_at, o.available_at, o.payload, o.headers
		FROM event_store.outbox AS o WHERE o.id = ANY (ids);
	END IF;
	PERFORM event_store.outbox_ack_ids(ids);
	RETURN QUERY SELECT pg_catalog.unnest(ids);
END
$$;

CREATE FUNCTION pgmq.delete(queue_name text, msg_id bigint)
RETURNS boolean LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN EXISTS (SELECT FROM pgmq._remove(queue_name, ARRAY[msg_id], false)); END $$;

CREATE FUNCTION pgmq.delete(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._remove(queue_name, msg_ids, false); END $$;

CREATE FUNCTION pgmq.archive(queue_name text, msg_id bigint)
RETURNS boolean LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN EXISTS (SELECT FROM pgmq._remove(queue_name, ARRAY[msg_id], true)); END $$;

CREATE FUNCTION pgmq.archive(queue_name text, msg_ids bigint[])
RETURNS SETOF bigint LANGUAGE plpgsql VOLATILE
AS $$ BEGIN RETURN QUERY SELECT pgmq._remove(queue_name, msg_ids, true); END $$;

-- Make the message visible again vt seconds from now (its lease, if it
-- has one, ends then).
CREATE FUNCTION pgmq.set_vt(queue_name text, msg_id bigint, vt integer)
RETURNS SETOF pgmq.message_record
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
BEGIN
	PERFORM pgmq._check_queue(queue_name);
	RETURN QUERY
	UPDATE event_store.outbox AS o
	SET available_at = pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => set_vt.vt)
	WHERE o.id = set_vt.msg_id AND o.topic = set_vt.queue_name
	RETURNING o.id, o.attempts, o.created_at, o.available_at, o.payload, o.headers;
END
$$;

--------------------------------------------------------------------------
-- Metrics.  total_messages counts the messages in the queue and in its
-- archive (deleted ones are not counted: ids are the outbox's, shared by
-- every topic, so they do not count a queue's sends).
--------------------------------------------------------------------------
CREATE FUNCTION pgmq.metrics(queue_name text)
RETURNS pgmq.metrics_result
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET enable_bitmapscan = off
AS $$
DECLARE
	result pgmq.metrics_result;
BEGIN
	PERFORM pgmq._check_queue(queue_name);
	SELECT metrics.queue_name, count(*),
		   extract(epoch FROM now() - max(o.created_at))::integer,
		   extract(epoch FROM now() - min(o.created_at))::integer,
		   count(*) + (SELECT count(*) FROM pgmq.archived_messages AS a
					   WHERE a.queue_name = metrics.queue_name),
		   now(),
		   count(*) FILTER (WHERE o.available_at <= now())
	INTO result
	FROM event_store.outbox AS o WHERE o.topic = metrics.queue_name;
	RETURN result;
END
$$;

CREATE FUNCTION pgmq.metrics_all()
RETURNS SETOF pgmq.metrics_result
LANGUAGE sql STABLE
AS $$ SELECT (pgmq.metrics(m.queue_name)).* FROM pgmq.meta AS m ORDER BY m.queue_name $$;

--------------------------------------------------------------------------
-- Privileges: the event_store roles.  Readers inspect, writers send and
-- consume (and create queues), admins drop and purge.
--------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA pgmq FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	pgmq.validate_queue_name(text),
	pgmq._check_queue(text),
	pgmq._check_conditional(jsonb),
	pgmq._lease(integer),
	pgmq.list_queues(),
	pgmq.metrics(text),
	pgmq.metrics_all()
TO event_store_reader;

GRANT EXECUTE ON FUNCTION
	pgmq._create(text, boolean),
	pgmq."create"(text),
	pgmq.create_non_partitioned(text),
	pgmq.create_unlogged(text),
	pgmq._send(text, jsonb, jsonb, interval),
	pgmq._send_batch(text, jsonb[], jsonb[], interval),
	pgmq.send(text, jsonb),
	pgmq.send(text, jsonb, jsonb),
	pgmq.send(text, jsonb, integer),
	pgmq.send(text, jsonb, timestamptz),
	pgmq.send(text, jsonb, jsonb, integer),
	pgmq.send(text, jsonb, jsonb, timestamptz),
	pgmq.send_batch(text, jsonb[]),
	pgmq.send_batch(text, jsonb[], jsonb[]),
	pgmq.send_batch(text, jsonb[], integer),
	pgmq.send_batch(text, jsonb[], timestamptz),
	pgmq.send_batch(text, jsonb[], jsonb[], integer),
	pgmq.send_batch(text, jsonb[], jsonb[], timestamptz),
	pgmq.read(text, integer, integer, jsonb),
	pgmq.read_with_poll(text, integer, integer, integer, integer, jsonb),
	pgmq.pop(text),
	pgmq._remove(text, bigint[], boolean),
	pgmq.delete(text, bigint),
	pgmq.delete(text, bigint[]),
	pgmq.archive(text, bigint),
	pgmq.archive(text, bigint[]),
	pgmq.set_vt(text, bigint, integer)
TO event_store_writer;

GRANT EXECUTE ON FUNCTION
	pgmq.drop_queue(text),
	pgmq.drop_queue(text, boolean),
	pgmq.purge_queue(text),
	pgmq.detach_archive(text)
TO event_store_admin;
