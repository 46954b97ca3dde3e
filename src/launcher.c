/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher of the relay workers, and the utility hook that keeps
 *	  them out of the way of DROP DATABASE and its kin.
 *
 * The launcher is a background worker started by the postmaster (the
 * library must be in shared_preload_libraries).  It connects to no
 * database, so it reads only shared catalogs: every ten seconds, or when
 * woken, it lists the databases of pg_database (those named in
 * event_store.databases, when set) and starts a relay worker (relay.c) for
 * each that has none.  Workers are BGW_NEVER_RESTART dynamic workers: the
 * launcher restarts them itself, at once when they exit on purpose, after
 * event_store.restart_time when they fail.  A worker that finds no
 * extension in its database exits and is not started again until CREATE
 * EXTENSION wakes the launcher for that database.
 *
 * PostgreSQL 15's DROP DATABASE (without FORCE) fails while another
 * session is connected, and background workers count.  So the utility hook
 * asks the worker of the database to stop, waits for it, and keeps the
 * launcher from restarting it until the command is done.  The same holds
 * for ALTER DATABASE RENAME and SET TABLESPACE and for CREATE DATABASE with
 * the database as its template.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_relay_start);

/* How often the launcher looks at pg_database without being woken. */
#define LAUNCHER_NAPTIME_MS 10000

/* How long the utility hook waits for a worker to leave its database. */
#define STOP_WAIT_MS 10000

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* This transaction ran relay_start(): wake the launcher at commit. */
static bool wake_launcher_at_commit = false;

/*
 * Register the launcher; called from _PG_init while preloading.
 */
void
es_launcher_register(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_store");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "event_store launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "event_store launcher");
	RegisterBackgroundWorker(&worker);
}

/*
 * Wake the launcher (after CREATE EXTENSION, or when a worker should be
 * started again).
 */
void
es_wake_launcher(void)
{
	int			procno;

	if (!es_shmem_available())
		return;
	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	procno = es_shared->launcher_procno;
	if (procno >= 0)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
	LWLockRelease(es_shared->relay_lock);
}

/* Is this database named in event_store.databases (or is the list empty)? */
bool
es_database_is_listed(const char *datname)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		listed = false;

	if (es_databases == NULL || es_databases[0] == '\0')
		return true;
	raw = pstrdup(es_databases);
	if (!SplitGUCList(raw, ',', &names))
	{
		ereport(LOG,
				(errmsg("event_store.databases is not a valid list: \"%s\"",
						es_databases)));
		return false;
	}
	foreach(lc, names)
	{
		if (strcmp((char *) lfirst(lc), datname) == 0)
			listed = true;
	}
	return listed;
}

typedef struct DatabaseToServe
{
	Oid			oid;
	char		name[NAMEDATALEN];
} DatabaseToServe;

/*
 * The databases that should have a relay worker, allocated in
 * result_context (the transaction's memory is gone after commit).
 */
static List *
databases_to_serve(MemoryContext result_context)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		DatabaseToServe *entry;
		MemoryContext old;

		if (!db->datallowconn || db->datistemplate ||
			!es_database_is_listed(NameStr(db->datname)))
			continue;
		old = MemoryContextSwitchTo(result_context);
		entry = palloc(sizeof(DatabaseToServe));
		entry->oid = db->oid;
		strlcpy(entry->name, NameStr(db->datname), NAMEDATALEN);
		result = lappend(result, entry);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

static void
reset_slot(EsRelaySlot *slot, Oid dboid)
{
	memset(slot, 0, sizeof(EsRelaySlot));
	slot->dboid = dboid;
	slot->procno = -1;
	slot->clean_exit = true;
}

/*
 * The slot of a database, or a free one taken for it, or NULL when all are
 * in use.  Caller holds relay_lock exclusively.
 */
static EsRelaySlot *
slot_for_database(Oid dboid)
{
	EsRelaySlot *free_slot = NULL;

	for (int i = 0; i < es_shared->max_relay_workers; i++)
	{
		if (es_relay_slots[i].dboid == dboid)
			return &es_relay_slots[i];
		if (free_slot == NULL && es_relay_slots[i].dboid == InvalidOid)
			free_slot = &es_relay_slots[i];
	}
	if (free_slot != NULL)
		reset_slot(free_slot, dboid);
	return free_slot;
}

static bool
start_relay_worker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_store");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_relay_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "event_store relay for database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "event_store relay");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(LOG,
				(errmsg("event_store could not start a relay worker for database %u", dboid),
				 errhint("Raise max_worker_processes.")));
		return false;
	}
	pfree(handle);
	return true;
}

/*
 * One pass of the launcher: free the slots of databases that are gone or no
 * longer listed, start the workers that are missing.
 */
