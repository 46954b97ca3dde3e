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

-- Deduplication keys: the message a key was last sent as to a topic, and
-- when.  outbox_send reads and writes it as the table's owner; a row
-- older than the sender's window is overwritten by the next send of the
-- key; outbox_dedup_purge removes old rows.
CREATE TABLE event_store.outbox_dedup (
	topic		text COLLATE "C" NOT NULL,
	dedup_key	text COLLATE "C" NOT NULL,
	message_id	bigint NOT NULL,
	sent_at		timestamptz NOT NULL,
	PRIMARY KEY (topic, dedup_key)
);
COMMENT ON TABLE event_store.outbox_dedup IS
'Deduplication keys of outbox_send: the message each key of a topic was sent as, and when.';
REVOKE ALL ON event_store.outbox_dedup FROM PUBLIC;
GRANT SELECT ON event_store.outbox_dedup TO event_store_admin;

-- Per-topic settings; a topic without a row uses the defaults, which
-- outbox_topic_settings below holds.
CREATE TABLE event_store.outbox_topics (
	topic		text COLLATE "C" PRIMARY KEY,
	max_attempts integer NOT NULL CHECK (max_attempts >= 1),
	backoff_base interval NOT NULL CHECK (backoff_base > '0'::interval),
	backoff_max	interval NOT NULL CHECK (backoff_max > '0'::interval),
	lease		interval NOT NULL CHECK (lease > '0'::interval),
	delivery	text NOT NULL DEFAULT 'table'
		CONSTRAINT outbox_topics_delivery_check CHECK (delivery IN ('table', 'wal'))
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
	SELECT $1, 10, interval '1 second', interval '1 hour', interval '30 seconds', 'table'
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

-- Internal helper, never granted: the trigger that tells every session to
-- reload the routes.
CREATE FUNCTION event_store.event_routes_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'event_store_event_routes_changed'
LANGUAGE C;

CREATE TRIGGER event_routes_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_store.event_routes
	FOR EACH STATEMENT EXECUTE FUNCTION event_store.event_routes_changed();

-- Every backend caches which topics are delivered through the WAL
-- (src/outbox.c); this trigger tells them to read outbox_topics again.
CREATE FUNCTION event_store.outbox_topics_changed()
RETURNS trigger
AS 'MODULE_PATHNAME', 'event_store_outbox_topics_changed'
LANGUAGE C;

CREATE TRIGGER outbox_topics_changed
	AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_store.outbox_topics
	FOR EACH STATEMENT EXECUTE FUNCTION event_store.outbox_topics_changed();

REVOKE ALL ON event_store.outbox, event_store.outbox_dead_letters,
	event_store.outbox_topics, event_store.event_routes,
	event_store.outbox_id_seq FROM PUBLIC;
GRANT SELECT ON event_store.outbox_dead_letters, event_store.outbox_topics,
	event_store.event_routes TO event_store_admin;

-- Internal helper, never granted: a fresh claim receipt for a message id
-- (used by outbox_claim).
CREATE FUNCTION event_store.outbox_new_receipt(id bigint)
RETURNS uuid
AS 'MODULE_PATHNAME', 'event_store_outbox_new_receipt'
LANGUAGE C VOLATILE STRICT PARALLEL SAFE;

-- Internal helper, never granted: tells claims that this transaction
-- inserts outbox rows with these earlier ids (used by outbox_redrive; see
-- "Where claims start" in src/outbox.c).
CREATE FUNCTION event_store.outbox_reinsert_begin(ids bigint[])
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_outbox_reinsert_begin'
LANGUAGE C VOLATILE STRICT PARALLEL UNSAFE;

CREATE FUNCTION event_store.outbox_send(
	topic text,
	payload jsonb,
	key text DEFAULT NULL,
	headers jsonb DEFAULT NULL,
	delay interval DEFAULT NULL,
	dedup_key text DEFAULT NULL,
	dedup_window interval DEFAULT interval '5 minutes')
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_outbox_send'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION event_store.outbox_send(text, jsonb, text, jsonb, interval, text, interval) IS
'Enqueue a message in the caller''s transaction; returns its id.  With a dedup_key already sent to the topic within dedup_window, returns the first message''s id and writes nothing.';

CREATE FUNCTION event_store.outbox_send_batch(
	topic text,
	payloads jsonb[],
	keys text[] DEFAULT NULL,
	headers jsonb[] DEFAULT NULL,
	delay interval DEFAULT NULL)
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'event_store_outbox_send_batch'
LANGUAGE C VOLATILE PARALLEL UNSAFE;
COMMENT ON FUNCTION event_store.outbox_send_batch(text, jsonb[], text[], jsonb[], interval) IS
'Enqueue one message per payload (keys and headers by the same index) in the caller''s transaction; returns their ids in order.';

-- The consumer functions read and change the outbox as the extension's
-- owner: consumers need no privilege on the tables.  Their statements keep
-- one plan per session (src/plans.c), which must not depend on the
-- outbox's statistics: a queue has few live rows and many dead ones, and a
-- plan made while it looked empty would scan it whole on every call, or
-- read a whole topic through a bitmap and sort it to claim ten messages, so
-- sequential and bitmap scans are off.  JIT is off too: the statements are
-- short, and a plan's cost estimate could make it compile them on every call.
-- Claims and acks by receipt work on the table and its indexes directly
-- (src/outbox.c) and set these only around the few statements they run.
--
-- A claim's lease (NULL: the topic's) runs from when outbox_claim returns:
-- see src/outbox.c.  With wait, a claim that finds nothing sleeps until a
-- commit sends to the topic, a delayed message is due, or the wait ends.
CREATE FUNCTION event_store.outbox_claim(
	topic text,
	max_count integer DEFAULT 100,
	lease interval DEFAULT NULL,
	wait interval DEFAULT NULL)
