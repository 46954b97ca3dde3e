/*-------------------------------------------------------------------------
 *
 * utility_hook.c
 *	  The ProcessUtility hook: it keeps the relay workers out of the way of
 *	  commands that need a database to themselves, and orders ALTER
 *	  EXTENSION UPDATE with the relay.
 *
 * PostgreSQL 15's DROP DATABASE (without FORCE) fails while another
 * session is connected, and background workers count.  So the hook asks
 * the worker of the database to leave (through its latch: it exits
 * quietly between two steps of its cycle), keeps the launcher from
 * starting one while the command runs, and afterwards either forgets the
 * database (dropped) or has a worker started again at once (renamed,
 * moved, copied).  The same holds for ALTER DATABASE RENAME and SET
 * TABLESPACE and for CREATE DATABASE with the database as its template.
 * ALTER EXTENSION event_store UPDATE takes the extension's lock before it
 * runs, as DROP EXTENSION does, so that the relay and the callers, which
 * take that lock first, wait for it instead of deadlocking with it.  And
 * CREATE EXTENSION of an earlier version, whose script does not check the
 * extension's schema, is refused into a schema that exists already.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "nodes/parsenodes.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/timestamp.h"

#include "event_store.h"

/* How long the hook waits for a worker to leave its database. */
#define STOP_WAIT_MS 10000

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * Ask the relay worker of a database to leave it, and keep workers away
 * until allow_database_relay() (end of the utility command).  The worker
 * leaves between two steps of its cycle; it is terminated only if it has
 * not left after STOP_WAIT_MS.  Returns whether the database's entry was
 * made for the command (the database had none).
 *
 * Not inlined: its locals would then live in the caller's frame across
 * PG_TRY's setjmp, where the compiler cannot vouch for them.
 */
static pg_noinline bool
stop_database_relay(Oid dboid)
{
	EsRelayDatabase *db;
	bool		made = false;
	TimestampTz start = GetCurrentTimestamp();
	bool		terminated = false;

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	db = es_relay_database(dboid);
	if (db == NULL)
	{
		db = es_relay_database_add(dboid);
		made = (db != NULL);
	}
	if (db != NULL)
		db->stop_requested = true;
	LWLockRelease(es_shared->relay_lock);

	for (;;)
	{
		pid_t		pid = 0;
		bool		present = false;

		LWLockAcquire(es_shared->relay_lock, LW_SHARED);
		for (int i = 0; i < es_shared->max_relay_workers; i++)
		{
			EsRelayWorker *w = &es_relay_workers[i];

			if (w->dboid != dboid || w->exited)
				continue;
			/* registered long ago and never ran: not in the way */
			if (w->pid == 0 &&
				TimestampDifferenceExceeds(w->started_at, GetCurrentTimestamp(),
										   ES_WORKER_START_TIMEOUT_MS))
				continue;
			present = true;
			pid = w->pid;
			if (w->procno >= 0)
				SetLatch(&GetPGProcByNumber(w->procno)->procLatch);
		}
		LWLockRelease(es_shared->relay_lock);
		if (!present)
			break;
		if (TimestampDifferenceExceeds(start, GetCurrentTimestamp(), STOP_WAIT_MS))
		{
			if (pid == 0 || terminated)
				break;
			kill(pid, SIGTERM);
			terminated = true;
			start = GetCurrentTimestamp();
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return made;
}

/*
 * The command is done.  A dropped database is forgotten; otherwise workers
 * may come back, and one is started at once when the database has the
 * extension (a renamed database is served again within a second).
 */
static void
allow_database_relay(Oid dboid, bool entry_made, bool dropped)
{
	EsRelayDatabase *db;
	bool		wake = false;

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	db = es_relay_database(dboid);
	if (db != NULL)
	{
		db->stop_requested = false;
		if (dropped || entry_made)
			db->dboid = InvalidOid;
		else
		{
			db->failed = false;
			pg_atomic_write_u32(&db->pending, 1);
			wake = true;
		}
	}
	es_shared->rescan_requested = true;
	LWLockRelease(es_shared->relay_lock);
	if (wake)
		es_wake_launcher();
}

/*
 * The database a utility statement needs to itself (no other session
 * connected), or InvalidOid.
 */
static Oid
database_needed_alone(Node *parsetree, bool *drop)
{
	const char *name = NULL;
	ListCell   *lc;

	*drop = false;
	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) parsetree)->dbname;
			*drop = true;
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				name = ((RenameStmt *) parsetree)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
					name = ((AlterDatabaseStmt *) parsetree)->dbname;
			}
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *option = lfirst(lc);

				if (strcmp(option->defname, "template") == 0 && option->arg != NULL)
					name = defGetString(option);
			}
			break;
		default:
			break;
	}
	return name ? get_database_oid(name, true) : InvalidOid;
}

