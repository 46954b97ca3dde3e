-- The queue features: batch send, deduplication keys, lease extension by
-- receipt, and the claim that waits for messages.
SELECT reset_event_store();

-- Batch send: one message per payload, keys and headers by index, ids in
-- the order of the arrays.
SELECT cardinality(event_store.outbox_send_batch('batch',
	ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[],
	ARRAY['k1', NULL, 'k1'],
	ARRAY['{"h": 1}', NULL, NULL]::jsonb[])) AS sent;
SELECT id = min(id) OVER () + row_number() OVER (ORDER BY id) - 1 AS consecutive,
	   payload, key, headers, attempts
FROM event_store.outbox WHERE topic = 'batch' ORDER BY id;
SELECT event_store.outbox_send_batch('batch', '{}'::jsonb[]) AS empty_batch;
SELECT cardinality(event_store.outbox_send_batch('batch-delayed', ARRAY['1', '2']::jsonb[],
	delay => '1 hour')) AS sent_delayed;
SELECT count(*) AS claimed FROM event_store.outbox_claim('batch-delayed', 10);
SELECT count(*) AS waiting_for_delay FROM event_store.outbox
WHERE topic = 'batch-delayed' AND available_at > now() + '50 minutes';
-- Per-key order holds across a batch: k1's second message waits for its first.
SELECT payload, key FROM event_store.outbox_claim('batch', 10) ORDER BY id;

-- Bad batches write nothing.
SELECT try($$SELECT event_store.outbox_send_batch('batch', NULL)$$);
SELECT try($$SELECT event_store.outbox_send_batch('batch', ARRAY['1', NULL]::jsonb[])$$);
SELECT try($$SELECT event_store.outbox_send_batch('batch', ARRAY['1', '2']::jsonb[], ARRAY['a'])$$);
SELECT try($$SELECT event_store.outbox_send_batch('batch', ARRAY['1']::jsonb[], NULL, ARRAY['1', '2']::jsonb[])$$);
SELECT try($$SELECT event_store.outbox_send_batch('batch', ARRAY['1']::jsonb[], NULL, ARRAY['[1]']::jsonb[])$$);
SELECT try($$SELECT event_store.outbox_send_batch('batch', ARRAY[['1'], ['2']]::jsonb[])$$);
SELECT try($$SELECT event_store.outbox_send_batch('batch', ARRAY['1']::jsonb[], ARRAY[repeat('k', 1025)])$$);
SELECT try($$SELECT event_store.outbox_send_batch('', ARRAY['1']::jsonb[])$$);
SELECT try($$SELECT event_store.outbox_send_batch('batch', ARRAY['1']::jsonb[], delay => '-1 second')$$);
SELECT count(*) AS in_outbox FROM event_store.outbox WHERE topic = 'batch';

-- Deduplication: a second send of a key within the window returns the
-- first message's id and writes nothing; other topics and other keys are
-- not affected; after the window the key sends again.
SELECT event_store.outbox_send('dedup', '{"try": 1}', dedup_key => 'order-1') AS first \gset
SELECT event_store.outbox_send('dedup', '{"try": 2}', dedup_key => 'order-1') = :first AS same_id;
SELECT count(*) AS messages, min(payload::text) AS kept FROM event_store.outbox WHERE topic = 'dedup';
SELECT event_store.outbox_send('dedup', '{}', dedup_key => 'order-2') <> :first AS other_key;
SELECT event_store.outbox_send('dedup-other', '{}', dedup_key => 'order-1') <> :first AS other_topic;
SELECT event_store.outbox_send('dedup', '{}') <> :first AS without_key;
-- Acknowledged, the message is still remembered for the window.
SELECT event_store.outbox_ack_ids(ARRAY[:first::bigint]) AS acked;
SELECT event_store.outbox_send('dedup', '{"try": 3}', dedup_key => 'order-1') = :first AS same_id_after_ack;
SELECT count(*) AS messages FROM event_store.outbox WHERE topic = 'dedup';
-- A window that has passed: a new message.
SELECT pg_sleep(0.05);
SELECT event_store.outbox_send('dedup', '{"try": 4}', dedup_key => 'order-1',
	dedup_window => '10 milliseconds') > :first AS new_after_window;
