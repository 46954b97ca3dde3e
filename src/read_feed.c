/*-------------------------------------------------------------------------
 *
 * read_feed.c
 *	  read_all, read_category and feed_head: the global feed and its
 *	  per-category view, gap-safe.  subscription_fetch (subscription.c)
 *	  reads through es_read_feed too.
 *
 * A feed read never shows an event while an event below it may still
 * commit.  It scans the position (or category, position) index up to the
 * safe head computed by feed.c, and decides row by row: a row the caller's
 * snapshot sees is shown; one it does not see is skipped if its transaction
 * aborted, and ends the read if that transaction may still become visible.
 * See feed.c for why that is enough.  Where the safe head cannot be known
 * (a hot standby, a logical replica: replica.c) reads are refused.
 *
 * Filters (consumer group member, event types, stream prefix) are applied
 * to every row before that decision: a row the query does not select is
 * skipped, visible or not.  A read filtered by event types scans the
 * (type, position) index instead, one scan per type, merged in position
 * order.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/itup.h"
#include "access/tableam.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "catalog/pg_type_d.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_read_all);
PG_FUNCTION_INFO_V1(event_store_read_category);
PG_FUNCTION_INFO_V1(event_store_read_feed);
PG_FUNCTION_INFO_V1(event_store_feed_head);
PG_FUNCTION_INFO_V1(event_store_read_feed_covered);

/* What the session's last read_feed covered (read_feed_covered). */
static int64 last_read_feed_covered = -1;

/*
 * Does the query select this row: its consumer group member, its event
 * types, its stream prefix, and its category when the scan's index does
 * not ensure it?
 */
static bool
feed_row_selected(const EsFeedQuery *query, TupleTableSlot *slot,
				  bool check_category)
{
	if (query->group_size > 0 || query->stream_prefix != NULL || check_category)
	{
		text	   *stream = DatumGetTextPP(es_getattr(slot, Anum_events_stream));

		/* The category is the part of the name before its first '-'. */
		if (check_category)
		{
			Size		clen = VARSIZE_ANY_EXHDR(query->category);
			Size		slen = VARSIZE_ANY_EXHDR(stream);

			if (slen < clen ||
				memcmp(VARDATA_ANY(stream), VARDATA_ANY(query->category), clen) != 0 ||
				(slen > clen && VARDATA_ANY(stream)[clen] != '-'))
				return false;
		}

		if (query->group_size > 0 &&
			es_consumer_group_member(VARDATA_ANY(stream),
									 VARSIZE_ANY_EXHDR(stream),
									 query->group_size) != query->group_member)
			return false;
		if (query->stream_prefix != NULL)
		{
			Size		plen = VARSIZE_ANY_EXHDR(query->stream_prefix);

			if (VARSIZE_ANY_EXHDR(stream) < plen ||
				memcmp(VARDATA_ANY(stream), VARDATA_ANY(query->stream_prefix),
					   plen) != 0)
				return false;
		}
	}
	if (query->ntypes > 0)
	{
		text	   *type = DatumGetTextPP(es_getattr(slot, Anum_events_type));
		Size		len = VARSIZE_ANY_EXHDR(type);

		for (int i = 0; i < query->ntypes; i++)
			if (VARSIZE_ANY_EXHDR(query->types[i]) == len &&
				memcmp(VARDATA_ANY(query->types[i]), VARDATA_ANY(type), len) == 0)
				return true;
		return false;
	}
	return true;
}

/*
 * One index scan of a feed read, and the entry it stands on.
 */
typedef struct FeedScan
{
	IndexScanDesc scan;
	ItemPointer tid;			/* NULL when the scan is done */
	int64		position;		/* of the entry, when positions are read */
} FeedScan;

static void
feed_scan_advance(FeedScan *fs, AttrNumber position_attno, bool read_position)
{
	fs->tid = index_getnext_tid(fs->scan, ForwardScanDirection);
	if (fs->tid != NULL && read_position)
	{
		bool		isnull;

		fs->position = DatumGetInt64(index_getattr(fs->scan->xs_itup,
												   position_attno,
												   fs->scan->xs_itupdesc,
												   &isnull));
	}
}

/*
 * Append to tupstore the events of the feed (or of one category) from
 * query->from_position, at most query->max_count, that a reader may see
 * now, that its filters select.  Returns the number of events stored; in
 * *query->covered, if set, the position up to which the query has seen
 * all it will ever select (a filtered consumer can move its checkpoint
 * there even when nothing was selected).
 *
 * A read filtered by event types scans the (type, position) index once
 * per type and merges the scans in position order, so the events of other
 * types are never visited; other reads scan the position index, or the
 * (category, position) index for a category.  A scan of several types
 * stops at the same rows a scan of all events would, since it meets the
 * rows it selects in the same order.
 */
