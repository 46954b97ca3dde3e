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
	created_at	timestamptz NOT NULL DEFAULT now(),
	-- The Kafka topic, or AMQP exchange/routing_key, of a named sink.
	destination	text
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
	-- The workers delete expired copies from time to time; until then the
	-- age decides.  Without the library loaded the setting is unknown: its
	-- default.
	SELECT p.id, p.topic, p.key, p.payload, p.headers, 1, p.created_at, NULL::uuid
	FROM event_store.relay_parked AS p
	WHERE p.id = relay_fetch.id
	  AND p.parked_at > now() - coalesce(current_setting('event_store.relay_reference_ttl', true),
										 '1h')::interval
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
