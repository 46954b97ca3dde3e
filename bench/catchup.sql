-- Catch-up: a subscription consumes the whole feed in batches of 1,000,
-- fetch and ack in a transaction per batch (psql -v mode=ours), against
-- keyset pagination of a plain table with a checkpoint row updated per
-- batch (-v mode=base).  Prints the events consumed per second (the count
-- of the events, after the loop, is not timed).
--
-- Both sides read every column of every event (count of the last column,
-- recorded_at), as a consumer does: with count(*) alone the planner reads
-- the baseline's batch from the primary key by an index-only scan and
-- never visits the events, while subscription_fetch must return them.
\set ON_ERROR_STOP on
SELECT clock_timestamp() AS started \gset
SELECT :'mode' = 'ours' AS ours \gset
\if :ours
SELECT event_store.subscription_reset('bench_catchup', 0);
DO $$
DECLARE
	n bigint;
	last bigint;
BEGIN
	LOOP
		SELECT count(f.recorded_at), max(f.position) INTO n, last
		FROM event_store.subscription_fetch('bench_catchup', 1000) AS f;
		EXIT WHEN n = 0;
		PERFORM event_store.subscription_ack('bench_catchup', last);
		COMMIT;
	END LOOP;
END
$$;
SELECT clock_timestamp() AS ended \gset
SELECT count(*) AS consumed FROM event_store.events \gset
\else
UPDATE plain_checkpoint SET position = 0;
DO $$
DECLARE
	n bigint;
	last bigint;
	checkpoint bigint;
BEGIN
	LOOP
		SELECT c.position INTO checkpoint FROM plain_checkpoint AS c FOR NO KEY UPDATE;
		SELECT count(e.recorded_at), max(e.position) INTO n, last
		FROM (SELECT position, stream, version, type, data, metadata, id, recorded_at
			  FROM plain_events WHERE position > checkpoint ORDER BY position LIMIT 1000) AS e;
		EXIT WHEN n = 0;
		UPDATE plain_checkpoint SET position = last;
		COMMIT;
	END LOOP;
END
$$;
SELECT clock_timestamp() AS ended \gset
SELECT count(*) AS consumed FROM plain_events \gset
\endif
SELECT round(:consumed / extract(epoch FROM :'ended'::timestamptz - :'started')) AS events_per_second;
