/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher of the relay workers.
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
 * DROP DATABASE and its kin keep workers away through the utility hook
 * (utility_hook.c), which the launcher obeys: it starts no worker for a
 * database whose entry has stop_requested set.
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
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "compat.h"
#include "event_store.h"
#include "guc.h"

/* How often the launcher reads pg_database without being asked to. */
#define LAUNCHER_RESCAN_MS 10000


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
	bool		has_extension;	/* it had an entry: the extension is there */
	bool		look_wanted;	/* a look at it waits for a free worker */
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
		{
			known->checked = false;
			known->has_extension = false;
			known->look_wanted = false;
		}
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
				 TimestampDifferenceExceeds(slot->started_at, now, ES_WORKER_START_TIMEOUT_MS))
			gone = true;	/* started by an earlier launcher, never ran */
		if (!gone)
			continue;

		{
			KnownDatabase *known = hash_search(known_databases, &slot->dboid,
											   HASH_FIND, NULL);
			EsRelayDatabase *db = es_relay_database(slot->dboid);

			if (known != NULL)
			{
				known->checked = true;
				if (slot->no_extension)
					known->has_extension = false;
			}
			if (db != NULL && db->worker == i)
			{
				/* It died before it could say so itself. */
				db->worker = -1;
				db->failed = true;
				db->exited_at = now;
				db->state = ES_RELAY_FAILED;
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
		{
			known->checked = true;
			known->has_extension = true;
		}
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
			db->state = ES_RELAY_WAITING;
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
				db->state = ES_RELAY_STARTING;
			}
		}
	}

	/*
	 * Databases never looked at: does the extension live there?  And, at
	 * each rescan, databases with the extension whose entry went to another
	 * database (relay_state.c): a wake-up that found no entry free, and
	 * their delayed messages and scavenging, wait for that look.
	 */
	hash_seq_init(&status, known_databases);
	while ((known = hash_seq_search(&status)) != NULL)
	{
		bool		running = false;

		if (!known->listed)
			continue;
		if (known->checked && !known->look_wanted &&
			!(rescan && known->has_extension))
			continue;
		for (int i = 0; i < es_shared->max_relay_workers; i++)
		{
			if (es_relay_workers[i].dboid == known->dboid)
				running = true;
		}
		if (running || es_relay_database(known->dboid) != NULL)
		{
			known->look_wanted = false;
			continue;
		}
		if (start_worker(known->dboid) < 0)
		{
			/* No worker free: look again at the next pass, not the next rescan. */
			known->look_wanted = true;
			waiting++;
		}
		else
			known->look_wanted = false;
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
	es_shared->launcher_procno = ES_MY_PROCNO;
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
