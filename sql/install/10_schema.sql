--------------------------------------------------------------------------
-- The schema.  The SECURITY DEFINER functions below run as the superuser
-- who installs the extension and reach its objects through this schema:
-- whoever owns it, or may create objects in it, could put their own code
-- in their way.  CREATE EXTENSION creates the schema, owned by that
-- superuser; it also accepts one that exists already (pg_restore creates
-- it first), and then it must be just as safe.
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
		RAISE EXCEPTION 'schema "%" grants CREATE to roles that are not superusers', nsp_name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('It grants CREATE to %s.  The extension''s functions run with superuser privileges and find their objects in this schema: those roles could put objects in their way.', creator),
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
		  FROM pg_catalog.pg_operator AS o WHERE o.oprnamespace = nsp
		  UNION ALL
		  SELECT 'operator class', c.opcname::text, c.opcowner
		  FROM pg_catalog.pg_opclass AS c WHERE c.opcnamespace = nsp
		  UNION ALL
		  SELECT 'operator family', f.opfname::text, f.opfowner
		  FROM pg_catalog.pg_opfamily AS f WHERE f.opfnamespace = nsp
		  UNION ALL
		  SELECT 'collation', c.collname::text, c.collowner
		  FROM pg_catalog.pg_collation AS c WHERE c.collnamespace = nsp
		  UNION ALL
		  SELECT 'conversion', c.conname::text, c.conowner
		  FROM pg_catalog.pg_conversion AS c WHERE c.connamespace = nsp
		  UNION ALL
		  SELECT 'statistics object', s.stxname::text, s.stxowner
		  FROM pg_catalog.pg_statistic_ext AS s WHERE s.stxnamespace = nsp
		  UNION ALL
		  SELECT 'text search configuration', c.cfgname::text, c.cfgowner
		  FROM pg_catalog.pg_ts_config AS c WHERE c.cfgnamespace = nsp
		  UNION ALL
		  SELECT 'text search dictionary', d.dictname::text, d.dictowner
		  FROM pg_catalog.pg_ts_dict AS d WHERE d.dictnamespace = nsp) AS o
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

--------------------------------------------------------------------------
-- Roles.  Roles are cluster-wide, so a second database that installs the
-- extension finds them already there; DROP EXTENSION leaves them behind.
--------------------------------------------------------------------------
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'event_store_reader') THEN
		CREATE ROLE event_store_reader NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'event_store_writer') THEN
		CREATE ROLE event_store_writer NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'event_store_admin') THEN
		CREATE ROLE event_store_admin NOLOGIN;
	END IF;
END
$roles$;

-- A writer can do everything a reader can, an admin everything a writer can.
GRANT event_store_reader TO event_store_writer;
GRANT event_store_writer TO event_store_admin;

REVOKE ALL ON SCHEMA event_store FROM PUBLIC;
GRANT USAGE ON SCHEMA event_store TO event_store_reader;
