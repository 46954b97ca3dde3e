--------------------------------------------------------------------------
-- Backups.  pg_dump saves the rows of these tables and the values of these
-- sequences (an extension's own tables are otherwise left out of a dump).
-- Not saved: event_store.relay_sink_state (counters), event_store.relay_parked, copies of messages already relayed
-- that expire within event_store.relay_reference_ttl.  README.md, "Backup
-- and restore", says what a restore brings back.
--------------------------------------------------------------------------
SELECT pg_catalog.pg_extension_config_dump('event_store.events', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.position_high_water', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.subscription_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_topics', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_dedup', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.event_routes', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.relay_routes', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.relay_sink_definitions', '');
