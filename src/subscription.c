/*-------------------------------------------------------------------------
 *
 * subscription.c
 *	  subscription_fetch and subscription_ack, the consumers' hot path, and
 *	  the session's memory of the subscriptions it fetched from, which
 *	  fences its acknowledgements.
 *
 * A fetch locks the member's checkpoint row (and shares the lock of the
 * subscription's row, which subscription_drop deletes first), then reads
 * the feed from the checkpoint straight into the function's result, as
 * read_all does (read_feed.c): no SQL function in between and no second
 * copy of the rows.  An ack updates the checkpoint row.  On the common
 * path both work on the tables through the table AM, as SELECT ... FOR
 * UPDATE and UPDATE would (a consumer does both for every batch, and a
 * statement's executor start-up cost more than its work); the checks
 * that report errors use statements prepared once per backend (plans.c).
 * Both functions run as SECURITY DEFINER with a pinned search_path, so
 * readers never need privileges on the subscription tables.
 *
 * Each member's checkpoint row carries a fence, a random value drawn when
 * the subscription is created and again at every reset.  subscription_fetch
 * remembers here, per (subscription, member), the fence it read with the
 * checkpoint; subscription_ack applies only while the row still has that
 * fence.  So an acknowledgement of events fetched before a reset, or from a
 * subscription since dropped and created again under the same name, changes
 * nothing: it can never move a checkpoint past events that the new
 * generation has not delivered yet.  The memory lives for the session (the
 * backend), not the transaction: a consumer may fetch and acknowledge in
 * different transactions of one connection.
 *
 * The checks and messages are those of the SQL helpers the other
 * subscription functions use (check_subscription_name, find_subscription,
 * check_member in sql/install/40_subscriptions.sql), in the same order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "compat.h"
#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_subscription_fetch);
PG_FUNCTION_INFO_V1(event_store_subscription_ack);

/* Subscription names are at most 47 bytes (check_subscription_name). */
#define ES_SUBSCRIPTION_NAME_SIZE 48
#define ES_SUBSCRIPTION_NAME_MAX (ES_SUBSCRIPTION_NAME_SIZE - 1)

typedef struct FetchedKey
{
	char		subscription[ES_SUBSCRIPTION_NAME_SIZE];
	int32		member;
} FetchedKey;

typedef struct FetchedEntry
{
	FetchedKey	key;
	pg_uuid_t	fence;
} FetchedEntry;

static HTAB *fetched = NULL;

/*
 * The key of a (subscription, member); false when the name cannot be a
 * subscription's.
 */
static bool
make_fetched_key(text *name, int32 member, FetchedKey *key)
{
	int			len = VARSIZE_ANY_EXHDR(name);

	if (len >= ES_SUBSCRIPTION_NAME_SIZE)
		return false;
	memset(key, 0, sizeof(FetchedKey));
	memcpy(key->subscription, VARDATA_ANY(name), len);
	key->member = member;
	return true;
}

/* This session fetched from the member's checkpoint while it had fence. */
static void
remember_fence(text *name, int32 member, const pg_uuid_t *fence)
{
	FetchedKey	key;
	FetchedEntry *entry;

	if (!make_fetched_key(name, member, &key))
		return;
	if (fetched == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(FetchedKey);
		ctl.entrysize = sizeof(FetchedEntry);
		ctl.hcxt = TopMemoryContext;
		fetched = hash_create("event_store fetched subscriptions", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(fetched, &key, HASH_ENTER, NULL);
	entry->fence = *fence;
}

/*
 * The fence this session last fetched the member with: false when it
 * never fetched from it.
 */
static bool
remembered_fence(text *name, int32 member, pg_uuid_t *fence)
{
	FetchedKey	key;
	FetchedEntry *entry;

	if (fetched == NULL || !make_fetched_key(name, member, &key))
		return false;
	entry = hash_search(fetched, &key, HASH_FIND, NULL);
	if (entry == NULL)
		return false;
	*fence = entry->fence;
	return true;
}

/*
 * The subscription name argument, checked as check_subscription_name
 * does: not NULL, at most 47 bytes, lower-case letters, digits and
 * underscores starting with a letter.
 */
static text *
checked_subscription_name(FunctionCallInfo fcinfo, int argno)
{
	text	   *name;
	const char *p;
	int			len;
	bool		valid;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("subscription name must not be null")));
	name = PG_GETARG_TEXT_PP(argno);
	p = VARDATA_ANY(name);
	len = VARSIZE_ANY_EXHDR(name);
	if (len > ES_SUBSCRIPTION_NAME_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("subscription name \"%s...\" is too long",
						pnstrdup(p, pg_mbcharcliplen(p, len, 32))),
				 errdetail("Subscription names are at most %d bytes; this one has %d.",
						   ES_SUBSCRIPTION_NAME_MAX, len)));
	valid = len > 0 && p[0] >= 'a' && p[0] <= 'z';
	for (int i = 1; i < len && valid; i++)
		valid = (p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') ||
			p[i] == '_';
	if (!valid)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid subscription name \"%s\"", text_to_cstring(name)),
				 errhint("Use lower-case letters, digits and underscores, starting with a letter.")));
	return name;
}

