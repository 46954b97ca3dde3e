-- outbox_ack and outbox_nack by receipt, whatever form a driver sends the
-- receipts in; the operators' by-id forms outbox_ack_ids and
-- outbox_nack_ids; a claim's lease and every other policy value from the
-- topic's settings.
SELECT reset_event_store();

CREATE TEMP TABLE claimed (id bigint, receipt uuid);
CREATE FUNCTION pg_temp.claim(topic text, n integer DEFAULT 1) RETURNS text
LANGUAGE sql AS $$
	DELETE FROM claimed;
	INSERT INTO claimed SELECT id, receipt FROM event_store.outbox_claim(topic, n);
	SELECT '{' || string_agg(receipt::text, ',' ORDER BY id) || '}' FROM claimed;
$$;
SELECT event_store.outbox_send('acks', jsonb_build_object('n', n)) FROM generate_series(1, 8) AS n;

-- An untyped literal, as drivers that send arrays as strings do.
SELECT pg_temp.claim('acks') AS receipts \gset
SELECT event_store.outbox_ack(:'receipts') AS untyped_literal;
-- A text array, as drivers that send a list of strings do.
SELECT pg_temp.claim('acks') AS receipts \gset
SELECT event_store.outbox_ack(ARRAY(SELECT receipt::text FROM claimed)) AS text_array;
SELECT event_store.outbox_ack(ARRAY['00000000-0000-0001-0000-000000000000', NULL]) AS array_of_literals;
-- A uuid array, as before.
SELECT pg_temp.claim('acks') AS receipts \gset
SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM claimed)) AS uuid_array;
-- An untyped parameter (a driver's bind parameter).
SELECT pg_temp.claim('acks') AS receipts \gset
PREPARE ack_receipts AS SELECT event_store.outbox_ack($1);
EXECUTE ack_receipts(:'receipts');
DEALLOCATE ack_receipts;
-- Nack in the same forms.
SELECT pg_temp.claim('acks') AS receipts \gset
SELECT event_store.outbox_nack(:'receipts', '0 seconds') AS untyped_literal;
SELECT pg_temp.claim('acks') AS receipts \gset
SELECT event_store.outbox_nack(ARRAY(SELECT receipt::text FROM claimed), '0 seconds', 'busy') AS text_array;
SELECT pg_temp.claim('acks') AS receipts \gset
PREPARE nack_receipts AS SELECT event_store.outbox_nack($1, $2);
EXECUTE nack_receipts(:'receipts', '0 seconds');
DEALLOCATE nack_receipts;
SELECT count(*) AS left_in_outbox, max(attempts) AS attempts, max(last_error) AS last_error
FROM event_store.outbox WHERE topic = 'acks';

-- By id: the operators' forms have their own names.
SELECT event_store.outbox_nack_ids(ARRAY(SELECT id FROM event_store.outbox WHERE topic = 'acks'),
	'0 seconds', 'by hand');
SELECT event_store.outbox_ack_ids(ARRAY(SELECT id FROM event_store.outbox WHERE topic = 'acks'));
SELECT count(*) AS left_in_outbox FROM event_store.outbox WHERE topic = 'acks';
-- They are also outbox_ack(bigint[]) and outbox_nack(bigint[], ...), as in
-- 0.1: an array of integers takes them, whoever holds the messages.
SELECT count(event_store.outbox_send('acks', '{}')) AS sent FROM generate_series(1, 3);
SELECT pg_temp.claim('acks', 2) AS receipts \gset
SELECT event_store.outbox_nack(ARRAY(SELECT id FROM claimed ORDER BY id LIMIT 1), '0 seconds', 'by id') AS nacked_by_id;
SELECT event_store.outbox_nack(ARRAY[]::bigint[]) AS nacked_nothing;
SELECT attempts, last_error, receipt IS NULL AS unleased
FROM event_store.outbox WHERE id = (SELECT min(id) FROM claimed);
SELECT event_store.outbox_ack(ARRAY(SELECT id FROM event_store.outbox WHERE topic = 'acks')) AS acked_by_id;
SELECT event_store.outbox_ack(ARRAY[9000000001, 9000000002]) AS acked_unknown_ids;
SELECT count(*) AS left_in_outbox FROM event_store.outbox WHERE topic = 'acks';

-- Bad input: NULL in every form is 22004, a receipt that is no UUID 22P02.
SELECT try($$SELECT event_store.outbox_ack(NULL)$$);
SELECT try($$SELECT event_store.outbox_ack(NULL::text[])$$);
SELECT try($$SELECT event_store.outbox_ack(NULL::uuid[])$$);
SELECT try($$SELECT event_store.outbox_nack(NULL)$$);
SELECT try($$SELECT event_store.outbox_nack(NULL, '1 second')$$);
SELECT try($$SELECT event_store.outbox_ack('{not-a-receipt}')$$);
SELECT try($$SELECT event_store.outbox_ack('not an array')$$);
SELECT try($$SELECT event_store.outbox_ack(ARRAY['not-a-receipt'])$$);
SELECT try($$SELECT event_store.outbox_nack(ARRAY['not-a-receipt'])$$);
SELECT try($$SELECT event_store.outbox_ack(NULL::bigint[])$$);
SELECT try($$SELECT event_store.outbox_nack(NULL::bigint[])$$);
SELECT try($$SELECT event_store.outbox_ack(ARRAY[1.5])$$);
SELECT try($$SELECT event_store.outbox_ack_ids(NULL)$$);
SELECT try($$SELECT event_store.outbox_nack_ids(NULL)$$);

-- A claim without a lease takes the topic's: the lease outbox_configure
-- set, or the default.
SELECT event_store.outbox_send('policy', '{}') FROM generate_series(1, 2);
SELECT topic, lease FROM event_store.outbox_configure('policy', lease => '2 seconds');
SELECT attempts FROM event_store.outbox_claim('policy', 1);
SELECT available_at - now() BETWEEN interval '1 second' AND interval '3 seconds' AS topic_lease
FROM event_store.outbox WHERE topic = 'policy' AND attempts = 1;
SELECT event_store.outbox_send('default', '{}');
SELECT attempts FROM event_store.outbox_claim('default', 1);
SELECT available_at - now() BETWEEN interval '25 seconds' AND interval '32 seconds' AS default_lease
FROM event_store.outbox WHERE topic = 'default';
-- A lease given to the claim wins.
SELECT attempts FROM event_store.outbox_claim('policy', 1, '1 minute');
SELECT available_at - now() BETWEEN interval '55 seconds' AND interval '62 seconds' AS claim_lease
FROM event_store.outbox WHERE topic = 'policy' AND id = (SELECT max(id) FROM event_store.outbox WHERE topic = 'policy');

-- A lease counts from when the claim returns: a claim that takes longer
-- than its lease (100,000 messages, half a second) hands out leases that
-- still run, so an immediate second claim gets nothing and the first
-- consumer's ack counts every message.
SELECT count(event_store.outbox_send('bulk', '{}')) FROM generate_series(1, 100000);
CREATE TEMP TABLE bulk_claim AS
SELECT receipt FROM event_store.outbox_claim('bulk', 1000000, '500 milliseconds');
SELECT count(*) AS first_claim FROM bulk_claim;
SELECT count(*) AS second_claim FROM event_store.outbox_claim('bulk', 1000000, '500 milliseconds');
SELECT event_store.outbox_ack(ARRAY(SELECT receipt FROM bulk_claim)) AS acked;

-- The settings in effect, defaults included, come from one place; a topic
-- configured for the first time starts from them.
SELECT * FROM event_store.outbox_topic_settings('unconfigured');
SELECT * FROM event_store.outbox_configure('fresh', max_attempts => 3);
SELECT * FROM event_store.outbox_topic_settings('fresh');
SELECT a.attname, pg_get_expr(d.adbin, d.adrelid) AS column_default
FROM pg_attribute AS a LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = 'event_store.outbox_topics'::regclass AND a.attnum > 0
ORDER BY a.attnum;
-- Nack's backoff and maximum attempts follow the defaults of a topic
-- without settings: 1 second after the first attempt.
SELECT event_store.outbox_send('unconfigured', '{}') AS id \gset
SELECT event_store.outbox_nack(ARRAY(SELECT receipt FROM event_store.outbox_claim('unconfigured')));
SELECT date_trunc('second', available_at - now() + interval '0.5 second') AS backoff
FROM event_store.outbox WHERE id = :id;
