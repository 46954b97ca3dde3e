/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher of the relay workers, and the utility hook that keeps
 *	  them out of the way of DROP DATABASE and its kin.
 *
 * The launcher is a background worker started by the postmaster (the
 * library must be in shared_preload_libraries).  It connects to no
 * database, so it reads only shared catalogs.  Workers run on demand: at
 * most event_store.max_relay_workers at once, each a BGW_NEVER_RESTART
 * dynamic worker of one database (relay.c), started when that database has
 * work pending (a commit that sent a message to a routed topic, appended
 * an event for a subscription, changed a route, or a delayed message that
 * came due) and leaving when it has had nothing to do for
 * event_store.relay_idle_timeout, or as soon as it is idle while other
 * databases wait for a worker.  Databases that wait are served oldest
 * first.
 *
 * Which databases have the extension is learnt once: the launcher starts a
 * worker for every database it has not seen; a worker that finds no
 * extension exits, and the launcher remembers the database in its own
 * memory and never starts a worker there again, until CREATE EXTENSION
 * (relay_start, at commit) gives the database its shared entry.
 *
 * PostgreSQL 15's DROP DATABASE (without FORCE) fails while another
 * session is connected, and background workers count.  So the utility hook
 * asks the worker of the database to leave (through its latch: it exits
 * quietly between two steps of its cycle), keeps the launcher from
 * starting one while the command runs, and afterwards either forgets the
 * database (dropped) or has a worker started again at once (renamed,
 * moved, copied).  The same holds for ALTER DATABASE RENAME and SET
 * TABLESPACE and for CREATE DATABASE with the database as its template.
 * ALTER EXTENSION event_store UPDATE takes the extension's lock before it
 * runs, as DROP EXTENSION does, so that the relay and the callers, which
 * take that lock first, wait for it instead of deadlocking with it.
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
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "event_store.h"

/* How often the launcher reads pg_database without being asked to. */
#define LAUNCHER_RESCAN_MS 10000

/* How long a registered worker may take to start before its slot is reused. */
#define WORKER_START_TIMEOUT_MS 60000

/* How long the utility hook waits for a worker to leave its database. */
#define STOP_WAIT_MS 10000

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * The launcher's own memory: databases it has seen (those without the
 * extension among them), and the handles of the workers it started.
 */
typedef struct KnownDatabase
{
	Oid			dboid;			/* hash key */
	bool		seen;			/* in the last read of pg_database */
	bool		listed;			/* connectable and in event_store.databases */
	bool		checked;		/* a worker looked (or it has an entry) */
	char		name[NAMEDATALEN];
} KnownDatabase;

static HTAB *known_databases = NULL;
static BackgroundWorkerHandle **worker_handles = NULL;

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
 * Wake the launcher: a database has work and no worker, or a worker left.
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

/*
 * Read pg_database into known_databases: which databases exist, and which
 * may be served.
 */
static void
read_databases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tuple;
	HASH_SEQ_STATUS status;
	KnownDatabase *known;

	hash_seq_init(&status, known_databases);
	while ((known = hash_seq_search(&status)) != NULL)
		known->seen = false;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tuple);
		bool		found;

		known = hash_search(known_databases, &db->oid, HASH_ENTER, &found);
		if (!found)
			known->checked = false;
		known->seen = true;
		known->listed = db->datallowconn && !db->datistemplate &&
			es_database_is_listed(NameStr(db->datname));
		strlcpy(known->name, NameStr(db->datname), NAMEDATALEN);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();

	/* Forget databases that are gone. */
	hash_seq_init(&status, known_databases);
	while ((known = hash_seq_search(&status)) != NULL)
	{
		if (!known->seen)
			(void) hash_search(known_databases, &known->dboid, HASH_REMOVE, NULL);
	}
}

static const char *
database_name(Oid dboid)
{
	KnownDatabase *known = hash_search(known_databases, &dboid, HASH_FIND, NULL);
	static char buf[32];

	if (known != NULL)
		return known->name;
	snprintf(buf, sizeof(buf), "with OID %u", dboid);
	return buf;
}

/*
 * Start a worker for a database in a free worker slot.  Caller holds
 * relay_lock exclusively; it is released and taken again around the
 * registration.  Returns the worker's index, or -1 when no slot or no
 * background worker is free.
 */
