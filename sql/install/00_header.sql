-- event_store: an event store and transactional outbox inside PostgreSQL.
--
-- The install script event_store--<version>.sql is made of the files of
-- sql/install/, in the order of their names, one concern each: the schema
-- and roles, the event log, the feed, subscriptions, the outbox, the relay,
-- views, what pg_dump saves, privileges.  Every object lives in schema
-- event_store (created by CREATE EXTENSION from the control file) and is
-- named with its schema.

\echo Use "CREATE EXTENSION event_store" to load this file. \quit
