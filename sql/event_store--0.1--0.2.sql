-- event_store 0.1 -> 0.2: run by ALTER EXTENSION event_store UPDATE.
--
-- Every change of sql/event_store.sql between the two releases is repeated
-- here, so that an updated database has exactly the objects of a fresh 0.2
-- install (test/t/010_upgrade.pl compares both catalogs).

\echo Use "ALTER EXTENSION event_store UPDATE" to load this file. \quit

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