static int
start_worker(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	EsRelayWorker *slot = NULL;
	int			index;
	uint32		generation;
	bool		registered;

	for (index = 0; index < es_shared->max_relay_workers; index++)
	{
		if (es_relay_workers[index].dboid == InvalidOid)
		{
			slot = &es_relay_workers[index];
			break;
		}
	}
	if (slot == NULL)
		return -1;

	generation = ++es_shared->worker_generation;
	memset(slot, 0, sizeof(EsRelayWorker));
	slot->dboid = dboid;
	slot->generation = generation;
	slot->procno = -1;
	slot->started_at = GetCurrentTimestamp();
	LWLockRelease(es_shared->relay_lock);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "event_store");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "es_relay_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "event_store relay for database \"%s\"",
			 database_name(dboid));
	snprintf(worker.bgw_type, BGW_MAXLEN, "event_store relay");
	worker.bgw_main_arg = Int32GetDatum(index);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	worker.bgw_notify_pid = MyProcPid;

	registered = RegisterDynamicBackgroundWorker(&worker, &handle);
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	if (!registered)
	{
		slot->dboid = InvalidOid;
		if (!TimestampDifferenceExceeds(es_shared->start_failed_at,
										GetCurrentTimestamp(), 60000))
		{
			es_shared->start_failed_at = GetCurrentTimestamp();
			return -1;
		}
		es_shared->start_failed_at = GetCurrentTimestamp();
		LWLockRelease(es_shared->relay_lock);
		ereport(LOG,
				(errmsg("event_store could not start a relay worker for database \"%s\": no background worker slot is free",
						database_name(dboid)),
				 errhint("Raise max_worker_processes to at least event_store.max_relay_workers plus one for the launcher, plus what other extensions and parallel queries need.")));
		LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
		return -1;
	}
	if (worker_handles[index] != NULL)
		pfree(worker_handles[index]);
	worker_handles[index] = handle;
	return index;
}

/*
 * Free the slots of workers that are gone: learn whether they found the
 * extension.  Caller holds relay_lock exclusively.
 */
static void
reap_workers(TimestampTz now)
{
	for (int i = 0; i < es_shared->max_relay_workers; i++)
	{
		EsRelayWorker *slot = &es_relay_workers[i];
		bool		gone = false;
		pid_t		pid;

		if (slot->dboid == InvalidOid)
			continue;
		if (slot->exited)
			gone = true;
		else if (worker_handles[i] != NULL &&
				 GetBackgroundWorkerPid(worker_handles[i], &pid) == BGWH_STOPPED)
			gone = true;
		else if (worker_handles[i] == NULL && slot->pid == 0 &&
				 TimestampDifferenceExceeds(slot->started_at, now, WORKER_START_TIMEOUT_MS))
			gone = true;	/* started by an earlier launcher, never ran */
		if (!gone)
			continue;

		{
			KnownDatabase *known = hash_search(known_databases, &slot->dboid,
											   HASH_FIND, NULL);
			EsRelayDatabase *db = es_relay_database(slot->dboid);

			if (known != NULL)
				known->checked = true;
			if (db != NULL && db->worker == i)
			{
				/* It died before it could say so itself. */
				db->worker = -1;
				db->failed = true;
				db->exited_at = now;
				strlcpy(db->state, "failed", sizeof(db->state));
			}
		}
		slot->dboid = InvalidOid;
		slot->pid = 0;
		slot->procno = -1;
	}
}

/*
 * One pass: forget databases that are gone, start workers for databases
 * with work (oldest waiting first) and for databases never looked at.
 * Returns how long to sleep, in ms.
 */
