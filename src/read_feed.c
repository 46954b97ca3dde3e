/*-------------------------------------------------------------------------
 *
 * read_feed.c
 *	  read_all, read_category and feed_head: the global feed and its
 *	  per-category view, gap-safe.
 *
 * A feed read never shows an event while an event below it may still
 * commit.  It scans the position (or category, position) index up to the
 * safe head computed by feed.c, and decides row by row: a row the caller's
 * snapshot sees is shown; one it does not see is skipped if its transaction
 * aborted, and ends the read if that transaction may still become visible.
 * See feed.c for why that is enough.  Where the safe head cannot be known
 * (a hot standby, a logical replica: replica.c) reads are refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "event_store.h"

typedef struct EsFeedQuery
{
	text	   *category;		/* NULL: the whole feed */
	int64		from_position;	/* inclusive */
	int32		max_count;
	int32		group_member;	/* consumer group, when group_size > 0 */
	int32		group_size;
} EsFeedQuery;

PG_FUNCTION_INFO_V1(event_store_read_all);
PG_FUNCTION_INFO_V1(event_store_read_category);
PG_FUNCTION_INFO_V1(event_store_read_feed);
PG_FUNCTION_INFO_V1(event_store_feed_head);

/*
 * Append to tupstore the events of the feed (or of one category) from
 * query->from_position, at most query->max_count, that a reader may see
 * now.  Returns the number of events stored.
 */
static int64
es_read_feed(const EsFeedQuery *query, Tuplestorestate *tupstore,
			 TupleDesc tupdesc)
{
	Relation	events;
	Relation	index;
	IndexScanDesc scan;
	IndexFetchTableData *any_fetch;
	ItemPointer tid;
	TupleTableSlot *slot;
	Snapshot	snapshot = GetActiveSnapshot();
	ScanKeyData keys[3];
	int			nkeys = 0;
	AttrNumber	position_attno;
	int64		head;
	int64		count = 0;
	bool		as_is;

	events = es_open_relation("events", AccessShareLock);
	es_check_feed_readable(events);
	head = es_feed_safe_head(events);
	if (query->max_count == 0 || query->from_position > head)
	{
		table_close(events, AccessShareLock);
		return 0;
	}

	if (query->category != NULL)
	{
		index = es_open_relation("events_category_position_idx",
						   AccessShareLock);
		ScanKeyEntryInitialize(&keys[nkeys++], 0, 1, BTEqualStrategyNumber,
							   InvalidOid, index->rd_indcollation[0],
							   F_TEXTEQ, PointerGetDatum(query->category));
		position_attno = 2;
	}
	else
	{
		index = es_open_relation("events_pkey", AccessShareLock);
		position_attno = 1;
	}
	ScanKeyEntryInitialize(&keys[nkeys++], 0, position_attno,
						   BTGreaterEqualStrategyNumber, InvalidOid, InvalidOid,
						   F_INT8GE, Int64GetDatum(query->from_position));
	ScanKeyEntryInitialize(&keys[nkeys++], 0, position_attno,
						   BTLessEqualStrategyNumber, InvalidOid, InvalidOid,
						   F_INT8LE, Int64GetDatum(head));

	/*
	 * Fetch each row with the reader's snapshot; a row it cannot see is
	 * fetched again without visibility filtering, to decide whether it may
	 * still become visible (stop before it) or never will (skip it).  Such
	 * rows are rare, so most rows cost one visibility check.
	 */
	as_is = es_rows_are_events(events, tupdesc);
	slot = table_slot_create(events, NULL);
	any_fetch = table_index_fetch_begin(events);
	scan = index_beginscan(events, index, snapshot, nkeys, 0);
	index_rescan(scan, keys, nkeys, NULL, 0);

	while (count < query->max_count &&
		   (tid = index_getnext_tid(scan, ForwardScanDirection)) != NULL)
	{
		bool		visible;

		CHECK_FOR_INTERRUPTS();

		visible = index_fetch_heap(scan, slot);
		if (!visible)
		{
			bool		call_again = false;
			bool		all_dead = false;

			/* Gone altogether (pruned): an aborted row, nothing to wait for. */
			if (!table_index_fetch_tuple(any_fetch, tid, SnapshotAny, slot,
										 &call_again, &all_dead))
				continue;
		}

		if (query->group_size > 0)
		{
			text	   *stream = DatumGetTextPP(es_getattr(slot, Anum_events_stream));

			if (es_consumer_group_member(VARDATA_ANY(stream),
										 VARSIZE_ANY_EXHDR(stream),
										 query->group_size) != query->group_member)
				continue;
		}

		if (!visible)
		{
			if (es_feed_classify_invisible_row(slot, snapshot) == ES_ROW_STOP)
				break;
			continue;
		}
		es_put_event(tupstore, tupdesc, slot, as_is);
		count++;
	}
	table_index_fetch_end(any_fetch);
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(events, AccessShareLock);
	return count;
}

