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

-- The log.  Rows are written only by the C functions below; the first eight
-- columns are event_store.event, category is derived from stream and kept for
-- the category index.  Positions are assigned by the feed (src/feed.c), not by
-- a column default, because the feed must know which positions are in flight.
CREATE TABLE event_store.events (
	position	bigint NOT NULL,
	stream		text COLLATE "C" NOT NULL,
	version		bigint NOT NULL,
	type		text NOT NULL,
	data		jsonb NOT NULL,
	metadata	jsonb,
	id			uuid NOT NULL,
	recorded_at	timestamptz NOT NULL,
	category	text COLLATE "C" NOT NULL,
	CONSTRAINT events_pkey PRIMARY KEY (position),
	CONSTRAINT events_stream_version_key UNIQUE (stream, version),
	CONSTRAINT events_id_key UNIQUE (id)
);
CREATE INDEX events_category_position_idx
	ON event_store.events (category, position);

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

CREATE FUNCTION event_store.category(stream text)
RETURNS text
AS 'MODULE_PATHNAME', 'event_store_category'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION event_store.stream_hash(stream text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_stream_hash'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

--------------------------------------------------------------------------
-- Privileges.  Functions are executable by PUBLIC by default; take that
-- away from everything the extension creates, then grant per role.
--------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA event_store FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	event_store.read_stream(text, bigint, integer, boolean),
	event_store.stream_version(text),
	event_store.category(text),
	event_store.stream_hash(text)
TO event_store_reader;

GRANT EXECUTE ON FUNCTION
	event_store.append(text, jsonb, bigint),
	event_store.append_event(text, text, jsonb, jsonb, bigint, uuid)
TO event_store_writer;

GRANT EXECUTE ON FUNCTION
	event_store.delete_stream(text, bigint)
TO event_store_admin;
