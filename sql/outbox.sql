-- The outbox: outbox_send, outbox_claim, outbox_ack, outbox_nack, leases,
-- per-key order, retries, dead letters, per-topic settings, depth.
SELECT reset_event_store();

-- Send returns the message id; ids follow send order.
SELECT event_store.outbox_send('mail', '{"to": "ann"}');
SELECT event_store.outbox_send('mail', '{"to": "bob"}', 'customer-1', '{"trace": "t1"}');
SELECT event_store.outbox_send('mail', '{"to": "cid"}', 'customer-1');
SELECT event_store.outbox_send('mail', '"just text"', 'customer-2');
SELECT event_store.outbox_send('sms', 'null');
-- A JSON null headers is no headers.
SELECT event_store.outbox_send('sms', '{}', NULL, 'null');
-- Rolled back: gone.
BEGIN;
SELECT event_store.outbox_send('mail', '{"to": "ghost"}') > 0 AS sent;
ROLLBACK;

-- Claim: available messages in id order; attempts counts claims; each
-- claim has a receipt.  customer-1's second message waits for its first.
CREATE TEMP TABLE claim1 AS SELECT * FROM event_store.outbox_claim('mail', 10);
SELECT id, topic, key, payload, headers, attempts, receipt IS NOT NULL AS has_receipt
FROM claim1 ORDER BY id;
-- The receipt carries the message id in its first 8 bytes.
SELECT bool_and(('x' || substr(replace(receipt::text, '-', ''), 1, 16))::bit(64)::bigint = id) AS id_in_receipt
FROM claim1;
-- Nothing left to claim in this topic: the rest is leased or blocked.
SELECT count(*) FROM event_store.outbox_claim('mail', 10);
SELECT topic, available, blocked, leased, delayed, dead FROM event_store.outbox_depth ORDER BY topic;

-- Ack by receipt: done, never handed out again.  customer-1's next message
-- becomes available.
SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM claim1 WHERE id = 2));
SELECT id, key, attempts FROM event_store.outbox_claim('mail', 10);
-- Acking the same receipt again, an unknown receipt, or NULLs: not counted.
SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM claim1 WHERE id = 2));
SELECT event_store.outbox_ack(ARRAY['00000000-0000-0063-0000-000000000000'::uuid, NULL]);
SELECT event_store.outbox_ack('{}'::uuid[]);
-- Ack by id (the unfenced operator form), unknown ids not counted.
SELECT event_store.outbox_ack_ids(ARRAY[1, 4, 99999]);
SELECT id FROM event_store.outbox ORDER BY id;

-- Leases: an expired lease makes the message available again, with a new
-- receipt and one more attempt.  The old receipt is fenced off.  (Time is
-- moved forward by moving the lease's end, which is what a claim sets: the
-- test does not depend on how fast it runs.)
CREATE FUNCTION pg_temp.expire(message_id bigint) RETURNS void LANGUAGE sql AS $$
	UPDATE event_store.outbox SET available_at = clock_timestamp() - interval '1 millisecond'
	WHERE id = message_id;
$$;
SELECT event_store.outbox_send('lease', '{}') AS lease_id \gset
CREATE TEMP TABLE first_claim AS SELECT * FROM event_store.outbox_claim('lease', 1, '1 hour');
SELECT count(*) FROM event_store.outbox_claim('lease', 1);
SELECT pg_temp.expire(:lease_id);
CREATE TEMP TABLE second_claim AS SELECT * FROM event_store.outbox_claim('lease', 1, '1 minute');
SELECT s.id = :lease_id AS same_message, s.attempts, s.receipt <> f.receipt AS new_receipt
FROM first_claim AS f, second_claim AS s;
SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM first_claim)) AS late_ack;
SELECT event_store.outbox_nack(ARRAY(SELECT receipt FROM first_claim)) AS late_nack;
SELECT count(*) AS still_leased FROM event_store.outbox WHERE id = :lease_id AND available_at > now();
SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM second_claim)) AS current_ack;
-- An expired lease that nobody claimed again can still be acknowledged.
SELECT event_store.outbox_send('lease', '{}') AS lease_id \gset
CREATE TEMP TABLE expired_claim AS SELECT * FROM event_store.outbox_claim('lease', 1, '1 hour');
SELECT pg_temp.expire(:lease_id);
SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM expired_claim)) AS ack_after_expiry;

