/*-------------------------------------------------------------------------
 *
 * schema.c
 *	  Finding the extension's own relations.
 *
 * The C functions never go through search_path: every relation is looked
 * up by name inside schema event_store, which the extension owns.  The
 * lookups are syscache hits, so they are cheap enough to repeat on every
 * call, and they stay right across DROP/CREATE EXTENSION.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/lsyscache.h"

#include "event_store.h"

Oid
es_schema_oid(void)
{
	Oid			nspid = get_namespace_oid(ES_SCHEMA, true);

	if (!OidIsValid(nspid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"event_store\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION event_store.")));
	return nspid;
}

Oid
es_relation_oid(const char *relname)
{
	Oid			relid = get_relname_relid(relname, es_schema_oid());

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" of extension event_store does not exist",
						ES_SCHEMA, relname),
				 errhint("The extension is damaged; reinstall it.")));
	return relid;
}
