-- read_all(from_position, max_count) and feed_head(): the global feed.
SELECT reset_event_store();

-- An empty feed.
SELECT count(*) FROM event_store.read_all();
SELECT event_store.feed_head();

SELECT event_store.append('order-1', '[{"type": "Placed", "data": 1}, {"type": "Paid", "data": 2}]');
SELECT event_store.append_event('user-1', 'Joined', '3');
SELECT event_store.append_event('order-2', 'Placed', '4');
SELECT event_store.append_event('order-1', 'Shipped', '5');

-- Position order across streams, from_position inclusive, max_count.
SELECT position, stream, version, type, data FROM event_store.read_all();
SELECT position FROM event_store.read_all(3);
SELECT position FROM event_store.read_all(2, 2);
SELECT position FROM event_store.read_all(0, 0);
SELECT position FROM event_store.read_all(6);
SELECT event_store.feed_head();

-- Rolled-back appends leave a gap in positions, never a hole a consumer
-- could fall into: the feed just continues after it.
BEGIN;
SELECT event_store.append_event('order-3', 'Placed', '6');
ROLLBACK;
SELECT event_store.append_event('order-4', 'Placed', '7');
SELECT position, stream FROM event_store.read_all(5);
SELECT event_store.feed_head();

-- A consumer that pages through the feed by checkpoint sees every event
-- once, in order.
CREATE TEMP TABLE seen (position bigint);
DO $$
DECLARE
	checkpoint bigint := 0;
	last bigint;
BEGIN
	LOOP
		INSERT INTO seen SELECT position FROM event_store.read_all(checkpoint + 1, 2);
		SELECT max(position) INTO last FROM seen;
		EXIT WHEN last IS NULL OR last = checkpoint;
		checkpoint := last;
	END LOOP;
END
$$;
SELECT array_agg(position ORDER BY position) AS seen,
	   (SELECT array_agg(position ORDER BY position) FROM event_store.events) AS stored
FROM seen;

-- Our own uncommitted events are visible to ourselves, as any write is.
BEGIN;
SELECT event_store.append_event('order-5', 'Placed', '8');
SELECT position, stream FROM event_store.read_all(7);
ROLLBACK;

-- Deleted streams: their events and the tombstone stay in the feed.
SELECT event_store.delete_stream('user-1');
SELECT position, stream, type FROM event_store.read_all(7);

-- A transaction that appended cannot be prepared for two-phase commit: the
-- feed must see every appending transaction end in its own session.
BEGIN;
SELECT event_store.append_event('order-6', 'Placed', '9');
PREPARE TRANSACTION 'appended';
SELECT count(*) FROM pg_prepared_xacts;
SELECT event_store.stream_version('order-6');
-- Transactions that did not append prepare as usual.
BEGIN;
SELECT count(*) FROM event_store.read_all();
PREPARE TRANSACTION 'read_only';
COMMIT PREPARED 'read_only';

-- Reads return their rows from memory the session keeps between statements
-- (result_store.c).  The rows of a read stay whole while other reads run:
-- two reads in one query, a cursor read between other reads, a read run
-- again for each row of an outer query, a read in the select list.
SELECT count(*) AS pairs
FROM event_store.read_all(1) AS a JOIN event_store.read_all(1) AS b USING (position, stream, type);
BEGIN;
DECLARE feed CURSOR FOR SELECT position, stream FROM event_store.read_all(1);
FETCH 2 FROM feed;
SELECT count(*) FROM event_store.read_all(1);
SELECT position, version FROM event_store.read_stream('order-1');
FETCH ALL FROM feed;
COMMIT;
BEGIN;
DECLARE held CURSOR WITH HOLD FOR SELECT position FROM event_store.read_all(1, 3);
COMMIT;
SELECT count(*) FROM event_store.read_all(1);
FETCH ALL FROM held;
CLOSE held;
SELECT s.stream,
	   (SELECT array_agg(r.version ORDER BY r.version) FROM event_store.read_stream(s.stream) AS r) AS versions
FROM (VALUES ('order-1'), ('order-2'), ('order-4')) AS s(stream);
SELECT (event_store.read_all(1, 3)).position;
-- A read that fails midway gives the memory back: the next read's rows are
-- in it again (checked while they are: the subquery runs after the scan).
SELECT try($$SELECT position, 1 / (position - 3) FROM event_store.read_all(1)$$);
SELECT event_store.append('bulk-1', (SELECT jsonb_agg(jsonb_build_object('type', 'Filled', 'data', n)) FROM generate_series(1, 3000) AS n));
SELECT count(*),
	   (SELECT used_bytes > 300000 FROM pg_backend_memory_contexts
		WHERE name = 'event_store results') AS in_kept_memory
FROM event_store.read_all(0, 5000);
-- Between statements only the kept block remains, whatever the read took.
SELECT total_bytes FROM pg_backend_memory_contexts WHERE name = 'event_store results';

-- Bad input.
SELECT try($$SELECT * FROM event_store.read_all(-1)$$);
SELECT try($$SELECT * FROM event_store.read_all(NULL)$$);
SELECT try($$SELECT * FROM event_store.read_all(0, -5)$$);
SELECT try($$SELECT * FROM event_store.read_all(0, NULL)$$);