-- Delay: not claimable before it is due.
SELECT event_store.outbox_send('later', '{}', NULL, NULL, '1 hour') AS later_id \gset
SELECT count(*) FROM event_store.outbox_claim('later');
SELECT topic, available, delayed FROM event_store.outbox_depth WHERE topic = 'later';
SELECT pg_temp.expire(:later_id);
SELECT id = :later_id AS due FROM event_store.outbox_claim('later');

-- Nack with retry_in: back after that time, receipt void, error kept.
SELECT event_store.outbox_send('retry', '{}', 'r') AS retry_id \gset
SELECT event_store.outbox_send('retry', '{}', 'r') AS retry_next_id \gset
CREATE TEMP TABLE c1 AS SELECT * FROM event_store.outbox_claim('retry');
SELECT event_store.outbox_nack(ARRAY(SELECT receipt FROM c1), '1 hour', 'smtp timeout');
SELECT attempts, receipt IS NULL AS receipt_void, last_error FROM event_store.outbox WHERE id = :retry_id;
-- Waiting for its retry it still blocks the next message of its key.
SELECT count(*) FROM event_store.outbox_claim('retry');
SELECT pg_temp.expire(:retry_id);
SELECT id = :retry_id AS retried, attempts FROM event_store.outbox_claim('retry');

-- Backoff: with retry_in NULL, base * 2^(attempts - 1), capped at the max.
SELECT topic, max_attempts, backoff_base, backoff_max, lease
FROM event_store.outbox_configure('backoff', max_attempts => 4,
	backoff_base => '10 seconds', backoff_max => '25 seconds');
SELECT event_store.outbox_send('backoff', '{}') AS backoff_id \gset
CREATE FUNCTION pg_temp.claim_and_nack() RETURNS interval LANGUAGE sql AS $$
	UPDATE event_store.outbox SET available_at = now() WHERE topic = 'backoff';
	SELECT event_store.outbox_nack(ARRAY(SELECT receipt FROM event_store.outbox_claim('backoff')));
	SELECT date_trunc('second', available_at - now() + interval '0.5 second')
	FROM event_store.outbox WHERE topic = 'backoff';
$$;
SELECT pg_temp.claim_and_nack() AS after_attempt_1;
SELECT pg_temp.claim_and_nack() AS after_attempt_2;
SELECT pg_temp.claim_and_nack() AS after_attempt_3;
-- The fourth nack uses the last attempt: dead letter.
SELECT pg_temp.claim_and_nack() AS after_attempt_4;
SELECT id = :backoff_id AS dead, topic, attempts, last_error IS NULL AS no_error
FROM event_store.outbox_dead_letters;
SELECT topic, available, dead FROM event_store.outbox_depth WHERE topic = 'backoff';

-- Leases that expire on the last attempt also end in the dead letters.
SELECT topic, max_attempts FROM event_store.outbox_configure('poison', max_attempts => 2);
SELECT event_store.outbox_send('poison', '{}') AS poison_id \gset
SELECT attempts FROM event_store.outbox_claim('poison', 1, '1 hour');
SELECT pg_temp.expire(:poison_id);
SELECT attempts FROM event_store.outbox_claim('poison', 1, '1 hour');
SELECT pg_temp.expire(:poison_id);
SELECT count(*) AS claimed_again FROM event_store.outbox_claim('poison', 1);
SELECT id = :poison_id AS dead, attempts, last_error FROM event_store.outbox_dead_letters WHERE topic = 'poison';

-- Redrive: back in the queue with attempts reset, under its id.
SELECT event_store.outbox_redrive(ARRAY[:poison_id]::bigint[]);
SELECT id = :poison_id AS redriven, attempts FROM event_store.outbox_claim('poison');
SELECT event_store.outbox_redrive_topic('backoff');
SELECT count(*) FROM event_store.outbox_dead_letters;
-- Nack by id (the operator form); attempts count claims, not nacks: the
-- message dies at the nack of its second claim.
SELECT event_store.outbox_nack_ids(ARRAY[:poison_id]::bigint[], '0 seconds', 'try again');
SELECT attempts FROM event_store.outbox_claim('poison');
SELECT event_store.outbox_nack_ids(ARRAY[:poison_id]::bigint[], NULL, 'given up');
SELECT id = :poison_id AS dead, attempts, last_error FROM event_store.outbox_dead_letters WHERE topic = 'poison';
-- Purge.
SELECT event_store.outbox_purge_dead_letters(ARRAY[:poison_id, 424242]::bigint[]);
SELECT count(*) FROM event_store.outbox_dead_letters WHERE topic = 'poison';