static int64
checked_from_position(FunctionCallInfo fcinfo, int argno)
{
	int64		from_position;

	es_require_arg(fcinfo, argno, "from_position");
	from_position = PG_GETARG_INT64(argno);
	if (from_position < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("from_position must not be negative")));
	return from_position;
}

/*
 * Check a (member, size) consumer group: both NULL (no group), or a size of
 * at least 1 and a member in [0, size).
 */
static void
es_check_consumer_group(bool member_isnull, int32 member,
						bool size_isnull, int32 size)
{
	if (member_isnull && size_isnull)
		return;
	if (member_isnull || size_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer_group_member and consumer_group_size must be given together")));
	es_check_consumer_group_size(size);
	if (member < 0 || member >= size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer group member %d is out of range for a group of size %d",
						member, size),
				 errhint("Members are numbered from 0 to size - 1.")));
}

/* Return the events of a feed query as the function's result set. */
static Datum
return_feed(FunctionCallInfo fcinfo, const EsFeedQuery *query)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	es_read_feed(query, rsinfo->setResult, rsinfo->setDesc);
	return (Datum) 0;
}

/*
 * read_all(from_position, max_count)
 */
Datum
event_store_read_all(PG_FUNCTION_ARGS)
{
	EsFeedQuery query = {0};

	query.from_position = checked_from_position(fcinfo, 0);
	query.max_count = es_checked_max_count(fcinfo, 1);
	return return_feed(fcinfo, &query);
}

/*
 * Arguments (category, from_position, max_count, member, size) of
 * read_category and read_feed.
 */
static void
feed_query_from_args(FunctionCallInfo fcinfo, EsFeedQuery *query)
{
	if (!PG_ARGISNULL(0))
	{
		query->category = PG_GETARG_TEXT_PP(0);
		es_check_category(VARDATA_ANY(query->category),
						  VARSIZE_ANY_EXHDR(query->category));
	}
	query->from_position = checked_from_position(fcinfo, 1);
	query->max_count = es_checked_max_count(fcinfo, 2);
	es_check_consumer_group(PG_ARGISNULL(3), PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3),
							PG_ARGISNULL(4), PG_ARGISNULL(4) ? 0 : PG_GETARG_INT32(4));
	if (!PG_ARGISNULL(4))
	{
		query->group_member = PG_GETARG_INT32(3);
		query->group_size = PG_GETARG_INT32(4);
	}
}

/*
 * read_category(category, from_position, max_count, consumer_group_member,
 *				 consumer_group_size)
 */
Datum
event_store_read_category(PG_FUNCTION_ARGS)
{
	EsFeedQuery query = {0};

	es_require_arg(fcinfo, 0, "category");
	feed_query_from_args(fcinfo, &query);
	return return_feed(fcinfo, &query);
}

/*
 * read_feed(category, from_position, max_count, consumer_group_member,
 *			 consumer_group_size): read_category, or the whole feed when
 * category is NULL.  What subscriptions read.
 */
Datum
event_store_read_feed(PG_FUNCTION_ARGS)
{
	EsFeedQuery query = {0};

	feed_query_from_args(fcinfo, &query);
	return return_feed(fcinfo, &query);
}

/*
 * feed_head(): the safe head of the feed.  No event at or below it can
 * still commit; a reader that has seen everything up to it may checkpoint
 * it.  0 when the feed is empty.
 */
Datum
event_store_feed_head(PG_FUNCTION_ARGS)
{
	Relation	events = es_open_relation("events", AccessShareLock);
	int64		head;

	es_check_feed_readable(events);
	head = es_feed_safe_head(events);

	table_close(events, AccessShareLock);
	PG_RETURN_INT64(head);
}
