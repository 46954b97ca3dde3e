/*-------------------------------------------------------------------------
 *
 * feed.c
 *	  Global positions and the gap-safe head of the feed.
 *
 * The problem: positions are handed out when a transaction appends, but
 * transactions commit in any order.  A reader that shows position 12 while
 * the transaction holding position 11 is still running lets a consumer
 * checkpoint past 11 and never see it.
 *
 * The mechanism (library preloaded):
 *	- Positions come from a per-database counter in shared memory.  Under
 *	  one LWLock, an appender takes the next positions and records, in its
 *	  own backend slot, the first position its transaction reserved.
 *	- At commit or abort, after the transaction is visible to new snapshots
 *	  (xact callbacks run after ProcArrayEndTransaction), the slot is cleared.
 *	- A reader computes the safe head: one below the lowest position any
 *	  other running transaction of its database reserved, or the last
 *	  position handed out when none is running.  Every transaction that
 *	  reserved a position at or below the head has ended.
 *	- The reader then scans up to the head with its own snapshot, and stops
 *	  at the first row whose transaction ended but that its snapshot does not
 *	  see (it committed after the snapshot was taken, which happens for
 *	  REPEATABLE READ readers and in a short window for READ COMMITTED ones).
 *	  Rows of aborted transactions are skipped: they can never commit.
 * Writers never wait for each other or for readers beyond the few
 * instructions under the LWLock.  Transactions that append in other
 * databases, and transactions that do not append, do not hold a reader back.
 * Only transactions that appended hold back the head, each until it ends.
 *
 * The fallback (library not preloaded, no shared memory) keeps the same
 * state in the lock manager.  Positions are the table's largest position
 * plus one, taken under a per-database heavyweight allocation lock held
 * only until the rows are inserted (not to commit).  At its first
 * reservation, a transaction also takes a share lock, held to its end,
 * whose tag carries its first position: the lock table then lists every
 * running appender with its first position, which is what the backend
 * slots hold in shared memory.  A reader holds the allocation lock for an
 * instant while it reads the largest position and those tags.  Appends
 * serialise on the insert itself in this mode.
 *
 * PREPARE TRANSACTION of a transaction that appended is refused: the slot
 * belongs to the backend, which moves on to other transactions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "event_store.h"

/* This backend's transaction has a reservation in its slot. */
static bool reservation_in_slot = false;

/* Fallback mode: this backend holds the allocation lock. */
static bool holds_allocation_lock = false;

/* Fallback mode: this transaction holds its in-flight lock. */
static bool announced_in_flight = false;

static bool exit_callback_registered = false;

static void feed_shmem_exit(int code, Datum arg);

static void
allocation_locktag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, 0, 0, ES_LOCK_CLASS_FEED);
}

/* Fallback: the tag announcing a running appender's first position. */
static void
in_flight_locktag(LOCKTAG *tag, int64 first_position)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId,
						 (uint32) ((uint64) first_position >> 32),
						 (uint32) first_position,
						 ES_LOCK_CLASS_IN_FLIGHT);
}

/*
 * Fallback: the lowest first position of the running appenders of this
 * database other than us, or 0 when there are none.  Caller holds the
 * allocation lock, so no appender is between reserving and announcing.
 */
static int64
lowest_in_flight_position(void)
{
	LockData   *locks = GetLockStatusData();
	int64		lowest = 0;

	for (int i = 0; i < locks->nelements; i++)
	{
		LockInstanceData *lock = &locks->locks[i];
		int64		position;

		if (lock->locktag.locktag_type != LOCKTAG_ADVISORY ||
			lock->locktag.locktag_field4 != ES_LOCK_CLASS_IN_FLIGHT ||
			lock->locktag.locktag_field1 != MyDatabaseId ||
			lock->holdMask == 0 || lock->pid == MyProcPid)
			continue;
		position = (int64) (((uint64) lock->locktag.locktag_field2 << 32) |
							lock->locktag.locktag_field3);
		if (lowest == 0 || position < lowest)
			lowest = position;
	}
	return lowest;
}

/*
 * The largest position in the table, counting rows of every transaction
 * (running, committed or aborted), or 0 when the table is empty.  Reads the
 * last entry of the primary key index without visiting the heap.
 */