static long
launcher_pass(bool rescan)
{
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = LAUNCHER_RESCAN_MS;
	int			waiting = 0;
	HASH_SEQ_STATUS status;
	KnownDatabase *known;

	if (rescan)
		read_databases();

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	reap_workers(now);

	/* Entries of databases that are gone, or no longer to be served. */
	for (int i = 0; i < es_shared->max_relay_databases; i++)
	{
		EsRelayDatabase *db = &es_relay_databases[i];

		if (db->dboid == InvalidOid)
			continue;
		known = hash_search(known_databases, &db->dboid, HASH_FIND, NULL);
		if (known != NULL)
			known->checked = true;
		/* (An entry with work pending may be newer than the read.) */
		if (rescan && (known == NULL || !known->listed) &&
			db->worker < 0 && !db->stop_requested &&
			pg_atomic_read_u32(&db->pending) == 0)
			db->dboid = InvalidOid;
	}

	/*
	 * Databases with work, oldest first.  A worker that failed is started
	 * again after event_store.restart_time.
	 */
	for (;;)
	{
		EsRelayDatabase *oldest = NULL;

		for (int i = 0; i < es_shared->max_relay_databases; i++)
		{
			EsRelayDatabase *db = &es_relay_databases[i];

			if (db->dboid == InvalidOid || db->worker >= 0 || db->stop_requested)
				continue;
			known = hash_search(known_databases, &db->dboid, HASH_FIND, NULL);
			if (known != NULL && !known->listed)
				continue;
			if (db->next_due != 0 && db->next_due <= now)
				pg_atomic_write_u32(&db->pending, 1);
			else if (db->next_due != 0)
			{
				long		secs;
				int			usecs;

				TimestampDifference(now, db->next_due, &secs, &usecs);
				sleep_ms = Min(sleep_ms, secs * 1000 + usecs / 1000 + 1);
			}
			if (pg_atomic_read_u32(&db->pending) == 0)
				continue;
			if (db->failed &&
				!TimestampDifferenceExceeds(db->exited_at, now, es_restart_time * 1000))
			{
				sleep_ms = Min(sleep_ms, 200);
				continue;
			}
			if (db->waiting_since == 0)
				db->waiting_since = now;
			strlcpy(db->state, "waiting for a worker", sizeof(db->state));
			if (oldest == NULL || db->waiting_since < oldest->waiting_since)
				oldest = db;
		}
		if (oldest == NULL)
			break;
		{
			Oid			dboid = oldest->dboid;
			int			index = start_worker(dboid);
			EsRelayDatabase *db;

			if (index < 0)
				break;
			/* start_worker released the lock for a moment: look again. */
			db = es_relay_database(dboid);
			if (db != NULL && db->worker < 0)
			{
				db->worker = index;
				db->next_due = 0;
				db->waiting_since = 0;
				strlcpy(db->state, "starting", sizeof(db->state));
			}
		}
	}

	/* Databases never looked at: does the extension live there? */
	hash_seq_init(&status, known_databases);
	while ((known = hash_seq_search(&status)) != NULL)
	{
		bool		running = false;

		if (known->checked || !known->listed)
			continue;
		for (int i = 0; i < es_shared->max_relay_workers; i++)
		{
			if (es_relay_workers[i].dboid == known->dboid)
				running = true;
		}
		if (running || es_relay_database(known->dboid) != NULL)
			continue;
		if (start_worker(known->dboid) < 0)
			waiting++;
	}

	/* What still waits: busy workers give way as soon as they are idle. */
	for (int i = 0; i < es_shared->max_relay_databases; i++)
	{
		EsRelayDatabase *db = &es_relay_databases[i];

		if (db->dboid != InvalidOid && db->worker < 0 && !db->stop_requested &&
			pg_atomic_read_u32(&db->pending) != 0)
			waiting++;
	}
	es_shared->databases_waiting = waiting;
	LWLockRelease(es_shared->relay_lock);

	if (waiting > 0)
		sleep_ms = Min(sleep_ms, 1000);
	return sleep_ms;
}

static void
launcher_shmem_exit(int code, Datum arg)
{
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	es_shared->launcher_pid = 0;
	es_shared->launcher_procno = -1;
	es_shared->databases_waiting = 0;
	LWLockRelease(es_shared->relay_lock);
}

void
es_launcher_main(Datum main_arg)
{
	HASHCTL		ctl;
	TimestampTz last_scan = 0;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* No database: the launcher reads shared catalogs only. */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(KnownDatabase);
	known_databases = hash_create("event_store known databases", 256, &ctl,
								  HASH_ELEM | HASH_BLOBS);
	worker_handles = MemoryContextAllocZero(TopMemoryContext,
											sizeof(BackgroundWorkerHandle *) *
											es_shared->max_relay_workers);

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

	for (;;)
	{
		bool		rescan;
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		rescan = (last_scan == 0 ||
				  TimestampDifferenceExceeds(last_scan, GetCurrentTimestamp(),
											 LAUNCHER_RESCAN_MS));
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			rescan = true;
		}
		LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
		if (es_shared->rescan_requested)
			rescan = true;
		es_shared->rescan_requested = false;
		LWLockRelease(es_shared->relay_lock);
		if (rescan)
			last_scan = GetCurrentTimestamp();

		sleep_ms = launcher_pass(rescan);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

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
										   WORKER_START_TIMEOUT_MS))
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
