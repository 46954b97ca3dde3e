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

-- Internal helper, never granted: rows written into the log by a statement
-- (pg_restore's COPY, an INSERT by an administrator), not by append: the
-- feed reads its counter again.
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
