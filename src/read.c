/*-------------------------------------------------------------------------
 *
 * read.c
 *	  Reading one stream: read_stream, stream_version, and the stream head
 *	  that append checks its expected version against.
 *
 * All of it is a scan of the unique (stream, version) index.  The head of a
 * stream is one backward descent of that index, so finding it costs the same
 * whatever the stream's length, and no separate table of stream heads has
 * to be written on every append.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "catalog/pg_attribute.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_read_stream);
PG_FUNCTION_INFO_V1(event_store_stream_version);

/*
 * Start a scan of one stream in version order.  With has_bound, only
 * versions >= bound (forward) or <= bound (backward) are returned.
 */
EsStreamScan *
es_stream_scan_begin(Relation events, Relation stream_index, text *stream,
					 bool has_bound, int64 bound, bool backward,
					 Snapshot snapshot)
{
	EsStreamScan *ss = palloc0(sizeof(EsStreamScan));
	int			nkeys = has_bound ? 2 : 1;

	ScanKeyEntryInitialize(&ss->keys[0], 0, 1, BTEqualStrategyNumber,
						   InvalidOid, stream_index->rd_indcollation[0],
						   F_TEXTEQ, PointerGetDatum(stream));
	if (has_bound)
		ScanKeyEntryInitialize(&ss->keys[1], 0, 2,
							   backward ? BTLessEqualStrategyNumber : BTGreaterEqualStrategyNumber,
							   InvalidOid, InvalidOid,
							   backward ? F_INT8LE : F_INT8GE,
							   Int64GetDatum(bound));

	ss->direction = backward ? BackwardScanDirection : ForwardScanDirection;
	ss->slot = table_slot_create(events, NULL);
	ss->scan = es_index_beginscan(events, stream_index, snapshot, nkeys, 0);
	index_rescan(ss->scan, ss->keys, nkeys, NULL, 0);
	return ss;
}

/*
 * Next event of the scan, or NULL at the end.  The slot is valid until the
 * next call.
 */
TupleTableSlot *
es_stream_scan_next(EsStreamScan *ss)
{
	CHECK_FOR_INTERRUPTS();
	if (index_getnext_slot(ss->scan, ss->direction, ss->slot))
		return ss->slot;
	return NULL;
}

void
es_stream_scan_end(EsStreamScan *ss)
{
	index_endscan(ss->scan);
	ExecDropSingleTupleTableSlot(ss->slot);
	pfree(ss);
}

/*
 * Read the head of a stream: whether it exists, its last version, the id
 * of its last event, and whether that event is a tombstone.  A stream whose
 * last events the scavenger removed keeps its version (its metadata row
 * remembers it); a soft-deleted stream not written since exists, for its
 * versions to continue, but reads as empty.  With meta non-NULL, the
 * stream's metadata is returned there.
 */
EsStreamHead
es_read_stream_head_meta(Relation events, Relation stream_index, text *stream,
						 Snapshot snapshot, EsStreamMeta *meta)
{
	EsStreamHead head = {.exists = false, .deleted = false, .version = -1};
	EsStreamScan *ss;
	TupleTableSlot *slot;
	EsStreamMeta own_meta;

	ss = es_stream_scan_begin(events, stream_index, stream, false, 0, true,
							  snapshot);
	slot = es_stream_scan_next(ss);
	if (slot != NULL)
	{
		text	   *type;

		head.exists = true;
		head.has_last_id = true;
		head.version = DatumGetInt64(es_getattr(slot, Anum_events_version));
		memcpy(&head.last_id,
			   DatumGetUUIDP(es_getattr(slot, Anum_events_id)),
			   sizeof(pg_uuid_t));
		type = DatumGetTextPP(es_getattr(slot, Anum_events_type));
		head.deleted = (VARSIZE_ANY_EXHDR(type) == strlen(ES_TOMBSTONE_TYPE) &&
						memcmp(VARDATA_ANY(type), ES_TOMBSTONE_TYPE,
							   strlen(ES_TOMBSTONE_TYPE)) == 0);
	}
	es_stream_scan_end(ss);

	if (meta == NULL)
		meta = &own_meta;
	es_read_stream_meta(stream, snapshot, meta);
	if (meta->removed_through > head.version)
	{
		head.exists = true;
		head.has_last_id = false;
		head.version = meta->removed_through;
	}
	head.soft_deleted = (head.exists && !head.deleted &&
						 meta->deleted_before > head.version);
	return head;
}

EsStreamHead
es_read_stream_head(Relation events, Relation stream_index, text *stream,
					Snapshot snapshot)
{
	return es_read_stream_head_meta(events, stream_index, stream, snapshot,
									NULL);
}

/*
 * Value of a column that the table declares NOT NULL.
 */
Datum
es_getattr(TupleTableSlot *slot, int attnum)
{
	bool		isnull;
	Datum		value = slot_getattr(slot, attnum, &isnull);

	Assert(!isnull);
	return value;
}

void
es_report_stream_deleted(text *stream)
{
	ereport(ERROR,
			(errcode(ERRCODE_ES_STREAM_DELETED),
			 errmsg("stream \"%s\" is deleted", text_to_cstring(stream))));
}