static void
report_no_subscription(text *name)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("subscription \"%s\" does not exist", text_to_cstring(name))));
}

/*
 * The consumer group size of the subscription (find_subscription), or the
 * error for one that does not exist.  Inside SPI.
 */
static int32
subscription_group_size(text *name)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	bool		isnull;

	values[0] = PointerGetDatum(name);
	es_spi_execute(es_prepared_plan(&plan,
									"SELECT s.group_size FROM event_store.subscriptions AS s"
									" WHERE s.name = $1",
									1, argtypes),
				   values, true, SPI_OK_SELECT, "subscription lookup");
	if (SPI_processed == 0)
		report_no_subscription(name);
	return DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/* The member argument, checked as check_member does. */
static int32
checked_member(FunctionCallInfo fcinfo, int argno, text *name, int32 group_size)
{
	int32		member;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("member must not be null")));
	member = PG_GETARG_INT32(argno);
	if (member < 0 || member >= group_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("member %d is out of range for subscription \"%s\"",
						member, text_to_cstring(name)),
				 errdetail("The subscription has a consumer group of size %d: members 0 to %d.",
						   group_size, group_size - 1)));
	return member;
}

/* Columns of subscriptions. */
enum
{
	Anum_subscriptions_name = 1,
	Anum_subscriptions_category,
	Anum_subscriptions_group_size,
	Anum_subscriptions_created_at,
	Anum_subscriptions_event_types,
	Anum_subscriptions_stream_prefix
};

/* Columns of subscription_checkpoints. */
enum
{
	Anum_checkpoints_subscription = 1,
	Anum_checkpoints_member,
	Anum_checkpoints_position,
	Anum_checkpoints_updated_at,
	Anum_checkpoints_fence,
	Natts_checkpoints = Anum_checkpoints_fence
};

/* The scan key of a subscription's row in subscriptions_pkey. */
static void
subscription_key(ScanKey key, Relation pkey, text *name)
{
	ScanKeyEntryInitialize(&key[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   pkey->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(name));
}

/* The scan keys of a member's row in subscription_checkpoints_pkey. */
static void
checkpoint_keys(ScanKey keys, Relation pkey, text *name, int32 member)
{
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   pkey->rd_indcollation[0], F_TEXTEQ, PointerGetDatum(name));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT4EQ, Int32GetDatum(member));
}

/*
 * The row of rel whose primary key (index) has these values, visible to
 * snapshot, in slot; false when there is none.
 */
