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

-- Internal helpers, never granted: the end of CREATE EXTENSION starts the
-- relay, and changes to routes and subscriptions wake it, at commit.
CREATE FUNCTION event_store.relay_start()
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_relay_start'
LANGUAGE C VOLATILE;

CREATE FUNCTION event_store.relay_wake()
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_relay_wake'
LANGUAGE C VOLATILE;

-- Internal helper, never granted: warn when no relay worker can serve this
-- database now (library not preloaded, launcher not running, no background
-- worker slot free).
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

-- Internal helper, never granted: pause or resume the relay of a topic;
-- while paused, its messages wait in the outbox.
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