SELECT count(*) AS remembered FROM event_store.outbox_dedup WHERE topic = 'dedup';
-- A send that rolled back is forgotten.
BEGIN;
SELECT event_store.outbox_send('dedup', '{}', dedup_key => 'order-3') IS NOT NULL AS sent;
ROLLBACK;
SELECT count(*) AS remembered_after_rollback FROM event_store.outbox_dedup WHERE dedup_key = 'order-3';
SELECT event_store.outbox_send('dedup', '{}', dedup_key => 'order-3') IS NOT NULL AS sent_again;
SELECT count(*) AS order_3_messages FROM event_store.outbox WHERE topic = 'dedup' AND payload = '{}'
	AND id = (SELECT message_id FROM event_store.outbox_dedup WHERE dedup_key = 'order-3');
SELECT event_store.outbox_dedup_purge('1 hour') AS purged_none;
SELECT event_store.outbox_dedup_purge('0 seconds') > 0 AS purged;
SELECT try($$SELECT event_store.outbox_send('dedup', '{}', dedup_key => '')$$);
SELECT try($$SELECT event_store.outbox_send('dedup', '{}', dedup_key => repeat('d', 1025))$$);
SELECT try($$SELECT event_store.outbox_send('dedup', '{}', dedup_key => 'x', dedup_window => '0 seconds')$$);
SELECT try($$SELECT event_store.outbox_send('dedup', '{}', dedup_key => 'x', dedup_window => '-1 day')$$);
SELECT try($$SELECT event_store.outbox_dedup_purge(NULL)$$);
-- The senders need no privilege on the table.
SELECT has_table_privilege('event_store_writer', 'event_store.outbox_dedup', 'SELECT') AS writer_reads_dedup;

-- Lease extension, fenced by the receipt like an ack.
CREATE TEMP TABLE claimed (id bigint, receipt uuid);
SELECT event_store.outbox_send('extend', '{}') IS NOT NULL AS sent;
INSERT INTO claimed SELECT id, receipt FROM event_store.outbox_claim('extend', 1, '1 second');
SELECT event_store.outbox_extend(ARRAY(SELECT receipt FROM claimed), '1 hour') AS extended;
SELECT available_at > now() + '59 minutes' AS lease_moved FROM event_store.outbox WHERE topic = 'extend';
-- The other forms: text[], an array literal, and the topic's lease.
SELECT event_store.outbox_extend(ARRAY(SELECT receipt::text FROM claimed), '2 hours') AS text_array;
SELECT event_store.outbox_extend((SELECT '{' || receipt || '}' FROM claimed)) AS literal_topic_lease;
SELECT available_at BETWEEN now() + '29 seconds' AND now() + '40 seconds' AS topic_lease
FROM event_store.outbox WHERE topic = 'extend';
-- A receipt that is no longer current extends nothing: not after the
-- message was nacked (and claimed again), nor after it was acked.
SELECT event_store.outbox_nack(ARRAY(SELECT receipt FROM claimed), '0 seconds') AS nacked;
SELECT event_store.outbox_extend(ARRAY(SELECT receipt FROM claimed), '1 hour') AS stale_after_nack;
SELECT count(*) AS reclaimed FROM event_store.outbox_claim('extend', 1);
SELECT event_store.outbox_extend(ARRAY(SELECT receipt FROM claimed), '1 hour') AS stale_after_reclaim;
SELECT event_store.outbox_extend('{00000000-0000-0001-0000-000000000000}') AS unknown;
SELECT event_store.outbox_extend('{}'::uuid[]) AS empty;
SELECT try($$SELECT event_store.outbox_extend(NULL)$$);
SELECT try($$SELECT event_store.outbox_extend(NULL::uuid[], '1 hour')$$);
SELECT try($$SELECT event_store.outbox_extend('{00000000-0000-0001-0000-000000000000}', '0 seconds')$$);
SELECT try($$SELECT event_store.outbox_extend(ARRAY['not-a-receipt'])$$);