static int64
largest_position_in_table(Relation events)
{
	Relation	pkey = es_open_relation("events_pkey", AccessShareLock);
	IndexScanDesc scan;
	int64		largest = 0;

	scan = index_beginscan(events, pkey, SnapshotAny, 0, 0);
	scan->xs_want_itup = true;
	index_rescan(scan, NULL, 0, NULL, 0);
	if (index_getnext_tid(scan, BackwardScanDirection) != NULL)
	{
		bool		isnull;

		largest = DatumGetInt64(index_getattr(scan->xs_itup, 1,
											  scan->xs_itupdesc, &isnull));
	}
	index_endscan(scan);
	index_close(pkey, AccessShareLock);
	return largest;
}

/* Find this database's feed entry; caller holds the feed lock. */
static EsFeedDatabase *
find_feed_database(Oid events_relid)
{
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		EsFeedDatabase *db = &es_feed_databases[i];

		if (db->dboid == MyDatabaseId)
			return db->events_relid == events_relid ? db : NULL;
	}
	return NULL;
}

/*
 * Set up (or reset, after the extension was recreated) this database's
 * counter from the table's largest position.
 */
static void
init_feed_database(Relation events)
{
	Oid			relid = RelationGetRelid(events);
	int64		largest;
	EsFeedDatabase *db = NULL;
	EsFeedDatabase *free_entry = NULL;

	/*
	 * Read outside the lock: until the entry exists nobody reserves positions
	 * in this database, so the table's largest position cannot move.
	 */
	largest = largest_position_in_table(events);

	LWLockAcquire(es_shared->feed_lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		if (es_feed_databases[i].dboid == MyDatabaseId)
		{
			db = &es_feed_databases[i];
			break;
		}
		if (free_entry == NULL && es_feed_databases[i].dboid == InvalidOid)
			free_entry = &es_feed_databases[i];
	}
	if (db == NULL)
	{
		if (free_entry == NULL)
		{
			LWLockRelease(es_shared->feed_lock);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many databases use event_store"),
					 errhint("Raise event_store.max_databases (now %d) and restart the server.",
							 es_shared->max_databases)));
		}
		db = free_entry;
		db->dboid = MyDatabaseId;
		db->events_relid = InvalidOid;
	}
	if (db->events_relid != relid)
	{
		db->events_relid = relid;
		db->next_position = largest + 1;
	}
	LWLockRelease(es_shared->feed_lock);
}

/*
 * Reserve count consecutive positions for rows about to be inserted into
 * events; returns the first.  Call es_feed_reservation_done once the rows
 * are inserted.
 */
int64
es_feed_reserve_positions(Relation events, int count)
{
	Oid			relid = RelationGetRelid(events);

	if (!es_shmem_available())
	{
		LOCKTAG		tag;
		int64		first;

		allocation_locktag(&tag);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		holds_allocation_lock = true;
		first = largest_position_in_table(events) + 1;
		if (!announced_in_flight)
		{
			in_flight_locktag(&tag, first);
			(void) LockAcquire(&tag, ShareLock, false, false);
			announced_in_flight = true;
		}
		return first;
	}

	for (;;)
	{
		EsFeedDatabase *db;

		LWLockAcquire(es_shared->feed_lock, LW_EXCLUSIVE);
		db = find_feed_database(relid);
		if (db != NULL)
		{
			EsBackendSlot *slot = es_my_backend_slot();
			int64		first = db->next_position;

			db->next_position += count;
			if (slot->min_position == 0)
			{
				slot->dboid = MyDatabaseId;
				slot->min_position = first;
			}
			LWLockRelease(es_shared->feed_lock);
			reservation_in_slot = true;
			if (!exit_callback_registered)
			{
				on_shmem_exit(feed_shmem_exit, 0);
				exit_callback_registered = true;
			}
			return first;
		}
		LWLockRelease(es_shared->feed_lock);
		init_feed_database(events);
	}
}

void
es_feed_reservation_done(void)
{
	if (holds_allocation_lock)
	{
		LOCKTAG		tag;

		allocation_locktag(&tag);
		LockRelease(&tag, ExclusiveLock, false);
		holds_allocation_lock = false;
	}
}

/*
 * The safe head of the feed for the calling transaction: every transaction
 * other than ours that reserved a position at or below it has ended.
 */
