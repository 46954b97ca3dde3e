-- event_store 0.1 -> 0.2: run by ALTER EXTENSION event_store UPDATE.
--
-- Every change of sql/event_store.sql between the two releases is repeated
-- here, so that an updated database has exactly the objects of a fresh 0.2
-- install (test/t/010_upgrade.pl compares both catalogs).

\echo Use "ALTER EXTENSION event_store UPDATE" to load this file. \quit

--------------------------------------------------------------------------
-- Durable positions: a high-water mark of the feed's positions that
-- survives restarts, crashes and restores, and a trigger that makes the
-- feed read its counter again after rows are loaded by a statement.
--------------------------------------------------------------------------
CREATE SEQUENCE event_store.position_high_water AS bigint
	MINVALUE 0 START WITH 0 NO CYCLE;
REVOKE ALL ON event_store.position_high_water FROM PUBLIC;

-- Every position 0.1 handed out that anyone may have seen: the log's
-- largest position, or a checkpoint above it (the head of 0.1 could pass
-- the last event when a transaction that appended rolled back).
SELECT pg_catalog.setval('event_store.position_high_water', h.position, true)
FROM (SELECT greatest((SELECT max(e.position) FROM event_store.events AS e),
					  (SELECT max(c.position) FROM event_store.subscription_checkpoints AS c))
		  AS position) AS h
WHERE h.position > 0;

CREATE FUNCTION event_store.events_loaded()
RETURNS trigger
AS 'MODULE_PATHNAME', 'event_store_events_loaded'
LANGUAGE C;
REVOKE ALL ON FUNCTION event_store.events_loaded() FROM PUBLIC;

CREATE TRIGGER events_loaded
	AFTER INSERT ON event_store.events
	FOR EACH STATEMENT EXECUTE FUNCTION event_store.events_loaded();

--------------------------------------------------------------------------
-- Backups: pg_dump saves the extension's data (see the install script).
-- Checkpoints lose their foreign key, which a parallel pg_restore cannot
-- honour; a trigger removes a subscription's checkpoints with it.
--------------------------------------------------------------------------
ALTER TABLE event_store.subscription_checkpoints
	DROP CONSTRAINT subscription_checkpoints_subscription_fkey;

CREATE FUNCTION event_store.subscription_deleted()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM event_store.subscription_checkpoints AS c
	WHERE c.subscription = OLD.name;
	RETURN NULL;
END
$$;
REVOKE ALL ON FUNCTION event_store.subscription_deleted() FROM PUBLIC;

CREATE TRIGGER subscription_deleted
	AFTER DELETE ON event_store.subscriptions
	FOR EACH ROW EXECUTE FUNCTION event_store.subscription_deleted();

SELECT pg_catalog.pg_extension_config_dump('event_store.events', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.position_high_water', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.subscription_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.outbox_topics', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.event_routes', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.relay_routes', '');
