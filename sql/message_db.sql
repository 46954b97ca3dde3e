-- event_store_message_db: Message DB 1.3's SQL API on the event store.
--
-- This file is the source of the install script
-- event_store_message_db--<version>.sql.  Schema message_store holds the
-- functions and the type Message DB's clients call, with Message DB's
-- names, signatures, results and error texts; the messages are the events
-- of event_store.events (a message's position is the event's version, its
-- global_position the event's position), so what is written through
-- either API is read through both.  Writes go through append_event, so
-- they do not serialise a category; category reads go through
-- read_category, so they are gap-safe.  Everything here runs with the
-- caller's privileges: the event_store roles decide who may read and write.

\echo Use "CREATE EXTENSION event_store_message_db" to load this file. \quit

--------------------------------------------------------------------------
-- The schema.  CREATE EXTENSION creates it; one that exists already must
-- not let a role other than a superuser put objects in the way of the
-- functions below, which every reader and writer calls.
--------------------------------------------------------------------------
DO $schema$
DECLARE
	nsp_name text;
	owner_is_superuser boolean;
	creator text;
BEGIN
	SELECT n.nspname, r.rolsuper INTO nsp_name, owner_is_superuser
	FROM pg_catalog.pg_namespace AS n
	JOIN pg_catalog.pg_roles AS r ON r.oid = n.nspowner
	WHERE n.nspname = 'message_store';

	IF NOT owner_is_superuser THEN
		RAISE EXCEPTION 'schema "%" is owned by a role that is not a superuser', nsp_name
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Drop schema "message_store" and run CREATE EXTENSION again (it creates the schema), or make a superuser its owner.';
	END IF;
	SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'
								  ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
	INTO creator
	FROM pg_catalog.pg_namespace AS n,
		 LATERAL pg_catalog.aclexplode(n.nspacl) AS a
	LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
	WHERE n.nspname = 'message_store' AND a.privilege_type = 'CREATE'
	  AND NOT coalesce(r.rolsuper, false);
	IF creator IS NOT NULL THEN
		RAISE EXCEPTION 'schema "%" grants CREATE to roles that are not superusers: %', nsp_name, creator
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Revoke CREATE on schema "message_store" from them and run CREATE EXTENSION again.';
	END IF;
END
$schema$;

REVOKE ALL ON SCHEMA message_store FROM PUBLIC;
GRANT USAGE ON SCHEMA message_store TO event_store_reader;

--------------------------------------------------------------------------
-- What the read functions return: Message DB's message type.  time is
-- the event's recorded_at in UTC, without a time zone, as Message DB
-- stores it.
--------------------------------------------------------------------------
CREATE TYPE message_store.message AS (
	id				varchar,
	stream_name		varchar,
	type			varchar,
	position		bigint,
	global_position	bigint,
	data			varchar,
	metadata		varchar,
	time			timestamp
);

--------------------------------------------------------------------------
-- Stream names.  Message DB's definitions, NULL handling included
-- (is_category(NULL) is true there too).
--------------------------------------------------------------------------

CREATE FUNCTION message_store.message_store_version()
RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT '1.3.0'::varchar $$;

-- The part of a stream name before its first '-'.
CREATE FUNCTION message_store.category(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.split_part($1, '-', 1)::varchar $$;

-- The part after the first '-', NULL when there is none.
CREATE FUNCTION message_store.id(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
	SELECT CASE WHEN pg_catalog.strpos($1, '-') = 0 THEN NULL
		   ELSE pg_catalog.substr($1, pg_catalog.strpos($1, '-') + 1) END::varchar
$$;

-- The id up to its first '+' (a compound id's first part): what consumer
-- groups hash.
CREATE FUNCTION message_store.cardinal_id(stream_name varchar)
RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT pg_catalog.split_part(message_store.id($1), '+', 1)::varchar $$;

CREATE FUNCTION message_store.is_category(stream_name varchar)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(pg_catalog.strpos($1, '-') = 0, true) $$;

-- The first 64 bits of the value's MD5, as a signed bigint: the hash
-- Message DB's consumer groups and locks use, so a consumer group keeps
-- its assignment of streams to members across the switch.
CREATE FUNCTION message_store.hash_64(value varchar)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ('x' || pg_catalog.substr(pg_catalog.md5($1), 1, 16))::bit(64)::bigint $$;

--------------------------------------------------------------------------
-- Writing
--------------------------------------------------------------------------

-- Message DB serialises the writers of a category with this lock; the
-- event store does not need it (write_message does not take it), but a
-- caller that takes it for its own purposes gets the same lock.
CREATE FUNCTION message_store.acquire_lock(stream_name varchar)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	category_hash bigint := message_store.hash_64(message_store.category(stream_name));
BEGIN
	PERFORM pg_catalog.pg_advisory_xact_lock(category_hash);
	RETURN category_hash;
END
$$;

-- Message DB compares expected_version with the stream's version (-1: no
-- stream) and raises 'Wrong expected version: ...' (P0001), which its
-- clients match.  The comparison is made here, under a transaction lock
-- on the stream name that only writers with an expected version take, so
-- that a writer that lost a race sees the winner's commit and gets that
-- text too; append_event checks again.  Message DB keeps an SQL NULL
-- data; the event store keeps a JSON null, which the read functions here
-- return as NULL.  A value below -1 never matches,
-- as in Message DB (append_event would read -2 as "must exist").
-- The event store's append lock on a stream, which every writer of the
-- stream takes, through this API or the event store's.  Internal: for
-- write_message.
CREATE FUNCTION message_store._lock_stream(stream_name varchar)
RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT event_store.lock_stream(stream_name) $$;

CREATE FUNCTION message_store.write_message(
	id varchar,
	stream_name varchar,
	"type" varchar,
	data jsonb,
	metadata jsonb DEFAULT NULL,
	expected_version bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	stream_version bigint;
BEGIN
	IF write_message.expected_version IS NOT NULL THEN
		-- Once the lock is ours, every other writer of the stream has
		-- committed or rolled back: the version read is the latest (under
		-- READ COMMITTED), and a write that lost a race gets Message DB's
		-- error rather than the append's.
		PERFORM message_store._lock_stream(write_message.stream_name);
		stream_version := coalesce(event_store.stream_version(write_message.stream_name), -1);
		-- A retry of a write that committed (its id is the stream's last
		-- message, at the version the write was to give it) goes on to the
		-- append, which returns that version without writing.
		IF write_message.expected_version <> stream_version
		   AND NOT (stream_version = write_message.expected_version + 1
					AND EXISTS (SELECT FROM event_store.read_stream(write_message.stream_name,
																   stream_version, 1) AS e
								WHERE e.id::text = pg_catalog.lower(write_message.id))) THEN
			RAISE EXCEPTION 'Wrong expected version: % (Stream: %, Stream Version: %)',
				write_message.expected_version, write_message.stream_name, stream_version;
		END IF;
	END IF;
	RETURN event_store.append_event(write_message.stream_name, write_message."type",
									coalesce(write_message.data, 'null'::jsonb),
									write_message.metadata,
									write_message.expected_version,
									write_message.id::uuid);
END
$$;

--------------------------------------------------------------------------
-- Reading
--------------------------------------------------------------------------

-- Message DB's condition argument: an SQL expression over the columns of
-- its messages table, refused unless message_store.sql_condition is on.
CREATE FUNCTION message_store.check_condition(condition varchar)
RETURNS void
LANGUAGE plpgsql STABLE
AS $$
BEGIN
	IF condition IS NOT NULL AND
	   coalesce(pg_catalog.current_setting('message_store.sql_condition', true), 'off') = 'off' THEN
		RAISE EXCEPTION 'Retrieval with SQL condition is not activated';
	END IF;
END
$$;

-- Message DB refuses a negative LIMIT with PostgreSQL's own error; -1
-- means no limit.
CREATE FUNCTION message_store.check_batch_size(batch_size bigint)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
AS $$
BEGIN
	IF batch_size < -1 THEN
		RAISE EXCEPTION 'LIMIT must not be negative' USING ERRCODE = 'invalid_row_count_in_limit_clause';
	END IF;
END
$$;

CREATE FUNCTION message_store.get_stream_messages(
	stream_name varchar,
	"position" bigint DEFAULT 0,
	batch_size bigint DEFAULT 1000,
	condition varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	from_version bigint := greatest(coalesce(get_stream_messages."position", 0), 0);
	max_count bigint := coalesce(get_stream_messages.batch_size, 1000);
BEGIN
	IF message_store.is_category(get_stream_messages.stream_name) THEN
		RAISE EXCEPTION 'Must be a stream name: %', get_stream_messages.stream_name;
	END IF;
	PERFORM message_store.check_batch_size(max_count);
	PERFORM message_store.check_condition(get_stream_messages.condition);
	IF max_count = -1 OR max_count > 2147483647 THEN
		max_count := 2147483647;
	END IF;

	IF get_stream_messages.condition IS NULL THEN
		RETURN QUERY
		SELECT e.id::varchar, e.stream::varchar, e.type::varchar, e.version, e.position,
			   nullif(e.data, 'null'::jsonb)::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
		FROM event_store.read_stream(get_stream_messages.stream_name, from_version,
									 max_count::integer) AS e;
		RETURN;
	END IF;

	-- The condition is the caller's SQL, run with the caller's privileges
	-- over the events with Message DB's column names.
	RETURN QUERY EXECUTE pg_catalog.format(
		'SELECT messages.id::varchar, messages.stream_name::varchar, messages.type::varchar,'
		'       messages.position, messages.global_position,'
		'       nullif(messages.data, ''null''::jsonb)::varchar,'
		'       messages.metadata::varchar, messages.time'
		'  FROM (SELECT e.position AS global_position, e.version AS position,'
		'               (e.recorded_at AT TIME ZONE ''UTC'') AS time, e.stream AS stream_name,'
		'               e.type, e.data, e.metadata, e.id'
		'          FROM event_store.read_stream($1, $2, $3) AS e) AS messages'
		' WHERE (%s)'
		' ORDER BY messages.position LIMIT $4', get_stream_messages.condition)
	USING get_stream_messages.stream_name, from_version, 2147483647, max_count;
END
$$;

-- The category's messages from a global position on.  Without a filter,
-- one read_category; with a correlation, a consumer group or a condition,
-- the category is read page by page and filtered until the batch is full
-- or the feed's safe head is reached, so that a consumer never gets an
-- empty batch while messages for it remain further on.  The consumer
-- group keeps Message DB's assignment: a stream belongs to member
-- @hash_64(cardinal_id(stream_name)) % consumer_group_size.
CREATE FUNCTION message_store.get_category_messages(
	category varchar,
	"position" bigint DEFAULT 1,
	batch_size bigint DEFAULT 1000,
	correlation varchar DEFAULT NULL,
	consumer_group_member bigint DEFAULT NULL,
	consumer_group_size bigint DEFAULT NULL,
	condition varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	from_position bigint := greatest(coalesce(get_category_messages."position", 1), 0);
	remaining bigint := coalesce(get_category_messages.batch_size, 1000);
	page_size constant integer := 1000;
	page event_store.event[];
	page_count integer;
	returned bigint;
	filter text;
BEGIN
	IF NOT message_store.is_category(get_category_messages.category) THEN
		RAISE EXCEPTION 'Must be a category: %', get_category_messages.category;
	END IF;
	IF get_category_messages.correlation IS NOT NULL
	   AND pg_catalog.strpos(get_category_messages.correlation, '-') > 0 THEN
		RAISE EXCEPTION 'Correlation must be a category (Correlation: %)',
			get_category_messages.correlation;
	END IF;
	IF (get_category_messages.consumer_group_member IS NULL)
	   <> (get_category_messages.consumer_group_size IS NULL) THEN
		RAISE EXCEPTION 'Consumer group member and size must be specified (Consumer Group Member: %, Consumer Group Size: %)',
			get_category_messages.consumer_group_member, get_category_messages.consumer_group_size;
	END IF;
	IF get_category_messages.consumer_group_size IS NOT NULL THEN
		IF get_category_messages.consumer_group_size < 1 THEN
			RAISE EXCEPTION 'Consumer group size must not be less than 1 (Consumer Group Member: %, Consumer Group Size: %)',
				get_category_messages.consumer_group_member, get_category_messages.consumer_group_size;
		END IF;
		IF get_category_messages.consumer_group_member < 0 THEN
			RAISE EXCEPTION 'Consumer group member must not be less than 0 (Consumer Group Member: %, Consumer Group Size: %)',
				get_category_messages.consumer_group_member, get_category_messages.consumer_group_size;
		END IF;
		IF get_category_messages.consumer_group_member >= get_category_messages.consumer_group_size THEN
			RAISE EXCEPTION 'Consumer group member must be less than the group size (Consumer Group Member: %, Consumer Group Size: %)',
				get_category_messages.consumer_group_member, get_category_messages.consumer_group_size;
		END IF;
	END IF;
	PERFORM message_store.check_condition(get_category_messages.condition);
	PERFORM message_store.check_batch_size(remaining);
	IF remaining = -1 THEN
		remaining := NULL;
	END IF;
	-- read_category refuses the empty category, which only streams whose
	-- names start with '-' are in: none are returned (Message DB returns
	-- them; README lists the difference).
	IF get_category_messages.category = '' OR remaining = 0 THEN
		RETURN;
	END IF;

	IF get_category_messages.correlation IS NULL
	   AND get_category_messages.consumer_group_size IS NULL
	   AND get_category_messages.condition IS NULL
	   AND remaining <= 2147483647 THEN
		RETURN QUERY
		SELECT e.id::varchar, e.stream::varchar, e.type::varchar, e.version, e.position,
			   nullif(e.data, 'null'::jsonb)::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
		FROM event_store.read_category(get_category_messages.category, from_position,
									   remaining::integer) AS e;
		RETURN;
	END IF;

	filter := 'SELECT messages.id::varchar, messages.stream_name::varchar, messages.type::varchar,'
		'       messages.position, messages.global_position,'
		'       nullif(messages.data, ''null''::jsonb)::varchar,'
		'       messages.metadata::varchar, messages.time'
		'  FROM (SELECT e.position AS global_position, e.version AS position,'
		'               (e.recorded_at AT TIME ZONE ''UTC'') AS time, e.stream AS stream_name,'
		'               e.type, e.data, e.metadata, e.id'
		'          FROM pg_catalog.unnest($1) AS e) AS messages'
		' WHERE ($2::varchar IS NULL OR message_store.category((messages.metadata OPERATOR(pg_catalog.->>) ''correlationStreamName'')::varchar) = $2)'
		'   AND ($3::bigint IS NULL OR pg_catalog.mod(@ message_store.hash_64(message_store.cardinal_id(messages.stream_name::varchar)), $4) = $3)';
	IF get_category_messages.condition IS NOT NULL THEN
		filter := filter || pg_catalog.format(' AND (%s)', get_category_messages.condition);
	END IF;
	filter := filter || ' ORDER BY messages.global_position LIMIT $5';

	LOOP
		page := ARRAY(SELECT e FROM event_store.read_category(get_category_messages.category,
															  from_position, page_size) AS e);
		page_count := coalesce(pg_catalog.array_length(page, 1), 0);
		EXIT WHEN page_count = 0;
		RETURN QUERY EXECUTE filter
		USING page, get_category_messages.correlation, get_category_messages.consumer_group_member,
			  get_category_messages.consumer_group_size, remaining;
		GET DIAGNOSTICS returned = ROW_COUNT;
		remaining := remaining - returned;
		EXIT WHEN remaining <= 0 OR page_count < page_size;
		from_position := page[page_count].position + 1;
	END LOOP;
END
$$;

-- The stream's last message, or its last message of the given type.
CREATE FUNCTION message_store.get_last_stream_message(
	stream_name varchar,
	"type" varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
	page_size constant integer := 100;
	from_version bigint := NULL;
	page event_store.event[];
	page_count integer;
	found_event event_store.event;
BEGIN
	LOOP
		page := ARRAY(SELECT e FROM event_store.read_stream(get_last_stream_message.stream_name,
															from_version, page_size, true) AS e);
		page_count := coalesce(pg_catalog.array_length(page, 1), 0);
		SELECT p.* INTO found_event FROM pg_catalog.unnest(page) WITH ORDINALITY AS p
		WHERE get_last_stream_message."type" IS NULL OR p.type = get_last_stream_message."type"
		ORDER BY p.ordinality LIMIT 1;
		IF found_event.position IS NOT NULL THEN
			RETURN QUERY SELECT found_event.id::varchar, found_event.stream::varchar,
				found_event.type::varchar, found_event.version, found_event.position,
				nullif(found_event.data, 'null'::jsonb)::varchar, found_event.metadata::varchar,
				(found_event.recorded_at AT TIME ZONE 'UTC');
			RETURN;
		END IF;
		EXIT WHEN page_count < page_size OR page[page_count].version = 0;
		from_version := page[page_count].version - 1;
	END LOOP;
END
$$;

CREATE FUNCTION message_store.stream_version(stream_name varchar)
RETURNS bigint
LANGUAGE sql STABLE
AS $$ SELECT event_store.stream_version($1) $$;

-- Message DB's table, for the tools and queries that read it directly: a
-- view of the event log with its column names.  It is a plain read of the
-- table, not gap-safe: consumers read with get_category_messages.
CREATE VIEW message_store.messages AS
SELECT e.position AS global_position,
	   e.version AS position,
	   (e.recorded_at AT TIME ZONE 'UTC') AS time,
	   e.stream::text AS stream_name,
	   e.type,
	   nullif(e.data, 'null'::jsonb) AS data,
	   e.metadata,
	   e.id
FROM event_store.events AS e;

REVOKE ALL ON message_store.messages FROM PUBLIC;
GRANT SELECT ON message_store.messages TO event_store_reader;

--------------------------------------------------------------------------
-- Privileges: the event_store roles.  Readers read, writers write.
--------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA message_store FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	message_store.message_store_version(),
	message_store.category(varchar),
	message_store.id(varchar),
	message_store.cardinal_id(varchar),
	message_store.is_category(varchar),
	message_store.hash_64(varchar),
	message_store.check_condition(varchar),
	message_store.check_batch_size(bigint),
	message_store.get_stream_messages(varchar, bigint, bigint, varchar),
	message_store.get_category_messages(varchar, bigint, bigint, varchar, bigint, bigint, varchar),
	message_store.get_last_stream_message(varchar, varchar),
	message_store.stream_version(varchar)
TO event_store_reader;

GRANT EXECUTE ON FUNCTION
	message_store.acquire_lock(varchar),
	message_store._lock_stream(varchar),
	message_store.write_message(varchar, varchar, varchar, jsonb, jsonb, bigint)
TO event_store_writer;
