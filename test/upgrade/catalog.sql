-- A normalised description of everything extension event_store owns, one
-- line per fact, sorted: two databases whose outputs are equal have the
-- same objects with the same definitions, privileges and dump settings.
-- Used by test/t/010_upgrade.pl to compare an updated install with a fresh
-- one.  OIDs never appear; role names do.
\pset format unaligned
\pset tuples_only on
WITH ext AS (
	SELECT oid, extnamespace, extconfig, extcondition, extversion
	FROM pg_extension WHERE extname = 'event_store'
), members AS (
	SELECT d.classid, d.objid, d.objsubid
	FROM pg_depend d, ext
	WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
	  AND d.deptype = 'e'
), facts(fact) AS (
	SELECT 'version ' || extversion FROM ext
	UNION ALL
	SELECT 'schema ' || n.nspname || ' owner super=' || r.rolsuper || ' acl ' ||
		coalesce(n.nspacl::text, '')
	FROM ext JOIN pg_namespace n ON n.oid = ext.extnamespace
	JOIN pg_roles r ON r.oid = n.nspowner
	UNION ALL
	SELECT 'member ' || pg_describe_object(classid, objid, objsubid) FROM members
	UNION ALL
	-- functions: their whole definition (volatility, security, settings)
	SELECT 'function ' || p.oid::regprocedure::text || E'\n' ||
		pg_get_functiondef(p.oid) || E'\nacl ' || coalesce(p.proacl::text, '')
	FROM members m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
	WHERE p.prokind <> 'a'
	UNION ALL
	-- relations: kind, options, privileges
	SELECT 'relation ' || c.oid::regclass::text || ' kind ' || c.relkind::text ||
		' persistence ' || c.relpersistence::text ||
		' options ' || coalesce(c.reloptions::text, '') ||
		' acl ' || coalesce(c.relacl::text, '')
	FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	UNION ALL
	-- columns, in order, of tables, views and composite types
	SELECT 'column ' || a.attrelid::regclass::text || ' ' || a.attnum || ' ' ||
		a.attname || ' ' || format_type(a.atttypid, a.atttypmod) ||
		' notnull=' || a.attnotnull ||
		' collation=' || coalesce((SELECT collname FROM pg_collation WHERE oid = a.attcollation), '') ||
		' default=' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '') ||
		' acl ' || coalesce(a.attacl::text, '')
	FROM members m
	JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
	LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
	UNION ALL
	SELECT 'constraint ' || conrelid::regclass::text || ' ' || conname || ' ' ||
		pg_get_constraintdef(co.oid)
	FROM pg_constraint co, ext
	WHERE co.connamespace = ext.extnamespace
	UNION ALL
	SELECT 'index ' || pg_get_indexdef(i.indexrelid)
	FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid, ext
	WHERE c.relnamespace = ext.extnamespace
	UNION ALL
	SELECT 'view ' || c.oid::regclass::text || E'\n' || pg_get_viewdef(c.oid)
	FROM members m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
	WHERE c.relkind IN ('v', 'm')
	UNION ALL
	SELECT 'sequence ' || s.seqrelid::regclass::text || ' ' ||
		format_type(s.seqtypid, NULL) || ' start ' || s.seqstart ||
		' increment ' || s.seqincrement || ' min ' || s.seqmin ||
		' max ' || s.seqmax || ' cache ' || s.seqcache || ' cycle ' || s.seqcycle
	FROM members m JOIN pg_sequence s ON m.classid = 'pg_class'::regclass AND s.seqrelid = m.objid
	UNION ALL
	SELECT 'trigger ' || pg_get_triggerdef(t.oid)
	FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid, ext
	WHERE c.relnamespace = ext.extnamespace AND NOT t.tgisinternal
	UNION ALL
	SELECT 'type ' || t.oid::regtype::text || ' ' || t.typtype::text || ' acl ' ||
		coalesce(t.typacl::text, '')
	FROM members m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
	UNION ALL
	-- what pg_dump saves of the extension's tables
	SELECT 'dumped ' || u.relid::regclass::text || ' where ' || u.condition
	FROM ext, unnest(ext.extconfig, ext.extcondition) AS u(relid, condition)
	UNION ALL
	SELECT 'comment ' || pg_describe_object(m.classid, m.objid, m.objsubid) || ' ' || d.description
	FROM members m JOIN pg_description d
	  ON d.classoid = m.classid AND d.objoid = m.objid AND d.objsubid = m.objsubid
	UNION ALL
	-- the extension's roles and their memberships
	SELECT 'role ' || r.rolname || ' login=' || r.rolcanlogin || ' super=' || r.rolsuper ||
		' member of ' || coalesce((
			SELECT string_agg(g.rolname, ',' ORDER BY g.rolname)
			FROM pg_auth_members am JOIN pg_roles g ON g.oid = am.roleid
			WHERE am.member = r.oid), '')
	FROM pg_roles r WHERE r.rolname LIKE 'event\_store\_%'
)
SELECT fact FROM facts ORDER BY fact COLLATE "C";
