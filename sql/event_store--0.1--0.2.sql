-- event_store 0.1 -> 0.2: run by ALTER EXTENSION event_store UPDATE.
--
-- Every change of sql/event_store.sql between the two releases is repeated
-- here, so that an updated database has exactly the objects of a fresh 0.2
-- install (test/t/010_upgrade.pl compares both catalogs).

\echo Use "ALTER EXTENSION event_store UPDATE" to load this file. \quit

--------------------------------------------------------------------------
-- Schema: refuse to run in a schema that a role other than a superuser
-- owns, may create objects in, or has objects in (the same check as the
-- install script's).  0.1 did not check: an installation in such a schema
-- must be made safe before it is updated.
--------------------------------------------------------------------------
DO $schema$
DECLARE
	nsp oid;
	nsp_name text;
	owner_name text;
	owner_is_superuser boolean;
	creator text;
	foreign_object text;
BEGIN
	SELECT e.extnamespace, n.nspname, r.rolname, r.rolsuper
	INTO nsp, nsp_name, owner_name, owner_is_superuser
	FROM pg_catalog.pg_extension AS e
	JOIN pg_catalog.pg_namespace AS n ON n.oid = e.extnamespace
	JOIN pg_catalog.pg_roles AS r ON r.oid = n.nspowner
	WHERE e.extname = 'event_store';

	IF NOT owner_is_superuser THEN
		RAISE EXCEPTION 'schema "%" is owned by role "%", which is not a superuser', nsp_name, owner_name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The extension''s functions run with superuser privileges and find their objects in this schema: its owner could replace them.',
				  HINT = format('Drop schema "%s" and run CREATE EXTENSION again (it creates the schema), or make a superuser its owner.', nsp_name);
	END IF;

	SELECT pg_catalog.string_agg(CASE WHEN a.grantee = 0 THEN 'PUBLIC'
								  ELSE pg_catalog.quote_ident(r.rolname) END, ', ')
	INTO creator
	FROM pg_catalog.pg_namespace AS n,
		 LATERAL pg_catalog.aclexplode(n.nspacl) AS a
	LEFT JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
	WHERE n.oid = nsp AND a.privilege_type = 'CREATE'
	  AND NOT coalesce(r.rolsuper, false);
	IF creator IS NOT NULL THEN
		RAISE EXCEPTION 'schema "%" grants CREATE to roles that are not superusers: %', nsp_name, creator
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'The extension''s functions run with superuser privileges and find their objects in this schema: those roles could put objects in their way.',
				  HINT = format('Revoke CREATE on schema "%s" from them and run CREATE EXTENSION again.', nsp_name);
	END IF;

	SELECT o.kind || ' "' || o.name || '"' INTO foreign_object
	FROM (SELECT 'relation' AS kind, c.relname::text AS name, c.relowner AS owner
		  FROM pg_catalog.pg_class AS c WHERE c.relnamespace = nsp
		  UNION ALL
		  SELECT 'function', p.proname::text, p.proowner
		  FROM pg_catalog.pg_proc AS p WHERE p.pronamespace = nsp
		  UNION ALL
		  SELECT 'type', t.typname::text, t.typowner
		  FROM pg_catalog.pg_type AS t WHERE t.typnamespace = nsp
		  UNION ALL
		  SELECT 'operator', o.oprname::text, o.oprowner
		  FROM pg_catalog.pg_operator AS o WHERE o.oprnamespace = nsp) AS o
	JOIN pg_catalog.pg_roles AS r ON r.oid = o.owner
	WHERE NOT r.rolsuper
	LIMIT 1;
	IF foreign_object IS NOT NULL THEN
		RAISE EXCEPTION 'schema "%" holds % owned by a role that is not a superuser', nsp_name, foreign_object
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('Move the objects of other owners out of schema "%s", or drop it, and run CREATE EXTENSION again.', nsp_name);
	END IF;
END
$schema$;
