-- event_store 0.1 -> 0.2: run by ALTER EXTENSION event_store UPDATE.
--
-- Every change of sql/event_store.sql between the two releases is repeated
-- here, so that an updated database has exactly the objects of a fresh 0.2
-- install (test/t/010_upgrade.pl compares both catalogs).

\echo Use "ALTER EXTENSION event_store UPDATE" to load this file. \quit
