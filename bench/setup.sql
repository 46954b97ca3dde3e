-- The benchmark database: event_store, PgQ, and the baselines of the
-- targets, built to match (same columns, indexes and collations).
CREATE EXTENSION event_store;
CREATE EXTENSION pgq;

-- Baseline of append and reads: the same rows in a plain table with the
-- same indexes, written by INSERT.
CREATE TABLE plain_events (
	position	bigserial PRIMARY KEY,
	stream		text COLLATE "C" NOT NULL,
	version		bigint NOT NULL,
	type		text NOT NULL,
	data		jsonb NOT NULL,
	metadata	jsonb,
	id			uuid NOT NULL DEFAULT gen_random_uuid(),
	recorded_at	timestamptz NOT NULL DEFAULT now(),
	UNIQUE (stream, version),
	UNIQUE (id)
);
CREATE INDEX plain_events_category_position_idx
	ON plain_events ((event_store.category(stream)) COLLATE "C", position);

-- Baseline of the outbox: a hand-written queue, INSERT to send,
-- DELETE ... FOR UPDATE SKIP LOCKED to consume, vacuumed like the outbox.
CREATE TABLE plain_queue (
	id			bigserial PRIMARY KEY,
	topic		text COLLATE "C" NOT NULL,
	key			text,
	payload		jsonb NOT NULL,
	headers		jsonb,
	created_at	timestamptz NOT NULL DEFAULT now()
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
		autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000,
		autovacuum_vacuum_cost_delay = 0);

-- Contention: read a hot stream's version, append expecting it; a conflict
-- is counted, not an error.
CREATE FUNCTION bench_try_append(stream text) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
	v bigint := event_store.stream_version(stream);
BEGIN
	PERFORM event_store.append_event(stream, 'Hot', '{}', NULL, coalesce(v, -1));
	RETURN true;
EXCEPTION WHEN SQLSTATE 'EV001' THEN
	RETURN false;
END
$$;
SELECT event_store.append_event('hot-' || s, 'Hot', '{}') FROM generate_series(1, 4) AS s;

-- PgQ: one queue, one consumer, which ticks the queue when it finds no batch
-- (there is no pgqd here).
SELECT pgq.create_queue('bench');
SELECT pgq.register_consumer('bench', 'bench_consumer');
CREATE FUNCTION bench_pgq_consume() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
	batch bigint := pgq.next_batch('bench', 'bench_consumer');
	n integer;
BEGIN
	IF batch IS NULL THEN
		PERFORM pgq.ticker('bench');
		RETURN 0;
	END IF;
	SELECT count(*) INTO n FROM pgq.get_batch_events(batch);
	PERFORM pgq.finish_batch(batch);
	RETURN n;
END
$$;

-- The event log of the read scenarios: streams of 100 events, the same rows
-- copied to the baseline table (both emptied first, so both hold exactly
-- the same events).  One transaction per 1,000 streams: an append holds a
-- lock on its stream until its transaction ends, and the lock table has
-- room for a few thousand.
CREATE PROCEDURE bench_load_events(total integer)
LANGUAGE plpgsql AS $$
DECLARE
	streams integer := total / 100;
	first_stream integer := 1;
BEGIN
	TRUNCATE event_store.events, plain_events;
	COMMIT;
	WHILE first_stream <= streams LOOP
		PERFORM event_store.append('read-' || s,
			(SELECT jsonb_agg(jsonb_build_object('type', 'Happened', 'data', jsonb_build_object('n', n)))
			 FROM generate_series(1, 100) AS n))
		FROM generate_series(first_stream, least(first_stream + 999, streams)) AS s;
		COMMIT;
		first_stream := first_stream + 1000;
	END LOOP;
	INSERT INTO plain_events (position, stream, version, type, data, metadata, id, recorded_at)
	SELECT position, stream, version, type, data, metadata, id, recorded_at
	FROM event_store.events;
	PERFORM setval('plain_events_position_seq', (SELECT max(position) FROM plain_events));
END
$$;

-- Baseline of the catch-up scenario: the checkpoint of a keyset paginator.
CREATE TABLE plain_checkpoint (position bigint NOT NULL);
INSERT INTO plain_checkpoint VALUES (0);