static bool
find_row(Relation rel, Relation index, ScanKey keys, int nkeys,
		 Snapshot snapshot, TupleTableSlot *slot)
{
	IndexScanDesc scan = es_index_beginscan(rel, index, snapshot, nkeys, 0);
	bool		found;

	index_rescan(scan, keys, nkeys, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	return found;
}

/*
 * Find the row of rel whose primary key (index) has these values, visible
 * to snapshot, and lock it in mode, as SELECT ... FOR <mode> would: it waits
 * for a transaction that holds the row, and if that one changed it, takes
 * the row's latest version (READ COMMITTED) or fails to serialize
 * (REPEATABLE READ and above).  False when there is no such row (or it was
 * deleted meanwhile); else slot holds the locked version.
 */
static bool
lock_row(Relation rel, Relation index, ScanKey keys, int nkeys,
		 LockTupleMode mode, Snapshot snapshot, TupleTableSlot *slot)
{
	TM_FailureData tmfd;
	TM_Result	result;
	uint8		flags = 0;

	if (!find_row(rel, index, keys, nkeys, snapshot, slot))
		return false;
	if (!IsolationUsesXactSnapshot())
		flags |= TUPLE_LOCK_FLAG_FIND_LAST_VERSION;
	result = table_tuple_lock(rel, &slot->tts_tid, snapshot, slot,
							  GetCurrentCommandId(false), mode, LockWaitBlock,
							  flags, &tmfd);
	switch (result)
	{
		case TM_Ok:
			return true;
		case TM_Deleted:
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent delete")));
			return false;
		case TM_Updated:
			/* Only without FIND_LAST_VERSION, that is when serializable. */
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("could not serialize access due to concurrent update")));
			break;
		case TM_SelfModified:
			/* Changed by this transaction after the snapshot: not ours to lock. */
			return false;
		default:
			elog(ERROR, "unexpected result %d of a subscription row lock",
				 (int) result);
	}
	return false;
}

/*
 * What a fetch reads of the subscription and the member's checkpoint,
 * copied out of the locked rows.
 */
typedef struct LockedMember
{
	int64		position;
	pg_uuid_t	fence;
	text	   *category;		/* NULL: the whole feed */
	int32		group_size;
	ArrayType  *event_types;	/* NULL: every type */
	text	   *stream_prefix;	/* NULL: every stream */
} LockedMember;

/*
 * Lock the subscription's row (FOR KEY SHARE) and then the member's
 * checkpoint (FOR NO KEY UPDATE), with a snapshot taken now, and read both;
 * false when either is missing.  The subscription's row is locked first,
 * as subscription_drop deletes it before the checkpoints: a drop either
 * waits for this fetch or has committed before it, and then the row is
 * gone.  Written against the table AM: a consumer fetches every batch, and
 * a statement's executor start-up cost more than its work.
 */
static bool
lock_member(text *name, int32 member, LockedMember *locked)
{
	Relation	subscriptions;
	Relation	subscriptions_pkey;
	Relation	checkpoints;
	Relation	checkpoints_pkey;
	TupleTableSlot *subscription;
	TupleTableSlot *checkpoint;
	ScanKeyData keys[2];
	Snapshot	snapshot;
	bool		found;

	CommandCounterIncrement();
	snapshot = RegisterSnapshot(GetTransactionSnapshot());
	subscriptions = es_open_relation("subscriptions", RowShareLock);
	subscriptions_pkey = es_open_relation("subscriptions_pkey", AccessShareLock);
	checkpoints = es_open_relation("subscription_checkpoints", RowShareLock);
	checkpoints_pkey = es_open_relation("subscription_checkpoints_pkey", AccessShareLock);
	subscription = table_slot_create(subscriptions, NULL);
	checkpoint = table_slot_create(checkpoints, NULL);

	subscription_key(keys, subscriptions_pkey, name);
	found = lock_row(subscriptions, subscriptions_pkey, keys, 1, LockTupleKeyShare,
					 snapshot, subscription);
	if (found)
	{
		checkpoint_keys(keys, checkpoints_pkey, name, member);
		found = lock_row(checkpoints, checkpoints_pkey, keys, 2,
						 LockTupleNoKeyExclusive, snapshot, checkpoint);
	}
	if (found)
	{
		bool		isnull;
		Datum		datum;

		locked->position = DatumGetInt64(slot_getattr(checkpoint, Anum_checkpoints_position,
													  &isnull));
		locked->fence = *DatumGetUUIDP(slot_getattr(checkpoint, Anum_checkpoints_fence,
													 &isnull));
		datum = slot_getattr(subscription, Anum_subscriptions_category, &isnull);
		locked->category = isnull ? NULL : DatumGetTextPCopy(datum);
		locked->group_size = DatumGetInt32(slot_getattr(subscription,
														Anum_subscriptions_group_size,
														&isnull));
		datum = slot_getattr(subscription, Anum_subscriptions_event_types, &isnull);
		locked->event_types = isnull ? NULL : DatumGetArrayTypePCopy(datum);
		datum = slot_getattr(subscription, Anum_subscriptions_stream_prefix, &isnull);
		locked->stream_prefix = isnull ? NULL : DatumGetTextPCopy(datum);
	}

	ExecDropSingleTupleTableSlot(checkpoint);
	ExecDropSingleTupleTableSlot(subscription);
	index_close(checkpoints_pkey, AccessShareLock);
	index_close(subscriptions_pkey, AccessShareLock);
	table_close(checkpoints, RowShareLock);
	table_close(subscriptions, RowShareLock);
	UnregisterSnapshot(snapshot);
	return found;
}