static void
launch_missing_workers(MemoryContext pass_context)
{
	List	   *databases = databases_to_serve(pass_context);
	TimestampTz now = GetCurrentTimestamp();
	ListCell   *lc;

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);

	/* Forget databases we no longer serve (their workers exit by themselves). */
	for (int i = 0; i < es_shared->max_relay_workers; i++)
	{
		EsRelaySlot *slot = &es_relay_slots[i];
		bool		wanted = false;

		if (slot->dboid == InvalidOid || slot->pid != 0 || slot->stop_requested)
			continue;
		foreach(lc, databases)
		{
			if (((DatabaseToServe *) lfirst(lc))->oid == slot->dboid)
				wanted = true;
		}
		if (!wanted)
			reset_slot(slot, InvalidOid);
	}

	foreach(lc, databases)
	{
		DatabaseToServe *db = lfirst(lc);
		EsRelaySlot *slot = slot_for_database(db->oid);

		if (slot == NULL)
		{
			ereport(LOG,
					(errmsg("event_store has no relay slot left for database \"%s\"", db->name),
					 errhint("Raise event_store.max_relay_workers.")));
			continue;
		}

		/* Running, starting, or waiting for a reason to run. */
		if (slot->pid != 0 || slot->stop_requested || slot->extension_missing)
			continue;
		if (strcmp(slot->state, "starting") == 0 &&
			!TimestampDifferenceExceeds(slot->started_at, now, 60 * 1000))
			continue;
		if (!slot->clean_exit &&
			!TimestampDifferenceExceeds(slot->exited_at, now, es_restart_time * 1000))
			continue;

		slot->started_at = now;
		strlcpy(slot->state, "starting", sizeof(slot->state));
		LWLockRelease(es_shared->relay_lock);
		if (!start_relay_worker(db->oid))
		{
			LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
			slot->clean_exit = false;
			slot->exited_at = now;
			strlcpy(slot->state, "could not start", sizeof(slot->state));
			continue;
		}
		LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	}
	LWLockRelease(es_shared->relay_lock);
}

static void
launcher_shmem_exit(int code, Datum arg)
{
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	es_shared->launcher_pid = 0;
	es_shared->launcher_procno = -1;
	LWLockRelease(es_shared->relay_lock);
}

void
es_launcher_main(Datum main_arg)
{
	MemoryContext pass_context;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* No database: the launcher reads shared catalogs only. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	es_shared->launcher_pid = MyProcPid;
#if PG_VERSION_NUM >= 170000
	es_shared->launcher_procno = MyProcNumber;
#else
	es_shared->launcher_procno = MyProc->pgprocno;
#endif
	es_shared->launcher_started_at = GetCurrentTimestamp();
	LWLockRelease(es_shared->relay_lock);
	on_shmem_exit(launcher_shmem_exit, 0);

	pgstat_report_activity(STATE_IDLE, NULL);
	pass_context = AllocSetContextCreate(TopMemoryContext, "event_store launcher pass",
										 ALLOCSET_DEFAULT_SIZES);

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		launch_missing_workers(pass_context);
		MemoryContextReset(pass_context);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 LAUNCHER_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * relay_start(): called at the end of CREATE EXTENSION.  At commit, the
 * launcher starts the worker of this database (it stopped looking after a
 * worker found no extension here).
 */
Datum
event_store_relay_start(PG_FUNCTION_ARGS)
{
	if (es_shmem_available())
		wake_launcher_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * Commit or abort of a transaction: the pending launcher wake-up.
 */
void
es_launcher_at_transaction_end(bool committed)
{
	if (!wake_launcher_at_commit)
		return;
	wake_launcher_at_commit = false;
	if (!committed)
		return;

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_relay_workers; i++)
	{
		if (es_relay_slots[i].dboid == MyDatabaseId)
			es_relay_slots[i].extension_missing = false;
	}
	LWLockRelease(es_shared->relay_lock);
	es_wake_launcher();
}

/*
 * Ask the relay worker of a database to leave it, and keep it away until
 * allow_database_relay() (end of the utility command).  Waits up to
 * STOP_WAIT_MS for it to exit.
 */
static void
stop_database_relay(Oid dboid)
{
	EsRelaySlot *slot = NULL;
	TimestampTz start = GetCurrentTimestamp();

	/*
	 * Take a slot even when the database has no worker, so that the
	 * launcher does not start one while the command runs.
	 */
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	slot = slot_for_database(dboid);
	if (slot == NULL)
	{
		/* No slot left: the launcher cannot start a worker for it either. */
		LWLockRelease(es_shared->relay_lock);
		return;
	}
	slot->stop_requested = true;
	if (slot->pid != 0)
		kill(slot->pid, SIGTERM);
	LWLockRelease(es_shared->relay_lock);

	for (;;)
	{
		pid_t		pid;

		LWLockAcquire(es_shared->relay_lock, LW_SHARED);
		pid = slot->dboid == dboid ? slot->pid : 0;
		LWLockRelease(es_shared->relay_lock);
		if (pid == 0 ||
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(), STOP_WAIT_MS))
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * The command is done: the launcher may start the worker again at its next
 * pass (if the database still exists).  Not woken now: a DROP DATABASE
 * commits after this, and a worker started before would only fail.
 */
static void
allow_database_relay(Oid dboid)
{
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_relay_workers; i++)
	{
		if (es_relay_slots[i].dboid == dboid)
		{
			es_relay_slots[i].stop_requested = false;
			es_relay_slots[i].clean_exit = true;
		}
	}
	LWLockRelease(es_shared->relay_lock);
}

/*
 * The database a utility statement needs to itself (no other session
 * connected), or InvalidOid.
 */
static Oid
database_needed_alone(Node *parsetree)
{
	const char *name = NULL;
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			name = ((DropdbStmt *) parsetree)->dbname;
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

static void
es_process_utility(PlannedStmt *pstmt, const char *queryString,
				   bool readOnlyTree, ProcessUtilityContext context,
				   ParamListInfo params, QueryEnvironment *queryEnv,
				   DestReceiver *dest, QueryCompletion *qc)
{
	ProcessUtility_hook_type next = prev_ProcessUtility ? prev_ProcessUtility
		: standard_ProcessUtility;
	Oid			dboid = InvalidOid;

	if (es_shmem_available())
		dboid = database_needed_alone(pstmt->utilityStmt);

	if (!OidIsValid(dboid))
	{
		next(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		return;
	}

	stop_database_relay(dboid);
	PG_TRY();
	{
		next(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		allow_database_relay(dboid);
	}
	PG_END_TRY();
}

void
es_utility_hook_init(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = es_process_utility;
}