int64
es_feed_safe_head(Relation events)
{
	Oid			relid = RelationGetRelid(events);

	/*
	 * A hot standby never reserves positions, and cannot see those the
	 * primary reserved for rows not yet in the WAL: its readers are refused
	 * before they get here (replica.c).  The largest replayed position is
	 * only an upper bound.
	 */
	if (RecoveryInProgress())
		return largest_position_in_table(events);

	if (!es_shmem_available())
	{
		LOCKTAG		tag;
		int64		head;
		int64		lowest;

		/* Wait out reservations in progress, then read a stable state. */
		allocation_locktag(&tag);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		head = largest_position_in_table(events);
		lowest = lowest_in_flight_position();
		LockRelease(&tag, ExclusiveLock, false);
		if (lowest != 0 && lowest - 1 < head)
			head = lowest - 1;
		return head;
	}

	for (;;)
	{
		EsFeedDatabase *db;

		LWLockAcquire(es_shared->feed_lock, LW_SHARED);
		db = find_feed_database(relid);
		if (db != NULL)
		{
			EsBackendSlot *mine = es_my_backend_slot();
			int64		head = db->next_position - 1;

			for (int i = 0; i < es_shared->num_backend_slots; i++)
			{
				EsBackendSlot *slot = &es_backend_slots[i];

				if (slot != mine && slot->min_position != 0 &&
					slot->dboid == MyDatabaseId &&
					slot->min_position - 1 < head)
					head = slot->min_position - 1;
			}
			LWLockRelease(es_shared->feed_lock);
			return head;
		}
		LWLockRelease(es_shared->feed_lock);
		init_feed_database(events);
	}
}

/*
 * Decide what a reader does with an events row at or below the safe head
 * that its snapshot does not see (the slot holds the row, fetched without
 * visibility filtering): skip it, or stop before it.
 */
EsFeedRow
es_feed_classify_invisible_row(TupleTableSlot *slot, Snapshot snapshot)
{
	HeapTuple	tuple;
	bool		should_free;
	TransactionId xmin;

	tuple = ExecFetchSlotHeapTuple(slot, false, &should_free);
	xmin = HeapTupleHeaderGetXmin(tuple->t_data);
	Assert(!should_free);

	/* Our own row, not yet visible to this command: wait for it. */
	if (TransactionIdIsCurrentTransactionId(xmin))
		return ES_ROW_STOP;

	/*
	 * The inserting transaction was running when the snapshot was taken.  If
	 * it is still running or has committed since, the row will be (or is)
	 * visible to a later snapshot: stop before it.  If it aborted, skip.
	 */
	if (XidInMVCCSnapshot(xmin, snapshot))
	{
		if (TransactionIdIsInProgress(xmin) || TransactionIdDidCommit(xmin))
			return ES_ROW_STOP;
		return ES_ROW_SKIP;
	}

	/*
	 * The inserting transaction ended before the snapshot: it aborted, or it
	 * committed and the row was deleted afterwards.  Either way the row is
	 * not part of the feed.
	 */
	return ES_ROW_SKIP;
}

/*
 * The transaction's reservation is over.  At commit this runs after the
 * commit became visible to new snapshots, which is what makes clearing the
 * slot safe.
 */
static void
release_reservation(void)
{
	if (reservation_in_slot)
	{
		EsBackendSlot *slot = es_my_backend_slot();

		LWLockAcquire(es_shared->feed_lock, LW_EXCLUSIVE);
		slot->min_position = 0;
		slot->dboid = InvalidOid;
		LWLockRelease(es_shared->feed_lock);
		reservation_in_slot = false;
	}
	holds_allocation_lock = false;
	announced_in_flight = false;
}

static void
feed_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (reservation_in_slot || announced_in_flight)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that appended events"),
						 errdetail("The gap-safe feed needs every appending transaction to end in the session that started it.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
			{
				bool		appended = reservation_in_slot || announced_in_flight;

				release_reservation();
				/* The relay may announce the new head: after the release. */
				es_at_transaction_end(event == XACT_EVENT_COMMIT, appended);
			}
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			release_reservation();
			break;
		default:
			break;
	}
}

/*
 * Exiting backends abort their transaction before this runs (on_shmem_exit
 * callbacks run after before_shmem_exit ones), so normally the slot is
 * already clear; this guards against a slot left behind forever.
 */
static void
feed_shmem_exit(int code, Datum arg)
{
	release_reservation();
}

void
es_feed_init(void)
{
	RegisterXactCallback(feed_xact_callback, NULL);
}
