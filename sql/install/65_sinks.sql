--------------------------------------------------------------------------
-- Sinks: named connections to brokers (Kafka, RabbitMQ / AMQP 0-9-1,
-- HTTP(S) webhooks) that routes reference by name (src/sink_config.c,
-- src/sink_kafka.c, src/sink_amqp.c).  Their URLs and options carry
-- credentials: only admins and the relay workers read the table; the view
-- relay_sinks shows them as ********.
--------------------------------------------------------------------------

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