/*
 * CREATE EXTENSION event_store VERSION '<older version>' into a schema
 * event_store that exists already.  The current install script refuses a
 * schema that someone else owns, may create objects in, or holds objects
 * in (sql/install/10_schema.sql); the scripts of earlier versions check
 * nothing.  So an earlier version is installed only into the schema that
 * CREATE EXTENSION makes for it.
 */
static void
refuse_old_version_in_existing_schema(Node *parsetree)
{
	CreateExtensionStmt *stmt;
	const char *version = NULL;
	ListCell   *lc;

	if (!IsA(parsetree, CreateExtensionStmt))
		return;
	stmt = (CreateExtensionStmt *) parsetree;
	if (strcmp(stmt->extname, ES_EXTENSION_NAME) != 0)
		return;
	foreach(lc, stmt->options)
	{
		DefElem    *option = lfirst(lc);

		if (strcmp(option->defname, "new_version") == 0)
			version = defGetString(option);
	}
	if (version == NULL || strcmp(version, ES_EXTENSION_VERSION) == 0)
		return;
	if (stmt->if_not_exists && OidIsValid(get_extension_oid(ES_EXTENSION_NAME, true)))
		return;
	if (!OidIsValid(get_namespace_oid(ES_SCHEMA, true)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("version \"%s\" of extension \"%s\" cannot be installed into the existing schema \"%s\"",
					version, ES_EXTENSION_NAME, ES_SCHEMA),
			 errdetail("The install script of version \"%s\" does not check who owns the schema or may create objects in it.",
					   version),
			 errhint("Install version \"%s\" and check the schema as it does, or drop schema \"%s\" so that CREATE EXTENSION creates it.",
					 ES_EXTENSION_VERSION, ES_SCHEMA)));
}

/*
 * ALTER EXTENSION event_store UPDATE: take the extension's lock first, as
 * DROP EXTENSION does, before the update script locks the tables.
 */
static void
lock_extension_for_update(Node *parsetree)
{
	Oid			extoid;

	if (!IsA(parsetree, AlterExtensionStmt) ||
		strcmp(((AlterExtensionStmt *) parsetree)->extname, ES_EXTENSION_NAME) != 0)
		return;
	extoid = get_extension_oid(ES_EXTENSION_NAME, true);
	if (OidIsValid(extoid))
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessExclusiveLock);
}

static void
es_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	ProcessUtility_hook_type next = prev_ProcessUtility ? prev_ProcessUtility
		: standard_ProcessUtility;
	Oid			dboid = InvalidOid;
	bool		dropping = false;
	volatile bool drop;			/* read after PG_TRY */
	bool		entry_made;

	refuse_old_version_in_existing_schema(pstmt->utilityStmt);
	lock_extension_for_update(pstmt->utilityStmt);
	if (es_shmem_available())
		dboid = database_needed_alone(pstmt->utilityStmt, &dropping);
	drop = dropping;

	if (!OidIsValid(dboid))
	{
		next(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		return;
	}

	entry_made = stop_database_relay(dboid);
	PG_TRY();
	{
		next(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		allow_database_relay(dboid, entry_made, false);
		PG_RE_THROW();
	}
	PG_END_TRY();
	allow_database_relay(dboid, entry_made, drop);
}

void
es_utility_hook_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = es_process_utility;
}