-- The topic's lease applies when the claim passes NULL.
SELECT topic, lease FROM event_store.outbox_configure('short', lease => '10 milliseconds');
SELECT event_store.outbox_send('short', '{}') AS short_id \gset
SELECT count(*) FROM event_store.outbox_claim('short', 1, NULL);
-- (At least the lease's 10 ms pass: a lower bound, whatever the speed.)
SELECT pg_sleep(0.05);
SELECT attempts FROM event_store.outbox_claim('short', 1, NULL);
-- Settings keep what a call leaves NULL.
SELECT topic, max_attempts, backoff_base, backoff_max, lease
FROM event_store.outbox_configure('short', max_attempts => 3);

-- Bad input.
SELECT try($$SELECT event_store.outbox_send(NULL, '{}')$$);
SELECT try($$SELECT event_store.outbox_send('', '{}')$$);
SELECT try($$SELECT event_store.outbox_send(repeat('t', 256), '{}')$$);
SELECT try($$SELECT event_store.outbox_send('t', NULL)$$);
SELECT try($$SELECT event_store.outbox_send('t', '{}', repeat('k', 1025))$$);
SELECT try($$SELECT event_store.outbox_send('t', '{}', NULL, '[1]')$$);
SELECT try($$SELECT event_store.outbox_send('t', '{}', NULL, '"h"')$$);
SELECT try($$SELECT event_store.outbox_send('t', '{}', NULL, NULL, '-1 second')$$);
SET event_store.max_message_size = '1kB';
SELECT try(format($f$SELECT event_store.outbox_send('t', '"%s"')$f$, repeat('x', 2000)));
RESET event_store.max_message_size;
SELECT try($$SELECT * FROM event_store.outbox_claim(NULL)$$);
SELECT try($$SELECT * FROM event_store.outbox_claim('')$$);
SELECT try($$SELECT * FROM event_store.outbox_claim('t', -1)$$);
SELECT try($$SELECT * FROM event_store.outbox_claim('t', NULL)$$);
SELECT try($$SELECT * FROM event_store.outbox_claim('t', 10, '0 seconds')$$);
SELECT try($$SELECT * FROM event_store.outbox_claim('t', 10, '-5 seconds')$$);
SELECT try($$SELECT event_store.outbox_ack(NULL::uuid[])$$);
SELECT try($$SELECT event_store.outbox_ack_ids(NULL)$$);
SELECT try($$SELECT event_store.outbox_nack(NULL::uuid[])$$);
SELECT try($$SELECT event_store.outbox_nack_ids(NULL)$$);
SELECT try($$SELECT event_store.outbox_nack_ids(ARRAY[1], '-1 second')$$);
SELECT try(format($f$SELECT event_store.outbox_nack_ids(ARRAY[1], NULL, '%s')$f$, repeat('e', 9000)));
SELECT try($$SELECT event_store.outbox_configure(NULL)$$);
SELECT try($$SELECT event_store.outbox_configure('t', max_attempts => 0)$$);
SELECT try($$SELECT event_store.outbox_configure('t', lease => '0 seconds')$$);
SELECT try($$SELECT event_store.outbox_configure('t', backoff_base => '-1 second')$$);
SELECT try($$SELECT event_store.outbox_redrive(NULL)$$);
SELECT try($$SELECT event_store.outbox_redrive_topic('')$$);
SELECT try($$SELECT event_store.outbox_purge_dead_letters(NULL)$$);
BEGIN READ ONLY;
SELECT try($$SELECT event_store.outbox_send('t', '{}')$$);
SELECT try($$SELECT * FROM event_store.outbox_claim('t')$$);
COMMIT;
-- Nothing was sent to topic t.
SELECT count(*) FROM event_store.outbox WHERE topic = 't';

-- How the queue statements read the outbox, counted in the entries each
-- index returned (flushed to the statistics between statements).
SET stats_fetch_consistency = none;
CREATE FUNCTION pg_temp.index_reads(index_name text) RETURNS bigint
LANGUAGE sql AS $$
	SELECT idx_tup_read FROM pg_stat_user_indexes
	WHERE schemaname = 'event_store' AND indexrelname = index_name
$$;
CREATE TEMP TABLE outbox_aside AS SELECT * FROM event_store.outbox;
DELETE FROM event_store.outbox;

-- A claim reads its own topic only, however many messages other topics hold
-- ahead of it: it scans the claim index, never the queue in id order, even
-- when the statistics were taken while the queue held one topic (which
-- makes an id-order scan filtered on the topic look as good).  Counted in
-- the primary key: the claim's update reads its 100 rows there; a scan in
-- id order would read the 20,000 messages ahead.
SELECT count(event_store.outbox_send('plan_ahead', jsonb_build_object('n', n)))
FROM generate_series(1, 20000) AS n;
ANALYZE event_store.outbox;
SELECT count(event_store.outbox_send('plan_behind', jsonb_build_object('n', n)))
FROM generate_series(1, 20000) AS n;
SELECT pg_stat_force_next_flush();
SELECT pg_temp.index_reads('outbox_pkey') AS pkey_before \gset
SELECT count(*) FROM event_store.outbox_claim('plan_behind', 100);
SELECT pg_stat_force_next_flush();
SELECT pg_temp.index_reads('outbox_pkey') - :pkey_before < 1000 AS read_only_its_topic;

-- Acks find their messages by primary key whatever the statistics say.  A
-- queue that was busy and is now empty has many pages and no rows; planned
-- on such statistics (a VACUUM makes every session plan again), a lookup by
-- id could take the claim index or the whole table, and would go on doing
-- so as a backlog builds up.  The statistics of an empty queue are set here
-- as a VACUUM leaves them, then 20,000 messages arrive, and 100 are claimed
-- and acked: the claim reads its 100 from the claim index and no more,
-- the acks read nothing there.
SELECT count(event_store.outbox_send('plan_backlog', jsonb_build_object('n', n)))
FROM generate_series(1, 20000) AS n;
UPDATE pg_class SET reltuples = 0
WHERE oid IN ('event_store.outbox'::regclass, 'event_store.outbox_pkey'::regclass,
              'event_store.outbox_topic_id_idx'::regclass);
SELECT pg_stat_force_next_flush();
SELECT pg_temp.index_reads('outbox_topic_id_idx') AS topic_index_before,
       pg_temp.index_reads('outbox_topic_key_id_idx') AS key_index_before,
       seq_scan AS outbox_seq_scans_before
FROM pg_stat_user_tables WHERE relid = 'event_store.outbox'::regclass \gset
SELECT event_store.outbox_ack(array_agg(receipt))
FROM event_store.outbox_claim('plan_backlog', 100);
SELECT pg_stat_force_next_flush();
SELECT pg_temp.index_reads('outbox_topic_id_idx') - :topic_index_before = 100
         AS claim_read_only_its_batch,
       pg_temp.index_reads('outbox_topic_key_id_idx') - :key_index_before = 0
         AS no_key_lookups,
       seq_scan - :outbox_seq_scans_before AS outbox_seq_scans
FROM pg_stat_user_tables WHERE relid = 'event_store.outbox'::regclass;

-- A claim starts at the first available message: it does not step again
-- over the head of the topic (acknowledged messages not yet vacuumed,
-- leased ones, and the index entries their updates left), which the probe
-- that found that message has just stepped over.  With 500 leased, a claim
-- of 10 reads about 800 entries of the claim index; stepping over the head
-- twice would read about 1,300.
SELECT count(*) FROM event_store.outbox_claim('plan_backlog', 500, '1 hour');
SELECT pg_stat_force_next_flush();
SELECT pg_temp.index_reads('outbox_topic_id_idx') AS topic_index_before \gset
SELECT count(*) FROM event_store.outbox_claim('plan_backlog', 10);
SELECT pg_stat_force_next_flush();
SELECT pg_temp.index_reads('outbox_topic_id_idx') - :topic_index_before < 1100
         AS stepped_over_the_head_once;

DELETE FROM event_store.outbox;
INSERT INTO event_store.outbox SELECT * FROM outbox_aside;
ANALYZE event_store.outbox;
RESET stats_fetch_consistency;

-- A claim's max_count may be as large as an integer: it takes what there is.
SELECT count(event_store.outbox_send('huge_batch', to_jsonb(n))) FROM generate_series(1, 3) AS n;
SELECT count(*) FROM event_store.outbox_claim('huge_batch', 2147483647);
SELECT event_store.outbox_ack_ids(ARRAY(SELECT id FROM event_store.outbox WHERE topic = 'huge_batch'));