-- The claim that waits.  With messages available, it returns at once.
SELECT event_store.outbox_send('wait', '{"n": 1}') IS NOT NULL AS sent;
SELECT clock_timestamp() AS started \gset
SELECT payload FROM event_store.outbox_claim('wait', 10, wait => '1 minute');
SELECT clock_timestamp() - :'started' < interval '30 seconds' AS at_once;
-- Without messages it returns nothing when the wait is over.
SELECT clock_timestamp() AS started \gset
SELECT count(*) AS claimed FROM event_store.outbox_claim('wait', 10, wait => '200 milliseconds');
SELECT clock_timestamp() - :'started' >= interval '190 milliseconds' AS waited;
-- A zero wait is no wait; a delayed message that becomes due ends the wait.
SELECT count(*) AS claimed FROM event_store.outbox_claim('wait', 10, wait => '0 seconds');
SELECT event_store.outbox_send('wait', '{"n": 2}', delay => '300 milliseconds') IS NOT NULL AS sent_delayed;
SELECT clock_timestamp() AS started \gset
SELECT payload FROM event_store.outbox_claim('wait', 10, wait => '5 minutes');
SELECT clock_timestamp() - :'started' < interval '2 minutes' AS woke_when_due;
-- The positional form of 0.1 still works.
SELECT count(*) AS claimed FROM event_store.outbox_claim('wait', 10, '1 minute');
SELECT try($$SELECT event_store.outbox_claim('wait', 10, wait => '-1 second')$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT try($$SELECT event_store.outbox_claim('wait', 10, wait => '1 second')$$);
SELECT count(*) AS claimed_without_wait FROM event_store.outbox_claim('wait', 10);
ROLLBACK;

-- The one-statement consume: claimed and deleted in the caller's
-- transaction.  A rollback puts the messages back as they were.
SELECT cardinality(event_store.outbox_send_batch('consume',
	ARRAY['1', '2', '3', '4']::jsonb[], ARRAY['a', 'a', NULL, 'b'])) AS sent;
BEGIN;
SELECT payload, key, attempts, receipt FROM event_store.outbox_consume('consume', 10);
ROLLBACK;
SELECT count(*) AS back_in_outbox, max(attempts) AS attempts FROM event_store.outbox WHERE topic = 'consume';
-- Per-key order: 'a''s second message comes once the first is consumed.
SELECT payload FROM event_store.outbox_consume('consume', 10);
SELECT payload FROM event_store.outbox_consume('consume', 10);
SELECT count(*) AS left_in_outbox FROM event_store.outbox WHERE topic = 'consume';
-- A message whose last attempt's lease expired goes to the dead letters.
SELECT event_store.outbox_configure('consume', max_attempts => 1) IS NOT NULL AS configured;
SELECT event_store.outbox_send('consume', '"last"') IS NOT NULL AS sent;
SELECT count(*) AS claimed FROM event_store.outbox_claim('consume', 1, '1 millisecond');
SELECT pg_sleep(0.05);
SELECT count(*) AS consumed FROM event_store.outbox_consume('consume', 10);
SELECT payload, attempts, last_error FROM event_store.outbox_dead_letters WHERE topic = 'consume';
-- It waits like a claim.
SELECT event_store.outbox_send('consume', '"later"', delay => '200 milliseconds') IS NOT NULL AS sent_delayed;
SELECT payload FROM event_store.outbox_consume('consume', 10, wait => '5 minutes');
SELECT count(*) AS consumed FROM event_store.outbox_consume('consume', 10, wait => '100 milliseconds');
SELECT try($$SELECT event_store.outbox_consume(NULL)$$);
SELECT try($$SELECT event_store.outbox_consume('consume', -1)$$);
SELECT try($$SELECT event_store.outbox_consume('consume', 1, wait => '-1 second')$$);
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT try($$SELECT event_store.outbox_consume('consume', 10, wait => '1 second')$$);
ROLLBACK;
BEGIN READ ONLY;
SELECT try($$SELECT event_store.outbox_consume('consume', 10)$$);
ROLLBACK;