int64
es_read_feed(const EsFeedQuery *query, Tuplestorestate *tupstore,
			 TupleDesc tupdesc)
{
	Relation	events;
	Relation	index;
	FeedScan   *scans;
	int			nscans;
	IndexFetchTableData *any_fetch;
	TupleTableSlot *slot;
	Snapshot	snapshot = GetActiveSnapshot();
	ScanKeyData keys[3];
	AttrNumber	position_attno;
	bool		by_type = query->ntypes > 0;
	bool		check_category = false;
	int64		head;
	int64		count = 0;
	int64		covered = query->from_position - 1;
	bool		exhausted = false;
	bool		as_is;

	events = es_open_relation("events", AccessShareLock);
	es_check_feed_readable(events);
	head = es_feed_safe_head(events);
	if (query->max_count == 0 || query->from_position > head)
	{
		table_close(events, AccessShareLock);
		if (query->covered)
			*query->covered = Max(covered, 0);
		return 0;
	}

	if (by_type)
	{
		index = es_open_relation("events_type_position_idx", AccessShareLock);
		position_attno = 2;
		nscans = query->ntypes;
		check_category = (query->category != NULL);
	}
	else if (query->category != NULL)
	{
		index = es_open_relation("events_category_position_idx",
						   AccessShareLock);
		position_attno = 2;
		nscans = 1;
	}
	else
	{
		index = es_open_relation("events_pkey", AccessShareLock);
		position_attno = 1;
		nscans = 1;
	}

	/*
	 * Fetch each row with the reader's snapshot; a row it cannot see is
	 * fetched again without visibility filtering, to decide whether it may
	 * still become visible (stop before it) or never will (skip it).  Such
	 * rows are rare, so most rows cost one visibility check.
	 */
	as_is = es_rows_are_events(events, tupdesc);
	slot = table_slot_create(events, NULL);
	any_fetch = table_index_fetch_begin(events);
	scans = palloc0(nscans * sizeof(FeedScan));
	for (int i = 0; i < nscans; i++)
	{
		int			nkeys = 0;
		text	   *leading = by_type ? query->types[i] : query->category;

		if (leading != NULL)
			ScanKeyEntryInitialize(&keys[nkeys++], 0, 1, BTEqualStrategyNumber,
								   InvalidOid, index->rd_indcollation[0],
								   F_TEXTEQ, PointerGetDatum(leading));
		ScanKeyEntryInitialize(&keys[nkeys++], 0, position_attno,
							   BTGreaterEqualStrategyNumber, InvalidOid, InvalidOid,
							   F_INT8GE, Int64GetDatum(query->from_position));
		ScanKeyEntryInitialize(&keys[nkeys++], 0, position_attno,
							   BTLessEqualStrategyNumber, InvalidOid, InvalidOid,
							   F_INT8LE, Int64GetDatum(head));
		scans[i].scan = es_index_beginscan(events, index, snapshot, nkeys, 0);
		/* Merging several scans needs each entry's position first. */
		scans[i].scan->xs_want_itup = (nscans > 1);
		index_rescan(scans[i].scan, keys, nkeys, NULL, 0);
		feed_scan_advance(&scans[i], position_attno, nscans > 1);
	}

	while (count < query->max_count)
	{
		FeedScan   *cur = NULL;
		bool		visible;
		int64		position;

		CHECK_FOR_INTERRUPTS();

		for (int i = 0; i < nscans; i++)
			if (scans[i].tid != NULL &&
				(cur == NULL || scans[i].position < cur->position))
				cur = &scans[i];
		if (cur == NULL)
		{
			exhausted = true;
			break;
		}

		visible = index_fetch_heap(cur->scan, slot);
		if (!visible)
		{
			bool		call_again = false;
			bool		all_dead = false;

			/* Gone altogether (pruned): an aborted row, nothing to wait for. */
			if (!table_index_fetch_tuple(any_fetch, cur->tid, SnapshotAny, slot,
										 &call_again, &all_dead))
			{
				feed_scan_advance(cur, position_attno, nscans > 1);
				continue;
			}
		}
		feed_scan_advance(cur, position_attno, nscans > 1);

		/*
		 * A row the query does not select is skipped whether or not it is
		 * visible: its commit could never show the reader anything.
		 */
		position = DatumGetInt64(es_getattr(slot, Anum_events_position));
		if (!feed_row_selected(query, slot, check_category))
		{
			covered = position;
			continue;
		}

		if (!visible)
		{
			if (es_feed_classify_invisible_row(slot, snapshot) == ES_ROW_STOP)
			{
				covered = position - 1;
				break;
			}
			covered = position;
			continue;
		}
		es_put_event(tupstore, tupdesc, slot, as_is);
		covered = position;
		count++;
	}
	if (exhausted)
		covered = head;
	if (query->covered)
		*query->covered = Max(covered, 0);
	table_index_fetch_end(any_fetch);
	for (int i = 0; i < nscans; i++)
		index_endscan(scans[i].scan);
	pfree(scans);
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

/*
 * Set the filters of a feed query: event types (NULL for none; a type
 * given twice is kept once) and a stream prefix (NULL for none), checked
 * as the feed functions' arguments are.
 */
void
es_feed_query_set_filter(EsFeedQuery *query, ArrayType *types, text *stream_prefix)
{
	if (types != NULL)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		if (ARR_NDIM(types) > 1)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("event_types must be a one-dimensional array")));
		deconstruct_array(types, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		if (n == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event_types must not be empty"),
					 errhint("Pass NULL to read events of every type.")));
		if (n > ES_MAX_FILTER_TYPES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("too many event types in a filter: %d", n),
					 errdetail("A filter has at most %d event types.",
							   ES_MAX_FILTER_TYPES)));
		query->types = palloc(n * sizeof(text *));
		query->ntypes = 0;
		for (int i = 0; i < n; i++)
		{
			text	   *type;
			bool		duplicate = false;

			if (nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("event_types must not contain NULL")));
			type = DatumGetTextPP(elems[i]);
			if (VARSIZE_ANY_EXHDR(type) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event_types must not contain an empty type")));
			/* Each type is one index scan: a repeated one would repeat rows. */
			for (int j = 0; j < query->ntypes && !duplicate; j++)
				duplicate = es_text_equal(query->types[j], type);
			if (!duplicate)
				query->types[query->ntypes++] = type;
		}
	}
	if (stream_prefix != NULL)
	{
		query->stream_prefix = stream_prefix;
		if (VARSIZE_ANY_EXHDR(query->stream_prefix) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream_prefix must not be empty"),
					 errhint("Pass NULL to read events of every stream.")));
		if (VARSIZE_ANY_EXHDR(query->stream_prefix) > ES_MAX_STREAM_NAME_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("stream_prefix is too long"),
					 errdetail("Stream names are at most %d bytes; this prefix has %d.",
							   ES_MAX_STREAM_NAME_BYTES,
							   (int) VARSIZE_ANY_EXHDR(query->stream_prefix))));
	}
}