/*
 * subscription_fetch(subscription, max_count, member)
 *
 * The next events after the member's checkpoint, at most max_count, gap-safe
 * as read_all.  Does not move the checkpoint, except for a filtered
 * subscription whose filter selected nothing: its checkpoint moves to where
 * the read covered the feed, so that an idle filter does not scan the same
 * events again.  The member's checkpoint stays locked until the transaction
 * ends: a second fetcher of the member waits (and under REPEATABLE READ
 * fails with a serialization error once the first one acknowledged).
 */
Datum
event_store_subscription_fetch(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr covered_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *name = checked_subscription_name(fcinfo, 0);
	Datum		values[3];
	int32		member = 0;
	int32		max_count;
	bool		found = false;
	LockedMember locked;
	EsFeedQuery query = {0};
	int64		covered = -1;
	int64		count;

	SPI_connect();

	/*
	 * Lock and read the subscription and the checkpoint.  A standby cannot
	 * lock rows: there, and when nothing is found, the checks run first,
	 * to report what is wrong.
	 */
	if (!RecoveryInProgress() && !PG_ARGISNULL(2))
	{
		member = PG_GETARG_INT32(2);
		PreventCommandIfReadOnly("subscription_fetch");
		found = lock_member(name, member, &locked);
	}
	if (!found)
	{
		member = checked_member(fcinfo, 2, name, subscription_group_size(name));
		/* Refuse with the feed's own error on a standby. */
		if (RecoveryInProgress())
		{
			Relation	events = es_open_relation("events", AccessShareLock);

			es_check_feed_readable(events);
			table_close(events, AccessShareLock);
		}
		PreventCommandIfReadOnly("subscription_fetch");
		if (!lock_member(name, member, &locked))
			report_no_subscription(name);
	}
	max_count = es_checked_max_count(fcinfo, 1);

	query.from_position = locked.position + 1;
	remember_fence(name, member, &locked.fence);
	query.category = locked.category;
	/* The group read with the lock: a size of 1 needs no hashing. */
	if (locked.group_size > 1)
	{
		query.group_member = member;
		query.group_size = locked.group_size;
	}
	es_feed_query_set_filter(&query, locked.event_types, locked.stream_prefix);
	query.max_count = max_count;
	query.covered = &covered;

	/*
	 * Read with a snapshot taken now, after the lock, as a statement of the
	 * function would: under READ COMMITTED it sees what the fetcher this
	 * one waited for committed.
	 */
	es_init_result_store(fcinfo);
	PushActiveSnapshot(GetTransactionSnapshot());
	count = es_read_feed(&query, rsinfo->setResult, rsinfo->setDesc);
	PopActiveSnapshot();

	/*
	 * A filter that selected nothing still covered the feed up to some
	 * position: move the checkpoint there (nothing was shown, nothing to
	 * process).
	 */
	if (count == 0 && max_count > 0 &&
		(query.ntypes > 0 || query.stream_prefix != NULL) &&
		covered >= query.from_position)
	{
		Oid			argtypes[3] = {TEXTOID, INT4OID, INT8OID};

		values[0] = PointerGetDatum(name);
		values[1] = Int32GetDatum(member);
		values[2] = Int64GetDatum(covered);
		es_spi_execute(es_prepared_plan(&covered_plan,
										"UPDATE event_store.subscription_checkpoints AS c"
										" SET position = $3, updated_at = now()"
										" WHERE c.subscription = $1 AND c.member = $2"
										" AND c.position < $3",
										3, argtypes),
					   values, false, SPI_OK_UPDATE, "subscription fetch checkpoint");
	}
	SPI_finish();
	return (Datum) 0;
}

