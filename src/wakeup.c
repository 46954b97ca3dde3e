/*-------------------------------------------------------------------------
 *
 * wakeup.c
 *	  Commit-time wake-ups of the relay.
 *
 * Wake-ups are never lost: committing transactions that sent messages to a
 * routed topic, appended events (when the database has subscriptions), or
 * changed routes and subscriptions (always) set the database's pending
 * flag, then the worker's latch, or the launcher's when the database has no
 * worker.  The worker clears the flag before each cycle, and leaves only if
 * it is still clear, under the lock the committers read the worker under
 * (relay.c).
 *
 * The routed topics are those the worker read in its last cycle, as hashes
 * in the database's entry.  A change of routes forgets them (every send
 * wakes the relay) until a cycle that read the routes after the change
 * ends; a send to a topic routed since is thus either seen by that cycle
 * or finds the topic among the hashes.  Hashes that collide, routes
 * removed since, and transactions that sent to more topics than they
 * remember only wake the relay for nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/proc.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_relay_wake);
PG_FUNCTION_INFO_V1(event_store_relay_start);

/* This transaction changed routes or subscriptions: wake the relay at commit. */
static bool wake_relay_at_commit = false;


/*
 * Mark the database's work pending, then set its worker's latch.  Returns
 * whether it has no worker, so that the caller wakes the launcher (after
 * releasing relay_lock, which the caller holds).
 */
static bool
set_pending(EsRelayDatabase *db)
{
	int			procno;

	pg_atomic_write_u32(&db->pending, 1);
	pg_memory_barrier();
	if (db->worker < 0)
		return true;
	procno = es_relay_workers[db->worker].procno;
	if (procno >= 0)
		SetLatch(&GetPGProcByNumber(procno)->procLatch);
	return false;
}

/* Whether the transaction sent to a topic the database's relay routes. */
static bool
sent_to_routed_topic(const EsRelayDatabase *db, const EsTopicSet *sent)
{
	if (!db->has_routes)
		return false;
	if (sent->all)
		return true;
	for (int i = 0; i < sent->count; i++)
		if (es_topic_set_has(&db->routed_topics, sent->hashes[i]))
			return true;
	return false;
}

/*
 * A commit that matters to the relay of this database: set its pending
 * flag, then wake its worker, or the launcher when it has none.  sent: the
 * topics it sent to, NULL if none.  changed: routes or subscriptions
 * changed (or the extension was created), so the relay must look whatever
 * it saw last.
 */
static void
wake_relay(Oid dboid, bool appended, const EsTopicSet *sent, bool changed)
{
	EsRelayDatabase *db;
	bool		launcher = false;

	if (!changed)
	{
		LWLockAcquire(es_shared->relay_lock, LW_SHARED);
		db = es_relay_database(dboid);
		if (db != NULL)
		{
			if (!((appended && db->has_subscriptions) ||
				  (sent != NULL && sent_to_routed_topic(db, sent))))
			{
				LWLockRelease(es_shared->relay_lock);
				return;
			}
			launcher = set_pending(db);
			LWLockRelease(es_shared->relay_lock);
			if (launcher)
				es_wake_launcher();
			return;
		}
		LWLockRelease(es_shared->relay_lock);
	}

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	db = es_relay_database(dboid);
	if (db == NULL)
	{
		db = es_relay_database_add(dboid);
		/* A database the launcher may not know yet: it reads pg_database. */
		es_shared->rescan_requested = true;
	}
	if (db != NULL)
	{
		if (changed)
		{
			db->config_generation++;
			db->has_routes = true;
			db->routed_topics.all = true;
			db->has_subscriptions = true;
			db->failed = false;
		}
		launcher = set_pending(db);
	}
	LWLockRelease(es_shared->relay_lock);
	if (launcher)
		es_wake_launcher();
}

/*
 * End of a transaction (called from event_store.c's transaction callback,
 * after the commit is visible and the feed reservation is released): a
 * commit that appended events, sent messages or changed what the relay
 * serves wakes the relay.
 */
void
es_wakeup_at_xact_end(bool committed, bool appended, const EsTopicSet *sent)
{
	bool		changed = wake_relay_at_commit;

	wake_relay_at_commit = false;
	if (committed && (appended || sent != NULL || changed) && es_shmem_available())
		wake_relay(MyDatabaseId, appended, sent, changed);
}

/*
 * relay_wake(): the relay of this database looks at its routes and
 * subscriptions again when this transaction commits (relay_route,
 * relay_resume, subscription_create).
 */
Datum
event_store_relay_wake(PG_FUNCTION_ARGS)
{
	wake_relay_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * relay_start(): called at the end of CREATE EXTENSION.  At commit the
 * database gets its entry and a worker.
 */
Datum
event_store_relay_start(PG_FUNCTION_ARGS)
{
	wake_relay_at_commit = true;
	PG_RETURN_VOID();
}