RETURNS SETOF event_store.outbox_message
AS 'MODULE_PATHNAME', 'event_store_outbox_claim'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100;
COMMENT ON FUNCTION event_store.outbox_claim(text, integer, interval, interval) IS
'Lease up to max_count available messages of a topic in id order (per-key FIFO); with wait, sleep until a commit sends to the topic or the wait ends.';

-- Claim and acknowledge in one statement of the caller's transaction.
CREATE FUNCTION event_store.outbox_consume(
	topic text,
	max_count integer DEFAULT 100,
	wait interval DEFAULT NULL)
RETURNS SETOF event_store.outbox_message
AS 'MODULE_PATHNAME', 'event_store_outbox_consume'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100;
COMMENT ON FUNCTION event_store.outbox_consume(text, integer, interval) IS
'Take up to max_count available messages of a topic and delete them in the caller''s transaction (claim and ack in one statement); with wait, sleep like outbox_claim.';

-- Lease extension by receipt, fenced like outbox_ack, in the same three
-- forms.
CREATE FUNCTION event_store.outbox_extend(
	receipts uuid[],
	lease interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_extend_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;
COMMENT ON FUNCTION event_store.outbox_extend(uuid[], interval) IS
'Lease the messages of these current receipts for lease (NULL: the topic''s) from now; returns how many.';

CREATE FUNCTION event_store.outbox_extend(
	receipts text[],
	lease interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_extend_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;
COMMENT ON FUNCTION event_store.outbox_extend(text[], interval) IS
'Lease the messages of these current receipts for lease (NULL: the topic''s) from now; returns how many.';

CREATE FUNCTION event_store.outbox_extend(
	receipts text,
	lease interval DEFAULT NULL)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_extend_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;
COMMENT ON FUNCTION event_store.outbox_extend(text, interval) IS
'Lease the messages of these current receipts for lease (NULL: the topic''s) from now; returns how many.';

-- Acknowledgement by receipt, the consumers' form.  The receipts come as
-- uuid[], as text[] (a driver's list of strings), or as text: an array
-- literal, which is also what an untyped literal, an untyped parameter and
-- NULL resolve to (a string type wins over arrays), so every driver finds
-- exactly one function.
CREATE FUNCTION event_store.outbox_ack(receipts uuid[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_store.outbox_ack(receipts text[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION event_store.outbox_ack(receipts text)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_receipts'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- Acknowledgement by message id, unfenced: for operators.
CREATE FUNCTION event_store.outbox_ack_ids(ids bigint[])
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_outbox_ack_ids'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off
SET enable_seqscan = off
SET enable_bitmapscan = off;

-- The same under the name of the receipt forms, as 0.1 had it: an array of
-- bigint matches no receipt form, and an untyped literal or NULL still
-- resolves to outbox_ack(text).
CREATE FUNCTION event_store.outbox_ack(ids bigint[])
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

-- The same under the name of the receipt forms, as for outbox_ack.
CREATE FUNCTION event_store.outbox_nack(
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

-- Internal helper, never granted: the checks of a topic argument (the
-- same as the C functions', in src/outbox.c).
CREATE FUNCTION event_store.check_topic(topic text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_topic'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- Per-topic settings; NULL keeps the current value (or the default).
-- delivery 'wal': outbox_send and event routes to the topic emit a
-- transactional logical decoding message (prefix event_store) instead of
-- an outbox row (src/outbox.c); it needs wal_level = logical.
CREATE FUNCTION event_store.outbox_configure(
	topic text,
	max_attempts integer DEFAULT NULL,
	backoff_base interval DEFAULT NULL,
	backoff_max interval DEFAULT NULL,
	lease interval DEFAULT NULL,
	delivery text DEFAULT NULL)
RETURNS event_store.outbox_topics
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	result event_store.outbox_topics;
BEGIN
	PERFORM event_store.check_topic(topic);
	IF max_attempts < 1 THEN
		RAISE EXCEPTION 'max_attempts must be at least 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF backoff_base <= '0'::interval OR backoff_max <= '0'::interval OR lease <= '0'::interval THEN
		RAISE EXCEPTION 'backoff_base, backoff_max and lease must be positive'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF delivery NOT IN ('table', 'wal') THEN
		RAISE EXCEPTION 'invalid delivery "%"', delivery
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'A topic is delivered through the outbox table (''table'') or the WAL (''wal'').';
	END IF;
	IF delivery = 'wal' AND current_setting('wal_level') <> 'logical' THEN
		RAISE EXCEPTION 'topic "%" cannot be delivered through the WAL: wal_level is "%"',
			topic, current_setting('wal_level')
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Set wal_level = logical and restart the server.';
	END IF;
	INSERT INTO event_store.outbox_topics AS t
	SELECT * FROM event_store.outbox_topic_settings(outbox_configure.topic)
	ON CONFLICT ON CONSTRAINT outbox_topics_pkey DO NOTHING;
	UPDATE event_store.outbox_topics AS t
	SET max_attempts = coalesce(outbox_configure.max_attempts, t.max_attempts),
		backoff_base = coalesce(outbox_configure.backoff_base, t.backoff_base),
		backoff_max = coalesce(outbox_configure.backoff_max, t.backoff_max),
		lease = coalesce(outbox_configure.lease, t.lease),
		delivery = coalesce(outbox_configure.delivery, t.delivery)
	WHERE t.topic = outbox_configure.topic
	RETURNING * INTO result;
	RETURN result;
END
$$;

COMMENT ON COLUMN event_store.outbox_topics.delivery IS
	'table: messages are rows of event_store.outbox; wal: transactional logical decoding messages with prefix event_store, no row';
COMMENT ON FUNCTION event_store.outbox_topics_changed() IS
	'Trigger: backends read the topics delivered through the WAL again';

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
	PERFORM event_store.outbox_reinsert_begin(ids);
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

-- Forget the deduplication keys sent before older_than ago.
CREATE FUNCTION event_store.outbox_dedup_purge(older_than interval)
RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	purged integer;
BEGIN
	IF older_than IS NULL THEN
		RAISE EXCEPTION 'older_than must not be null' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	DELETE FROM event_store.outbox_dedup AS d WHERE d.sent_at < now() - older_than;
	GET DIAGNOSTICS purged = ROW_COUNT;
	RETURN purged;
END
$$;
COMMENT ON FUNCTION event_store.outbox_dedup_purge(interval) IS
'Delete the deduplication keys sent more than older_than ago; returns how many.';

-- Internal helpers, never granted: the checks of a category and of an
-- event type to match (src/stream.c, src/append.c).  NULL passes: it
-- stands for every category, every type.
CREATE FUNCTION event_store.check_category(category text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_category'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

CREATE FUNCTION event_store.check_event_type(event_type text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_event_type'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

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
	PERFORM event_store.check_category(category);
	PERFORM event_store.check_event_type(event_type);
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
-- delayed (by send or by a retry), dead.  "Blocked" is the per-key order of
-- claims (claim_rows in src/outbox.c; the relay's batches keep the same
-- order in select_sql, src/relay.c): change them together.
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
