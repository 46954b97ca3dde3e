/*-------------------------------------------------------------------------
 *
 * lifecycle.c
 *	  Stream metadata (retention and soft deletion) as the C read and
 *	  append paths see it, and the stream lock for the SQL functions of
 *	  the stream lifecycle.
 *
 * A stream's retention limits and soft deletion live in one row of
 * event_store.stream_settings, written by set_stream_metadata, delete_stream(soft)
 * and scavenge.  read_stream applies them at once: events below the
 * retention cut, or older than max_age, are not returned even before the
 * scavenger removes them.  When the scavenger removes a stream's last
 * event, it records that version in the row (removed_through), so that the
 * stream's versions continue where they were.
 *
 * Erasure rewrites rows; scrub_page then wipes the bytes that VACUUM frees
 * but leaves in place.
 *
 * Most stores never set metadata: while the table has never had a row
 * (no block on disk), no lookup is made at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xloginsert.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/procarray.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "compat.h"
#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_lock_stream);
PG_FUNCTION_INFO_V1(event_store_scrub_page);

/* Columns of event_store.stream_settings. */
enum
{
	Anum_streams_stream = 1,
	Anum_streams_max_count,
	Anum_streams_max_age,
	Anum_streams_truncate_before,
	Anum_streams_deleted_before,
	Anum_streams_removed_through
};

/*
 * Read the metadata row of a stream with the given snapshot.  meta->found
 * is false when the stream has none (then it has no limits).
 */
void
es_read_stream_meta(text *stream, Snapshot snapshot, EsStreamMeta *meta)
{
	Relation	streams;
	Relation	pkey;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;

	memset(meta, 0, sizeof(EsStreamMeta));
	meta->removed_through = -1;

	streams = es_open_relation("stream_settings", AccessShareLock);
	if (RelationGetNumberOfBlocks(streams) == 0)
	{
		table_close(streams, AccessShareLock);
		return;
	}
	pkey = es_open_relation("stream_settings_pkey", AccessShareLock);
	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber,
						   InvalidOid, pkey->rd_indcollation[0],
						   F_TEXTEQ, PointerGetDatum(stream));
	slot = table_slot_create(streams, NULL);
	scan = es_index_beginscan(streams, pkey, snapshot, 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		value;

		meta->found = true;
		value = slot_getattr(slot, Anum_streams_max_count, &isnull);
		meta->has_max_count = !isnull;
		if (!isnull)
			meta->max_count = DatumGetInt64(value);
		value = slot_getattr(slot, Anum_streams_max_age, &isnull);
		meta->has_max_age = !isnull;
		if (!isnull)
			meta->max_age = *DatumGetIntervalP(value);
		value = slot_getattr(slot, Anum_streams_truncate_before, &isnull);
		meta->has_truncate_before = !isnull;
		if (!isnull)
			meta->truncate_before = DatumGetInt64(value);
		value = slot_getattr(slot, Anum_streams_deleted_before, &isnull);
		if (!isnull)
			meta->deleted_before = DatumGetInt64(value);
		value = slot_getattr(slot, Anum_streams_removed_through, &isnull);
		if (!isnull)
			meta->removed_through = DatumGetInt64(value);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(streams, AccessShareLock);
}

/*
 * The first version of a stream that its retention and soft deletion keep,
 * given the version of its last event: versions below it are not read.
 * max_age is per event and not part of it.
 */
int64
es_stream_retention_cut(const EsStreamMeta *meta, int64 head_version)
{
	int64		cut = meta->deleted_before;

	if (meta->has_truncate_before && meta->truncate_before > cut)
		cut = meta->truncate_before;
	if (meta->has_max_count && head_version - meta->max_count + 1 > cut)
		cut = head_version - meta->max_count + 1;
	return cut;
}

/*
 * lock_stream(stream): take the stream's append lock until the end of the
 * transaction, after checking the name.  For the SQL functions of the
 * lifecycle (set_stream_metadata, scavenge, erase_stream), so that they do
 * not interleave with an append to the same stream.  Not granted.
 */
