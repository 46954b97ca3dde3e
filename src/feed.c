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
 * Durability.  A head the feed showed (to a reader, in a checkpoint, in a
 * notification) may lie above every row that survives: the transactions
 * that held the top positions rolled back, and VACUUM or a crash took their
 * rows away.  Positions must still never be handed out again at or below
 * it.  The sequence event_store.position_high_water is the durable bound:
 * no position above its value was ever handed out.  The counter hands out
 * positions up to a limit it keeps in shared memory; to go beyond, it
 * raises the sequence a chunk ahead (setval, which is not transactional and
 * is logged), flushes the log up to there, and only then uses the new
 * range: one flush per chunk of positions.  A counter that starts (after a
 * restart, a crash, a promotion, a restore) begins above both the table's
 * largest position and the sequence, so it is above every head ever shown.
 * The sequence is saved by pg_dump; rows loaded by a statement (a restore)
 * make the counter start again from the table (trigger events_loaded).
 * The fallback raises the sequence to each reservation's last position
 * before inserting (logged with the rows, flushed at their commit) and its
 * head is never below the sequence.
 *
 * Each database that uses the feed has an entry in shared memory.  Entries
 * are only a cache of the sequence and the table: any entry without a
 * transaction in flight can be dropped and set up again later at no risk.
 * When none is free, entries of databases that no longer exist are
 * reclaimed first, then idle ones; DROP EXTENSION leaves an entry that a
 * later CREATE EXTENSION in the same database resets.
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
#include "catalog/pg_class.h"
#include "commands/trigger.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "compat.h"
#include "event_store.h"

/* This backend's transaction has a reservation in its slot. */
static bool reservation_in_slot = false;

/* Fallback mode: this backend holds the allocation lock. */
static bool holds_allocation_lock = false;

/* Fallback mode: this transaction holds its in-flight lock. */
static bool announced_in_flight = false;

static bool exit_callback_registered = false;

/*
 * How far ahead of the positions in use the high-water mark is raised:
 * one log flush per this many positions.  A crash or restart skips at most
 * this many.
 */
#define ES_HIGH_WATER_CHUNK 1000

PG_FUNCTION_INFO_V1(event_store_events_loaded);

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

	scan = es_index_beginscan(events, pkey, SnapshotAny, 0, 0);
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

/*
 * The lock that serialises every change of this database's high-water mark
 * and every setup of its shared entry.  A heavyweight lock, taken before
 * any LWLock: raising the sequence locks it and writes the log.
 */
static void
high_water_locktag(LOCKTAG *tag)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, 0, 0, ES_LOCK_CLASS_HIGH_WATER);
}

/*
 * The high-water sequence is closed to everyone but its owner (the
 * extension's owner): the counter reads and raises it under that identity,
 * whoever appends.
 */
