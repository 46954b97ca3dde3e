/*-------------------------------------------------------------------------
 *
 * relay_state.c
 *	  The relay's shared state: the entry of each database the relay
 *	  serves, the state of its worker and its name, and the SQL functions
 *	  that report them.
 *
 * The entries live in shared memory (shmem.c) under relay_lock.  The
 * launcher (launcher.c) and the worker (relay.c) move a database from one
 * state to the next; only this file knows what each state is called.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_relay_worker_status);
PG_FUNCTION_INFO_V1(event_store_relay_available);
PG_FUNCTION_INFO_V1(event_store_relay_check);

/*
 * The name of a state, as the relay_workers view shows it.
 */
static const char *
es_relay_state_name(EsRelayState state)
{
	switch (state)
	{
		case ES_RELAY_NO_WORKER:
			return "no worker";
		case ES_RELAY_WAITING:
			return "waiting for a worker";
		case ES_RELAY_STARTING:
			return "starting";
		case ES_RELAY_RUNNING:
			return "running";
		case ES_RELAY_ERROR:
			return "error";
		case ES_RELAY_IDLE:
			return "idle, no worker";
		case ES_RELAY_STOPPED:
			return "stopped";
		case ES_RELAY_FAILED:
			return "failed";
	}
	return "unknown";
}

/*
 * The entry of a database, or NULL.  Caller holds relay_lock.
 */
EsRelayDatabase *
es_relay_database(Oid dboid)
{
	for (int i = 0; i < es_shared->max_relay_databases; i++)
	{
		if (es_relay_databases[i].dboid == dboid)
			return &es_relay_databases[i];
	}
	return NULL;
}

/*
 * An entry to give to another database when none is free: the one of an
 * idle database (no worker, nothing pending, not being dropped), the one
 * whose worker left longest ago, a database whose last worker failed only
 * when there is no other.  Its database loses nothing it needs: a commit
 * there takes an entry again, and the launcher starts a worker for every
 * database with the extension that has no entry (launcher.c), which looks
 * at its delayed messages and its scavenging.  NULL when every entry is in
 * use.  Caller holds relay_lock.
 */
static EsRelayDatabase *
reclaimable_entry(void)
{
	EsRelayDatabase *best = NULL;

	for (int i = 0; i < es_shared->max_relay_databases; i++)
	{
		EsRelayDatabase *db = &es_relay_databases[i];

		if (db->dboid == InvalidOid || db->worker >= 0 || db->stop_requested ||
			pg_atomic_read_u32(&db->pending) != 0)
			continue;
		if (best == NULL ||
			(best->failed && !db->failed) ||
			(best->failed == db->failed && db->exited_at < best->exited_at))
			best = db;
	}
	return best;
}

/*
 * The entry a database without one would get: a free one, else the entry
 * of an idle database (reclaimable_entry); NULL when every entry is in use.
 * Caller holds relay_lock.
 */
static EsRelayDatabase *
entry_to_take(void)
{
	for (int i = 0; i < es_shared->max_relay_databases; i++)
	{
		if (es_relay_databases[i].dboid == InvalidOid)
			return &es_relay_databases[i];
	}
	return reclaimable_entry();
}

/*
 * Whether a database that has no entry can get one.  Caller holds
 * relay_lock.
 */
bool
es_relay_database_room(void)
{
	return entry_to_take() != NULL;
}

/*
 * A new entry for a database (entry_to_take), or NULL when every entry is
 * in use.  Caller holds relay_lock exclusively.  Until a worker has looked,
 * the database is assumed to have routes and subscriptions.
 */
EsRelayDatabase *
es_relay_database_add(Oid dboid)
{
	EsRelayDatabase *db = entry_to_take();

	if (db != NULL)
	{
		memset((char *) db + offsetof(EsRelayDatabase, worker), 0,
			   sizeof(EsRelayDatabase) - offsetof(EsRelayDatabase, worker));
		db->dboid = dboid;
		db->extension_oid = InvalidOid;
		db->worker = -1;
		db->has_routes = true;
		db->routed_topics.all = true;
		db->has_subscriptions = true;
		pg_atomic_write_u32(&db->pending, 0);
	}
	return db;
}

/*
 * relay_available(): whether the relay workers can run here (the library
 * is preloaded).
 */
Datum
event_store_relay_available(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(es_shmem_available());
}

/*
 * relay_check(): warn when no relay worker can serve this database now.
 */