Datum
event_store_lock_stream(PG_FUNCTION_ARGS)
{
	text	   *stream = es_checked_stream_arg(fcinfo, 0);

	es_lock_stream(VARDATA_ANY(stream), VARSIZE_ANY_EXHDR(stream));
	PG_RETURN_VOID();
}

/*
 * scrub_page(relname, block): after an erasure, wipe what is left of the
 * old row versions on one page of one of the extension's tables.
 *
 * VACUUM removes dead row versions from a page by packing the live ones
 * together, but leaves the bytes it freed in the page's hole (between the
 * line pointers and the tuples) as they were: erased data would stay in
 * the table's files.  Once the page holds no row version that is dead or
 * still visible to someone as deleted, the hole is zeroed and the page is
 * logged whole (a full-page image, whose hole replay fills with zeros).
 * Returns true when the page is clean (or gone, the table having been
 * truncated), false when dead row versions are still there: VACUUM has
 * not removed them yet, or a snapshot still needs them; try again later.
 * Not granted; scavenge calls it for the pages erase_stream recorded.
 */
Datum
event_store_scrub_page(PG_FUNCTION_ARGS)
{
	char	   *relname;
	int64		block;
	Relation	rel;
	Buffer		buffer;
	Page		page;
	PageHeader	header;
	TransactionId oldest_xmin;
	OffsetNumber maxoff;
	bool		clean = true;

	es_require_arg(fcinfo, 0, "relation name");
	es_require_arg(fcinfo, 1, "block");
	relname = text_to_cstring(PG_GETARG_TEXT_PP(0));
	block = PG_GETARG_INT64(1);
	if (strcmp(relname, "events") != 0 && strcmp(relname, "outbox") != 0 &&
		strcmp(relname, "outbox_dead_letters") != 0 &&
		strcmp(relname, "relay_parked") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("relation \"%s\" is not scrubbed", relname)));

	rel = es_open_relation(relname, AccessShareLock);
	if (block < 0 || block >= (int64) RelationGetNumberOfBlocks(rel))
	{
		table_close(rel, AccessShareLock);
		PG_RETURN_BOOL(true);
	}

	oldest_xmin = GetOldestNonRemovableTransactionId(rel);
	buffer = ReadBuffer(rel, (BlockNumber) block);
	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	page = BufferGetPage(buffer);
	header = (PageHeader) page;

	if (!PageIsNew(page))
	{
		maxoff = PageGetMaxOffsetNumber(page);
		for (OffsetNumber off = FirstOffsetNumber; off <= maxoff && clean;
			 off = OffsetNumberNext(off))
		{
			ItemId		item = PageGetItemId(page, off);
			HeapTupleData tuple;
			HTSV_Result state;

			if (!ItemIdIsNormal(item))
				continue;
			tuple.t_data = (HeapTupleHeader) PageGetItem(page, item);
			tuple.t_len = ItemIdGetLength(item);
			tuple.t_tableOid = RelationGetRelid(rel);
			ItemPointerSet(&tuple.t_self, (BlockNumber) block, off);
			state = HeapTupleSatisfiesVacuum(&tuple, oldest_xmin, buffer);
			if (state != HEAPTUPLE_LIVE && state != HEAPTUPLE_INSERT_IN_PROGRESS)
				clean = false;
		}
	}

	if (clean && !PageIsNew(page) && header->pd_upper > header->pd_lower)
	{
		START_CRIT_SECTION();
		memset((char *) page + header->pd_lower, 0,
			   header->pd_upper - header->pd_lower);
		MarkBufferDirty(buffer);
		if (RelationNeedsWAL(rel))
			log_newpage_buffer(buffer, true);
		END_CRIT_SECTION();
	}

	UnlockReleaseBuffer(buffer);
	table_close(rel, AccessShareLock);
	PG_RETURN_BOOL(clean);
}