static void
become_owner(Oid relid, Oid *save_userid, int *save_sec_context)
{
	HeapTuple	tuple;
	Oid			owner;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(owner,
						   *save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

/* The high-water mark: 0 when nothing was ever handed out. */
static int64
high_water_read(Oid relid)
{
	LOCAL_FCINFO(fcinfo, 1);
	Oid			save_userid;
	int			save_sec_context;
	Datum		result;

	become_owner(relid, &save_userid, &save_sec_context);
	InitFunctionCallInfoData(*fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = ObjectIdGetDatum(relid);
	fcinfo->args[0].isnull = false;
	result = pg_sequence_last_value(fcinfo);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	/* NULL: never set (a fresh install) */
	return fcinfo->isnull ? 0 : DatumGetInt64(result);
}

/*
 * Set the high-water mark.  setval is not transactional: the value stays
 * even if the calling transaction aborts.  With flush, the log record is
 * on disk when this returns (with everything inserted before it).
 */
static void
high_water_set(Oid relid, int64 value, bool flush)
{
	Oid			save_userid;
	int			save_sec_context;

	become_owner(relid, &save_userid, &save_sec_context);
	DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(relid),
						Int64GetDatum(value), BoolGetDatum(true));
	SetUserIdAndSecContext(save_userid, save_sec_context);
	if (flush)
		XLogFlush(XactLastRecEnd);
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
 * Whether a database of the cluster still exists (pg_database is shared,
 * so this works from any database).
 */
static bool
database_exists(Oid dboid)
{
	return SearchSysCacheExists1(DATABASEOID, ObjectIdGetDatum(dboid));
}

/*
 * Free one entry for this database: reclaim those of databases that were
 * dropped; failing that, one of a database with no appending transaction
 * in flight (it is set up again from its sequence when next used).  The
 * catalog is read without the feed lock held.  Returns whether an entry
 * was freed.
 */
static bool
reclaim_feed_entry(void)
{
	int			n = es_shared->max_databases;
	Oid		   *dboids = palloc(n * sizeof(Oid));
	bool	   *gone = palloc0(n * sizeof(bool));
	bool		freed = false;

	LWLockAcquire(es_shared->feed_lock, LW_SHARED);
	for (int i = 0; i < n; i++)
		dboids[i] = es_feed_databases[i].dboid;
	LWLockRelease(es_shared->feed_lock);

	for (int i = 0; i < n; i++)
		gone[i] = OidIsValid(dboids[i]) && dboids[i] != MyDatabaseId &&
			!database_exists(dboids[i]);

	LWLockAcquire(es_shared->feed_lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		EsFeedDatabase *db = &es_feed_databases[i];

		if (gone[i] && db->dboid == dboids[i])
		{
			db->dboid = InvalidOid;
			freed = true;
		}
	}
	for (int i = 0; i < n && !freed; i++)
	{
		EsFeedDatabase *db = &es_feed_databases[i];
		bool		in_flight = false;

		if (!OidIsValid(db->dboid) || db->dboid == MyDatabaseId)
			continue;
		for (int j = 0; j < es_shared->num_backend_slots && !in_flight; j++)
			in_flight = es_backend_slots[j].min_position != 0 &&
				es_backend_slots[j].dboid == db->dboid;
		if (!in_flight)
		{
			db->dboid = InvalidOid;
			freed = true;
		}
	}
	LWLockRelease(es_shared->feed_lock);

	pfree(dboids);
	pfree(gone);
	return freed;
}

/*
 * Set up (or reset, after the extension was recreated or rows were loaded)
 * this database's counter: above the table's largest position and above
 * the high-water mark.  Under the high-water lock, so that the mark cannot
 * be raised, nor the entry set up by another backend, in between.
 */
static void
init_feed_database(Relation events)
{
	Oid			relid = RelationGetRelid(events);
	Oid			high_water = es_relation_oid("position_high_water");
	LOCKTAG		tag;
	int64		start;

	high_water_locktag(&tag);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);

	/*
	 * Read outside the feed lock: positions are handed out only up to the
	 * limit of an entry, which is at most the high-water mark, and the mark
	 * cannot move while we hold its lock.
	 */
	start = Max(largest_position_in_table(events), high_water_read(high_water)) + 1;

	for (;;)
	{
		EsFeedDatabase *db = NULL;
		EsFeedDatabase *free_entry = NULL;

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
		if (db == NULL && free_entry != NULL)
		{
			db = free_entry;
			db->dboid = MyDatabaseId;
			db->events_relid = InvalidOid;
		}
		if (db != NULL)
		{
			if (db->events_relid != relid)
			{
				db->events_relid = relid;
				db->next_position = start;
				db->limit = start - 1;
			}
			LWLockRelease(es_shared->feed_lock);
			break;
		}
		LWLockRelease(es_shared->feed_lock);

		if (!reclaim_feed_entry())
		{
			LockRelease(&tag, ExclusiveLock, false);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("too many databases use event_store"),
					 errdetail("Every one of the %d entries belongs to a database with a transaction that is appending.",
							   es_shared->max_databases),
					 errhint("Raise event_store.max_databases and restart the server.")));
		}
	}
	LockRelease(&tag, ExclusiveLock, false);
}

/*
 * Let this database's counter hand out count more positions: raise the
 * high-water mark a chunk beyond them and flush it, then extend the limit.
 * Never called with the feed lock held.
 */