Datum
event_store_relay_check(PG_FUNCTION_ARGS)
{
	pid_t		launcher_pid;
	bool		start_failed;
	bool		no_room;

	if (!es_shmem_available())
	{
		ereport(WARNING,
				(errmsg("the relay workers are not running"),
				 errdetail("The event_store library is not in shared_preload_libraries: messages of this topic stay in the outbox."),
				 errhint("Add event_store to shared_preload_libraries and restart the server.")));
		PG_RETURN_VOID();
	}
	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	launcher_pid = es_shared->launcher_pid;
	start_failed = es_shared->start_failed_at != 0 &&
		!TimestampDifferenceExceeds(es_shared->start_failed_at, GetCurrentTimestamp(), 60000);
	no_room = (es_relay_database(MyDatabaseId) == NULL &&
			   !es_relay_database_room());
	LWLockRelease(es_shared->relay_lock);

	if (launcher_pid == 0)
		ereport(WARNING,
				(errmsg("the event_store launcher is not running"),
				 errdetail("No relay worker can start until it runs again; messages of this topic wait in the outbox."),
				 errhint("See the server log.")));
	else if (no_room)
		ereport(WARNING,
				(errmsg("no relay worker can serve database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errdetail("Shared memory has room for %d databases with the extension, and all are taken.",
						   es_shared->max_relay_databases),
				 errhint("Raise event_store.max_databases and restart the server.")));
	else if (start_failed)
		ereport(WARNING,
				(errmsg("relay workers could not start in the last minute: no background worker slot was free"),
				 errdetail("Messages of this topic wait in the outbox until a worker can start."),
				 errhint("Raise max_worker_processes to at least event_store.max_relay_workers plus one for the launcher, plus what other extensions and parallel queries need.")));
	PG_RETURN_VOID();
}

/*
 * relay_worker_status(): the launcher, and this database's relay, as the
 * relay_workers view shows them.  Other databases are not shown.
 */
Datum
event_store_relay_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsRelayDatabase copy;
	bool		found = false;
	pid_t		launcher_pid;
	pid_t		worker_pid = 0;
	TimestampTz launcher_started_at;
	Datum		values[12];
	bool		nulls[12];

	InitMaterializedSRF(fcinfo, 0);
	memset(nulls, true, sizeof(nulls));
	values[0] = CStringGetTextDatum("launcher");
	nulls[0] = false;
	if (!es_shmem_available())
	{
		values[3] = CStringGetTextDatum("library not loaded");
		nulls[3] = false;
		values[10] = CStringGetTextDatum("event_store is not in shared_preload_libraries: no relay worker runs");
		nulls[10] = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return (Datum) 0;
	}

	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	launcher_pid = es_shared->launcher_pid;
	launcher_started_at = es_shared->launcher_started_at;
	{
		EsRelayDatabase *db = es_relay_database(MyDatabaseId);

		if (db != NULL)
		{
			memcpy(&copy, db, sizeof(copy));
			found = true;
			if (db->worker >= 0)
				worker_pid = es_relay_workers[db->worker].pid;
		}
	}
	LWLockRelease(es_shared->relay_lock);

	if (launcher_pid != 0)
	{
		values[2] = Int32GetDatum(launcher_pid);
		nulls[2] = false;
		values[4] = TimestampTzGetDatum(launcher_started_at);
		nulls[4] = false;
	}
	values[3] = CStringGetTextDatum(launcher_pid != 0 ? "running" : "stopped");
	nulls[3] = false;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);

	memset(nulls, false, sizeof(nulls));
	values[0] = CStringGetTextDatum("relay");
	values[1] = CStringGetTextDatum(get_database_name(MyDatabaseId));
	if (!found)
	{
		/* Not looked at yet (the launcher discovers it within seconds). */
		memset(nulls, true, sizeof(nulls));
		nulls[0] = nulls[1] = nulls[3] = false;
		values[3] = CStringGetTextDatum(es_relay_state_name(ES_RELAY_NO_WORKER));
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		return (Datum) 0;
	}
	values[2] = Int32GetDatum(worker_pid);
	nulls[2] = (worker_pid == 0);
	values[3] = CStringGetTextDatum(copy.stop_requested ? "stopping" :
									es_relay_state_name(copy.state));
	values[4] = TimestampTzGetDatum(copy.started_at);
	nulls[4] = (copy.started_at == 0);
	values[5] = TimestampTzGetDatum(copy.last_batch_at);
	nulls[5] = (copy.last_batch_at == 0);
	values[6] = Int32GetDatum(copy.last_batch_size);
	values[7] = Int64GetDatum((int64) copy.messages_relayed);
	values[8] = Int64GetDatum((int64) copy.batches);
	values[9] = Int64GetDatum((int64) copy.feed_notifications);
	values[10] = CStringGetTextDatum(copy.last_error);
	nulls[10] = (copy.last_error[0] == '\0');
	values[11] = TimestampTzGetDatum(copy.last_error_at);
	nulls[11] = (copy.last_error_at == 0);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
