-- Topics delivered through the WAL: outbox_configure(..., delivery) and
-- its errors on a server whose wal_level is not logical (this suite's).
-- What a logical decoding client receives is test/t/091_wal_topics.pl.
SELECT reset_event_store();

SELECT current_setting('wal_level') <> 'logical' AS not_logical;

-- The default is 'table'; a topic configured without delivery keeps it.
SELECT topic, delivery FROM event_store.outbox_topic_settings('plain');
SELECT topic, max_attempts, delivery
FROM event_store.outbox_configure('plain', max_attempts => 3);
SELECT topic, delivery FROM event_store.outbox_configure('plain', delivery => 'table');

-- Bad values, and 'wal' without wal_level = logical: nothing changes.
SELECT try($$SELECT event_store.outbox_configure('plain', delivery => 'kafka')$$);
SELECT try($$SELECT event_store.outbox_configure('plain', delivery => '')$$);
SELECT try($$SELECT event_store.outbox_configure('cdc', delivery => 'wal')$$);
SELECT topic, delivery FROM event_store.outbox_topics ORDER BY topic;

-- A topic made a WAL topic while wal_level was logical, on a server
-- restarted with another wal_level: sends to it fail clearly, and write
-- nothing; other topics are not affected.
INSERT INTO event_store.outbox_topics AS t
SELECT * FROM event_store.outbox_topic_settings('cdc');
UPDATE event_store.outbox_topics SET delivery = 'wal' WHERE topic = 'cdc';
SELECT try($$SELECT event_store.outbox_send('cdc', '{"n": 1}')$$);
SELECT try($$SELECT event_store.outbox_send('cdc', '{"n": 1}', delay => '1 minute')$$);
SELECT try($$SELECT event_store.outbox_send_batch('cdc', ARRAY['{"n": 1}'::jsonb])$$);
SELECT event_store.route_events('cdc', 'order');
SELECT try($$SELECT event_store.append_event('order-1', 'Placed', '{}')$$);
SELECT event_store.stream_version('order-1');
SELECT event_store.outbox_send('plain', '{"n": 2}') > 0 AS sent;
SELECT topic, count(*) FROM event_store.outbox GROUP BY topic ORDER BY topic;

-- Back to the table: sends write rows again, at once (the trigger on
-- outbox_topics makes every session read it again).
SELECT topic, delivery FROM event_store.outbox_configure('cdc', delivery => 'table');
SELECT event_store.outbox_send('cdc', '{"n": 3}') > 0 AS sent;
SELECT event_store.append_event('order-1', 'Placed', '{}');
SELECT topic, payload FROM event_store.outbox WHERE topic = 'cdc' ORDER BY id;

-- The trigger is not for calling.
SELECT try($$SELECT event_store.outbox_topics_changed()$$);
SELECT event_store.unroute_events('cdc', 'order');
