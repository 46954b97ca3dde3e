-- event_store 0.1 -> 0.2: run by ALTER EXTENSION event_store UPDATE.
--
-- Every change of sql/event_store.sql between the two releases is repeated
-- here, so that an updated database has exactly the objects of a fresh 0.2
-- install (test/t/010_upgrade.pl compares both catalogs).

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