/* Whether the subscription's row is visible to snapshot. */
static bool
subscription_exists(text *name, Snapshot snapshot)
{
	Relation	subscriptions = es_open_relation("subscriptions", AccessShareLock);
	Relation	pkey = es_open_relation("subscriptions_pkey", AccessShareLock);
	TupleTableSlot *slot = table_slot_create(subscriptions, NULL);
	ScanKeyData key;
	bool		found;

	subscription_key(&key, pkey, name);
	found = find_row(subscriptions, pkey, &key, 1, snapshot, slot);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(subscriptions, AccessShareLock);
	return found;
}

/*
 * Move the member's checkpoint up to up_to, if this session's last fetch of
 * it (if any) was under its current fence and the subscription exists.
 * False when no checkpoint was moved; else *checkpoint is the member's
 * checkpoint.
 *
 * Written against the table AM, as an UPDATE of the row would run: the
 * consumer acknowledges every batch, and a statement's executor start-up
 * cost more than its work.  It waits for a transaction that holds the row
 * (a fetch of the member, a reset) and, if that one changed it, looks at
 * the row's latest version (READ COMMITTED) or fails to serialize
 * (REPEATABLE READ and above).  Only position and updated_at change, no
 * indexed column: the update is HOT unless the page is full.
 */
static bool
ack_update(text *name, int32 member, int64 up_to, int64 *checkpoint)
{
	pg_uuid_t	fence;
	bool		fenced = remembered_fence(name, member, &fence);
	Relation	checkpoints;
	Relation	pkey;
	TupleTableSlot *slot;
	TupleTableSlot *updated;
	Snapshot	snapshot;
	CommandId	cid;
	bool		fresh = false;
	bool		acked = false;

	PreventCommandIfReadOnly("subscription_ack");
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	snapshot = GetActiveSnapshot();
	cid = GetCurrentCommandId(true);
	checkpoints = es_open_relation("subscription_checkpoints", RowExclusiveLock);
	pkey = es_open_relation("subscription_checkpoints_pkey", AccessShareLock);
	slot = table_slot_create(checkpoints, NULL);
	updated = MakeSingleTupleTableSlot(RelationGetDescr(checkpoints), &TTSOpsVirtual);

	while (subscription_exists(name, snapshot))
	{
		ScanKeyData keys[2];
		TM_FailureData tmfd;
		LockTupleMode lockmode;
		EsUpdateIndexes update_indexes;
		TM_Result	result;
		int64		position;

		CHECK_FOR_INTERRUPTS();
		checkpoint_keys(keys, pkey, name, member);
		if (!find_row(checkpoints, pkey, keys, 2, snapshot, slot))
			break;
		slot_getallattrs(slot);
		if (fenced &&
			memcmp(DatumGetUUIDP(slot->tts_values[Anum_checkpoints_fence - 1]),
				   &fence, UUID_LEN) != 0)
			break;
		position = Max(DatumGetInt64(slot->tts_values[Anum_checkpoints_position - 1]),
					   up_to);

		ExecClearTuple(updated);
		memcpy(updated->tts_values, slot->tts_values, sizeof(Datum) * Natts_checkpoints);
		memcpy(updated->tts_isnull, slot->tts_isnull, sizeof(bool) * Natts_checkpoints);
		updated->tts_values[Anum_checkpoints_position - 1] = Int64GetDatum(position);
		updated->tts_values[Anum_checkpoints_updated_at - 1] =
			TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
		ExecStoreVirtualTuple(updated);
		result = table_tuple_update(checkpoints, &slot->tts_tid, updated, cid,
									snapshot, InvalidSnapshot, true,
									&tmfd, &lockmode, &update_indexes);
		if (result == TM_Ok)
		{
			if (update_indexes)
			{
				/* The page was full: the primary key needs the new version. */
				EsTableWriter *writer = es_writer_open("subscription_checkpoints");

				(void) es_insert_index_tuples_after_update(writer->rri, updated,
														   writer->estate,
														   update_indexes);
				es_writer_close(writer);
			}
			*checkpoint = position;
			acked = true;
			break;
		}
		if (result == TM_SelfModified)
			elog(ERROR, "subscription checkpoint updated twice by one command");
		if (result != TM_Updated && result != TM_Deleted)
			elog(ERROR, "unexpected result %d of a subscription checkpoint update",
				 (int) result);
		/* Changed by a transaction that committed meanwhile: look again. */
		snapshot = es_snapshot_after_concurrent_update(snapshot, &fresh);
	}

	if (fresh)
		UnregisterSnapshot(snapshot);
	ExecDropSingleTupleTableSlot(updated);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(checkpoints, RowExclusiveLock);
	PopActiveSnapshot();
	return acked;
}

