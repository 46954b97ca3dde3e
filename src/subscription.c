/*-------------------------------------------------------------------------
 *
 * subscription.c
 *	  subscription_fetch and subscription_ack, the consumers' hot path, and
 *	  the session's memory of the subscriptions it fetched from, which
 *	  fences its acknowledgements.
 *
 * A fetch locks the member's checkpoint row (and shares the lock of the
 * subscription's row, which subscription_drop deletes first) with one
 * prepared statement, then reads the feed from the checkpoint straight
 * into the function's result, as read_all does (read_feed.c): no SQL
 * function in between and no second copy of the rows.  The statements
 * that lock and move checkpoints are prepared once per backend (plans.c);
 * both functions run as SECURITY DEFINER with a pinned search_path, so
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

#include "access/table.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

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
	static SPIPlanPtr lock_plan = NULL;
	static SPIPlanPtr covered_plan = NULL;
	static const char *lock_sql =
		"SELECT c.position, c.fence, s.category, s.group_size,"
		" s.event_types, s.stream_prefix"
		" FROM event_store.subscriptions AS s"
		" JOIN event_store.subscription_checkpoints AS c"
		" ON c.subscription = s.name"
		" WHERE s.name = $1 AND c.member = $2"
		" FOR KEY SHARE OF s FOR NO KEY UPDATE OF c";
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *name = checked_subscription_name(fcinfo, 0);
	Oid			lock_argtypes[2] = {TEXTOID, INT4OID};
	Datum		values[3];
	int32		member = 0;
	int32		group_size;
	int32		max_count;
	bool		locked = false;
	HeapTuple	row;
	TupleDesc	rowdesc;
	bool		isnull;
	Datum		datum;
	EsFeedQuery query = {0};
	int64		covered = -1;
	int64		count;

	SPI_connect();

	/*
	 * Read the subscription and the checkpoint in one statement, so that a
	 * concurrent drop (and create) is seen whole or not at all.  The
	 * subscription's row is locked first, as subscription_drop deletes it
	 * before the checkpoints: a drop either waits for this fetch or has
	 * committed before it, and then the row is gone.  A standby cannot
	 * lock rows: there, and when the statement finds nothing, the checks
	 * run first, to report what is wrong.
	 */
	values[0] = PointerGetDatum(name);
	if (!RecoveryInProgress() && !PG_ARGISNULL(2))
	{
		member = PG_GETARG_INT32(2);
		values[1] = Int32GetDatum(member);
		es_spi_execute(es_prepared_plan(&lock_plan, lock_sql, 2, lock_argtypes),
					   values, false, SPI_OK_SELECT, "subscription fetch lock");
		locked = (SPI_processed > 0);
	}
	if (!locked)
	{
		group_size = subscription_group_size(name);
		member = checked_member(fcinfo, 2, name, group_size);
		/* Refuse with the feed's own error on a standby. */
		if (RecoveryInProgress())
		{
			Relation	events = es_open_relation("events", AccessShareLock);

			es_check_feed_readable(events);
			table_close(events, AccessShareLock);
		}
		values[1] = Int32GetDatum(member);
		es_spi_execute(es_prepared_plan(&lock_plan, lock_sql, 2, lock_argtypes),
					   values, false, SPI_OK_SELECT, "subscription fetch lock");
		if (SPI_processed == 0)
			report_no_subscription(name);
	}
	row = SPI_tuptable->vals[0];
	rowdesc = SPI_tuptable->tupdesc;
	max_count = es_checked_max_count(fcinfo, 1);

	query.from_position = DatumGetInt64(SPI_getbinval(row, rowdesc, 1, &isnull)) + 1;
	remember_fence(name, member,
				   DatumGetUUIDP(SPI_getbinval(row, rowdesc, 2, &isnull)));
	datum = SPI_getbinval(row, rowdesc, 3, &isnull);
	if (!isnull)
		query.category = DatumGetTextPP(datum);
	/* The group read with the lock: a size of 1 needs no hashing. */
	group_size = DatumGetInt32(SPI_getbinval(row, rowdesc, 4, &isnull));
	if (group_size > 1)
	{
		query.group_member = member;
		query.group_size = group_size;
	}
	{
		ArrayType  *types = NULL;
		text	   *prefix = NULL;

		datum = SPI_getbinval(row, rowdesc, 5, &isnull);
		if (!isnull)
			types = DatumGetArrayTypeP(datum);
		datum = SPI_getbinval(row, rowdesc, 6, &isnull);
		if (!isnull)
			prefix = DatumGetTextPP(datum);
		es_feed_query_set_filter(&query, types, prefix);
	}
	query.max_count = max_count;
	query.covered = &covered;

	/*
	 * Read with a snapshot taken now, after the lock, as a statement of the
	 * function would: under READ COMMITTED it sees what the fetcher this
	 * one waited for committed.
	 */
	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
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

/*
 * Move the member's checkpoint up to up_to, if this session's last fetch of
 * it (if any) was under its current fence and the subscription exists.
 * Inside SPI.  False when no checkpoint was moved; else *checkpoint is the
 * member's checkpoint.
 */
static bool
ack_update(text *name, int32 member, int64 up_to, int64 *checkpoint)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[4] = {TEXTOID, INT4OID, INT8OID, UUIDOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	pg_uuid_t	fence;
	bool		isnull;
	int			rc;

	values[0] = PointerGetDatum(name);
	values[1] = Int32GetDatum(member);
	values[2] = Int64GetDatum(up_to);
	if (remembered_fence(name, member, &fence))
		values[3] = UUIDPGetDatum(&fence);
	else
	{
		values[3] = (Datum) 0;
		nulls[3] = 'n';
	}
	rc = SPI_execute_plan(es_prepared_plan(&plan,
										   "UPDATE event_store.subscription_checkpoints AS c"
										   " SET position = greatest(c.position, $3), updated_at = now()"
										   " WHERE c.subscription = $1 AND c.member = $2"
										   " AND ($4::uuid IS NULL OR c.fence = $4)"
										   " AND EXISTS (SELECT FROM event_store.subscriptions AS s"
										   " WHERE s.name = $1)"
										   " RETURNING c.position",
										   4, argtypes),
						  values, nulls, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "event_store subscription ack statement returned %s",
			 SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;
	*checkpoint = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 1, &isnull));
	return true;
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