/*
 * The filter arguments (event_types text[], stream_prefix text) at argno
 * and argno + 1, when the function has them.  NULL means no filter.
 */
static void
feed_filter_from_args(FunctionCallInfo fcinfo, int argno, EsFeedQuery *query)
{
	ArrayType  *types = NULL;
	text	   *stream_prefix = NULL;

	if (PG_NARGS() > argno && !PG_ARGISNULL(argno))
		types = PG_GETARG_ARRAYTYPE_P(argno);
	if (PG_NARGS() > argno + 1 && !PG_ARGISNULL(argno + 1))
		stream_prefix = PG_GETARG_TEXT_PP(argno + 1);
	es_feed_query_set_filter(query, types, stream_prefix);
}

/* Return the events of a feed query as the function's result set. */
static Datum
return_feed(FunctionCallInfo fcinfo, const EsFeedQuery *query)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	es_init_result_store(fcinfo);
	es_read_feed(query, rsinfo->setResult, rsinfo->setDesc);
	return (Datum) 0;
}

/*
 * read_all(from_position, max_count, event_types, stream_prefix)
 */
Datum
event_store_read_all(PG_FUNCTION_ARGS)
{
	EsFeedQuery query = {0};

	query.from_position = checked_from_position(fcinfo, 0);
	query.max_count = es_checked_max_count(fcinfo, 1);
	feed_filter_from_args(fcinfo, 2, &query);
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
 *				 consumer_group_size, event_types, stream_prefix)
 */
Datum
event_store_read_category(PG_FUNCTION_ARGS)
{
	EsFeedQuery query = {0};

	es_require_arg(fcinfo, 0, "category");
	feed_query_from_args(fcinfo, &query);
	feed_filter_from_args(fcinfo, 5, &query);
	return return_feed(fcinfo, &query);
}

/*
 * read_feed(category, from_position, max_count, consumer_group_member,
 *			 consumer_group_size, event_types, stream_prefix): read_category,
 * or the whole feed when category is NULL.  What subscriptions read.  It
 * remembers how far it covered the feed, for read_feed_covered().
 */
Datum
event_store_read_feed(PG_FUNCTION_ARGS)
{
	EsFeedQuery query = {0};

	feed_query_from_args(fcinfo, &query);
	feed_filter_from_args(fcinfo, 5, &query);
	last_read_feed_covered = -1;
	query.covered = &last_read_feed_covered;
	return return_feed(fcinfo, &query);
}

/*
 * read_feed_covered(): the position up to which the last read_feed of this
 * session covered the feed: a subscription whose filter selected nothing
 * moves its checkpoint there.  NULL before any read_feed.
 */
Datum
event_store_read_feed_covered(PG_FUNCTION_ARGS)
{
	if (last_read_feed_covered < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(last_read_feed_covered);
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