/*
 * Whether rows of the events table are, physically, rows of the result
 * type (same columns, none dropped), so that es_put_event can store them as
 * they are.  True unless a future upgrade alters the table.
 */
bool
es_rows_are_events(Relation events, TupleDesc tupdesc)
{
	TupleDesc	table = RelationGetDescr(events);

	if (table->natts != tupdesc->natts)
		return false;
	for (int i = 0; i < table->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(table, i);
		Form_pg_attribute b = TupleDescAttr(tupdesc, i);

		if (a->attisdropped || b->attisdropped || a->atttypid != b->atttypid)
			return false;
	}
	return true;
}

/*
 * Store an events row into a result tuplestore: as it is when as_is (see
 * es_rows_are_events), column by column otherwise.
 */
void
es_put_event(Tuplestorestate *tupstore, TupleDesc tupdesc,
			 TupleTableSlot *slot, bool as_is)
{
	if (as_is)
	{
		tuplestore_puttupleslot(tupstore, slot);
		return;
	}
	slot_getsomeattrs(slot, Natts_events);
	tuplestore_putvalues(tupstore, tupdesc, slot->tts_values, slot->tts_isnull);
}

/*
 * read_stream(stream, from_version, max_count, backward)
 *
 * Events of one stream from from_version (inclusive), forward or backward,
 * at most max_count of them.  A backward read with from_version NULL starts
 * at the last event; a forward one at version 0.  A stream without events
 * gives no rows; a deleted stream is an error.  The stream's retention
 * (stream metadata) and a soft delete hide the events they cover.
 */
Datum
event_store_read_stream(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *stream = es_checked_stream_arg(fcinfo, 0);
	int32		max_count = es_checked_max_count(fcinfo, 2);
	bool		backward;
	bool		has_bound;
	int64		from_version = 0;
	Relation	events;
	Relation	stream_index;
	Snapshot	snapshot;
	EsStreamHead head;
	EsStreamMeta meta;
	int64		cut;
	TimestampTz oldest = 0;

	es_require_arg(fcinfo, 3, "backward");
	backward = PG_GETARG_BOOL(3);

	has_bound = !PG_ARGISNULL(1);
	if (has_bound)
	{
		from_version = PG_GETARG_INT64(1);
		if (from_version < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("from_version must not be negative")));
	}

	es_init_result_store(fcinfo);

	events = es_open_relation("events", AccessShareLock);
	stream_index = es_open_relation("events_stream_version_key",
							  AccessShareLock);
	snapshot = GetActiveSnapshot();

	head = es_read_stream_head_meta(events, stream_index, stream, snapshot,
									&meta);
	if (head.deleted)
		es_report_stream_deleted(stream);

	/*
	 * Retention applies at once: versions below the cut, and events older
	 * than max_age, are not returned, even while the scavenger has not
	 * removed them yet.
	 */
	cut = es_stream_retention_cut(&meta, head.version);
	if (meta.has_max_age)
		oldest = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
														 TimestampTzGetDatum(GetCurrentTransactionStartTimestamp()),
														 IntervalPGetDatum(&meta.max_age)));
	if (!backward && (!has_bound || from_version < cut))
	{
		has_bound = true;
		from_version = cut;
	}

	if (head.exists && max_count > 0 && cut <= head.version)
	{
		EsStreamScan *ss;
		TupleTableSlot *slot;
		int32		count = 0;
		bool		as_is = es_rows_are_events(events, rsinfo->setDesc);

		ss = es_stream_scan_begin(events, stream_index, stream,
								  has_bound, from_version, backward, snapshot);
		while (count < max_count && (slot = es_stream_scan_next(ss)) != NULL)
		{
			if (DatumGetInt64(es_getattr(slot, Anum_events_version)) < cut)
			{
				if (backward)
					break;
				continue;
			}
			if (meta.has_max_age &&
				DatumGetTimestampTz(es_getattr(slot, Anum_events_recorded_at)) < oldest)
				continue;
			es_put_event(rsinfo->setResult, rsinfo->setDesc, slot, as_is);
			count++;
		}
		es_stream_scan_end(ss);
	}

	index_close(stream_index, AccessShareLock);
	table_close(events, AccessShareLock);
	return (Datum) 0;
}

/*
 * stream_version(stream): version of the stream's last event, NULL when the
 * stream has none (or was soft-deleted and not written since).
 */
Datum
event_store_stream_version(PG_FUNCTION_ARGS)
{
	text	   *stream = es_checked_stream_arg(fcinfo, 0);
	Relation	events;
	Relation	stream_index;
	EsStreamHead head;

	events = es_open_relation("events", AccessShareLock);
	stream_index = es_open_relation("events_stream_version_key",
							  AccessShareLock);
	head = es_read_stream_head(events, stream_index, stream,
							   GetActiveSnapshot());
	index_close(stream_index, AccessShareLock);
	table_close(events, AccessShareLock);

	if (head.deleted)
		es_report_stream_deleted(stream);
	if (!head.exists || head.soft_deleted)
		PG_RETURN_NULL();
	PG_RETURN_INT64(head.version);
}