/*
 * subscription_ack(subscription, up_to_position, member)
 *
 * Record that the member has processed everything up to up_to_position.
 * A position below the checkpoint changes nothing (a late or repeated ack);
 * one beyond the feed head is refused, since events may still commit below
 * it.  An ack from a session whose last fetch of this member was under
 * another fence (before a reset, or from a dropped incarnation of the
 * subscription) changes nothing either, with a warning.  Returns the
 * member's checkpoint: less than up_to_position exactly when the ack was
 * not applied.
 */
Datum
event_store_subscription_ack(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr checkpoint_plan = NULL;
	text	   *name = checked_subscription_name(fcinfo, 0);
	Oid			argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[2];
	int32		member;
	int64		up_to;
	int64		head;
	int64		checkpoint;
	bool		isnull;
	Relation	events;

	SPI_connect();

	/*
	 * The common case in one statement: arguments that pass the checks
	 * below, a position at or below the safe head, a current fence.
	 * Anything else takes the checks in their order, for the right error.
	 */
	if (!PG_ARGISNULL(1) && !PG_ARGISNULL(2) && PG_GETARG_INT64(1) >= 0)
	{
		events = es_open_relation("events", AccessShareLock);
		if (es_feed_readable(events) &&
			PG_GETARG_INT64(1) <= es_feed_safe_head(events) &&
			ack_update(name, PG_GETARG_INT32(2), PG_GETARG_INT64(1), &checkpoint))
		{
			table_close(events, AccessShareLock);
			SPI_finish();
			PG_RETURN_INT64(checkpoint);
		}
		table_close(events, AccessShareLock);
	}

	member = checked_member(fcinfo, 2, name, subscription_group_size(name));
	es_require_arg(fcinfo, 1, "up_to_position");
	up_to = PG_GETARG_INT64(1);
	if (up_to < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("up_to_position must not be negative")));
	events = es_open_relation("events", AccessShareLock);
	es_check_feed_readable(events);
	head = es_feed_safe_head(events);
	table_close(events, AccessShareLock);
	if (up_to > head)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("position " INT64_FORMAT " is beyond the feed head " INT64_FORMAT,
						up_to, head),
				 errhint("Acknowledge positions of events that subscription_fetch returned.")));
	if (ack_update(name, member, up_to, &checkpoint))
	{
		SPI_finish();
		PG_RETURN_INT64(checkpoint);
	}

	values[0] = PointerGetDatum(name);
	values[1] = Int32GetDatum(member);
	es_spi_execute(es_prepared_plan(&checkpoint_plan,
									"SELECT c.position FROM event_store.subscription_checkpoints AS c"
									" WHERE c.subscription = $1 AND c.member = $2",
									2, argtypes),
				   values, false, SPI_OK_SELECT, "subscription checkpoint");
	if (SPI_processed == 0)
		report_no_subscription(name);
	checkpoint = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	ereport(WARNING,
			(errmsg("acknowledgement of position " INT64_FORMAT " for subscription \"%s\" member %d was not applied",
					up_to, text_to_cstring(name), member),
			 errdetail("The subscription was reset, or dropped and created again, since this session fetched from it."),
			 errhint("Fetch again: the events after the checkpoint are delivered again.")));
	PG_RETURN_INT64(checkpoint);
}
