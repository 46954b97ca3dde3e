/*-------------------------------------------------------------------------
 *
 * schema.c
 *	  Finding the extension's own objects, and checking that the installed
 *	  SQL objects are the version this library was built for.
 *
 * The C functions never go through search_path or through the name of a
 * schema: the extension's namespace is the one pg_extension records for it
 * (extnamespace), and its relations are looked up by name inside that
 * namespace, which only a superuser owns (the install script refuses any
 * other).
 *
 * The pg_extension lookup costs a catalog index scan, so its result is
 * kept for the backend's life and trusted while the events table it found
 * is still there under the same name: DROP EXTENSION drops that table, so
 * a recreated extension is looked up again.  A version mismatch is not
 * kept: every call checks again, so ALTER EXTENSION UPDATE in another
 * session takes effect at once.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/trigger.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "event_store.h"

/* What the last successful lookup found. */
static Oid	cached_namespace = InvalidOid;
static Oid	cached_events_relid = InvalidOid;
static Oid	cached_extension_oid = InvalidOid;

/* The transaction that holds the extension's lock. */
static LocalTransactionId locked_in = InvalidLocalTransactionId;

static void
report_not_installed(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("extension \"%s\" is not installed in this database",
					ES_EXTENSION_NAME),
			 errhint("Run CREATE EXTENSION %s.", ES_EXTENSION_NAME)));
}

/*
 * Read the extension's row of pg_extension: its namespace and its version.
 * Returns false when the extension is not installed.
 */
static bool
read_extension_row(Oid *extoid, Oid *namespace, char **version)
{
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tuple;
	bool		found = false;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(ES_EXTENSION_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_extension form = (Form_pg_extension) GETSTRUCT(tuple);
		bool		isnull;
		Datum		datum;

		*extoid = form->oid;
		*namespace = form->extnamespace;
		datum = heap_getattr(tuple, Anum_pg_extension_extversion,
							 RelationGetDescr(rel), &isnull);
		*version = isnull ? pstrdup("") : TextDatumGetCString(datum);
		found = true;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The namespace of the extension's objects.  Errors out when the extension
 * is not installed, or when its SQL objects are of another version than
 * this library (a library update installed, ALTER EXTENSION UPDATE not run
 * yet): the library then refuses to touch tables whose shape it may not
 * know.
 */
Oid
es_schema_oid(void)
{
	Oid			namespace;
	char	   *version;
	Oid			events_relid;
	Oid			extoid;

	if (OidIsValid(cached_events_relid))
	{
		if (locked_in != MyProc->lxid)
		{
			/* Wait for a DROP or ALTER EXTENSION in progress. */
			LockDatabaseObject(ExtensionRelationId, cached_extension_oid, 0,
							   AccessShareLock);
			locked_in = MyProc->lxid;
		}
		if (get_relname_relid("events", cached_namespace) == cached_events_relid)
			return cached_namespace;
	}

	if (!read_extension_row(&extoid, &namespace, &version))
		report_not_installed();
	if (locked_in != MyProc->lxid || extoid != cached_extension_oid)
	{
		/*
		 * Wait for a DROP or ALTER EXTENSION in progress, then look again:
		 * the extension may be gone or changed.
		 */
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
		locked_in = MyProc->lxid;
		cached_extension_oid = extoid;
		if (!read_extension_row(&extoid, &namespace, &version) ||
			extoid != cached_extension_oid)
		{
			cached_events_relid = InvalidOid;
			cached_extension_oid = InvalidOid;
			report_not_installed();
		}
	}
	if (strcmp(version, ES_EXTENSION_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is at version \"%s\" but its library is version \"%s\"",
						ES_EXTENSION_NAME, version, ES_EXTENSION_VERSION),
				 errhint("Run ALTER EXTENSION %s UPDATE.", ES_EXTENSION_NAME)));

	events_relid = get_relname_relid("events", namespace);
	if (OidIsValid(events_relid))
	{
		cached_namespace = namespace;
		cached_events_relid = events_relid;
	}
	return namespace;
}

Oid
es_relation_oid(const char *relname)
{
	Oid			namespace = es_schema_oid();
	Oid			relid = get_relname_relid(relname, namespace);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"%s.%s\" of extension %s does not exist",
						get_namespace_name(namespace), relname,
						ES_EXTENSION_NAME),
				 errhint("The extension is damaged; reinstall it.")));
	return relid;
}

/*
 * Open one of the extension's relations (table, index or sequence) with the
 * given lock.  The OID is looked up before the lock is granted, so a DROP
 * EXTENSION that commits while we wait leaves us an OID that is gone: that
 * is reported as the extension missing, never as an internal error.
 */
Relation
es_open_relation(const char *relname, LOCKMODE lockmode)
{
	Relation	rel = try_relation_open(es_relation_oid(relname), lockmode);

	if (rel == NULL)
	{
		cached_events_relid = InvalidOid;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database",
						ES_EXTENSION_NAME),
				 errdetail("It was dropped while this command waited for a lock on \"%s\".",
						   relname),
				 errhint("Run CREATE EXTENSION %s.", ES_EXTENSION_NAME)));
	}
	return rel;
}

/*
 * The body of a statement trigger on one of the extension's tables whose
 * rows every backend caches (event_routes, outbox_topics): a relcache
 * invalidation of the table tells them to read it again.
 */
Datum
es_invalidate_trigger_table(FunctionCallInfo fcinfo, const char *function_name)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s must be called as a trigger", function_name)));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}