static void
raise_feed_limit(Relation events, int count)
{
	Oid			relid = RelationGetRelid(events);
	Oid			high_water = es_relation_oid("position_high_water");
	LOCKTAG		tag;
	EsFeedDatabase *db;
	int64		next;
	int64		mark;
	int64		new_limit;

	high_water_locktag(&tag);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);

	LWLockAcquire(es_shared->feed_lock, LW_SHARED);
	db = find_feed_database(relid);
	next = db ? db->next_position : 0;
	/* Gone (set up again by the caller), or raised while we waited. */
	if (db == NULL || next + count - 1 <= db->limit)
	{
		LWLockRelease(es_shared->feed_lock);
		LockRelease(&tag, ExclusiveLock, false);
		return;
	}
	LWLockRelease(es_shared->feed_lock);

	/*
	 * The mark is normally our own limit; it is higher when it was set from
	 * outside (a restore): then every position up to it may have been seen,
	 * and the counter continues above it.
	 */
	mark = high_water_read(high_water);
	next = Max(next, mark + 1);
	new_limit = next + count - 1 + ES_HIGH_WATER_CHUNK;
	high_water_set(high_water, new_limit, true);

	LWLockAcquire(es_shared->feed_lock, LW_EXCLUSIVE);
	db = find_feed_database(relid);
	if (db != NULL)
	{
		if (db->next_position <= mark)
			db->next_position = mark + 1;
		db->limit = new_limit;
	}
	LWLockRelease(es_shared->feed_lock);
	LockRelease(&tag, ExclusiveLock, false);
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
		Oid			high_water = es_relation_oid("position_high_water");

		allocation_locktag(&tag);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
		holds_allocation_lock = true;
		first = Max(largest_position_in_table(events),
					high_water_read(high_water)) + 1;

		/*
		 * Logged before the rows, so flushed with them at commit; only a head
		 * shown above every committed row in the moments before a crash can
		 * be lost (README.md, "Durability of positions").
		 */
		high_water_set(high_water, first + count - 1, false);
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
		if (db != NULL && db->next_position + count - 1 <= db->limit)
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
		if (db == NULL)
			init_feed_database(events);
		else
			raise_feed_limit(events, count);
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
		head = Max(largest_position_in_table(events),
				   high_water_read(es_relation_oid("position_high_water")));
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

/*
 * PREPARE TRANSACTION: refused when the transaction appended, since its
 * reservation belongs to this session (called from event_store.c's
 * transaction callback).
 */
void
es_feed_at_prepare(void)
{
	if (reservation_in_slot || announced_in_flight)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot PREPARE a transaction that appended events"),
				 errdetail("The gap-safe feed needs every appending transaction to end in the session that started it.")));
}

/*
 * End of a transaction, committed or aborted (called from event_store.c's
 * transaction callback, before any other module's step): release the
 * reservation.  Returns whether the transaction appended events.
 */
bool
es_feed_at_xact_end(void)
{
	bool		appended = reservation_in_slot || announced_in_flight;

	release_reservation();
	return appended;
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

/*
 * Trigger events_loaded: rows entered the log through a statement, not
 * through append (pg_restore's COPY, most often).  The counter of this
 * database may be below them: drop its entry, so that the next reader or
 * appender sets it up again above the table's largest position.  Under
 * the high-water lock, so that no setup that read the table before these
 * rows were inserted can install its result afterwards.
 */
Datum
event_store_events_loaded(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	LOCKTAG		tag;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("events_loaded must be called as a trigger")));
	if (!es_shmem_available())
		return PointerGetDatum(NULL);

	high_water_locktag(&tag);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
	LWLockAcquire(es_shared->feed_lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_databases; i++)
	{
		EsFeedDatabase *db = &es_feed_databases[i];

		if (db->dboid == MyDatabaseId &&
			db->events_relid == RelationGetRelid(trigdata->tg_relation))
			db->events_relid = InvalidOid;
	}
	LWLockRelease(es_shared->feed_lock);
	LockRelease(&tag, ExclusiveLock, false);
	return PointerGetDatum(NULL);
}
