/*-------------------------------------------------------------------------
 *
 * outbox_topics.c
 *	  What this backend caches of event_store.outbox_topics, for sends
 *	  (which topics are delivered through the WAL) and for claims (the
 *	  policy of the last topic one looked at).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/snapmgr.h"
#include "utils/lsyscache.h"

#include "compat.h"
#include "event_store.h"
#include "outbox.h"

PG_FUNCTION_INFO_V1(event_store_outbox_topics_changed);

/*
 * What this backend caches of event_store.outbox_topics: the names of the
 * topics delivered through the WAL (text *), and the policy of the last
 * topic a claim looked at, as event_store.outbox_topic_settings gives it.
 * A statement trigger on outbox_topics sends a relcache invalidation when
 * it changes (see outbox_topics_changed), which empties both.
 */
static MemoryContext wal_topics_context = NULL;
static List *wal_topics = NIL;
static bool wal_topics_valid = false;
static MemoryContext policy_context = NULL;
static text *policy_topic = NULL;
static int32 policy_max_attempts;
static Interval policy_lease;
static Oid	outbox_topics_relid = InvalidOid;
static bool outbox_topics_watched = false;

static void
outbox_topics_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == outbox_topics_relid)
	{
		wal_topics_valid = false;
		policy_topic = NULL;
	}
}

/* Empty the caches above when outbox_topics changes. */
static void
watch_outbox_topics(void)
{
	if (!outbox_topics_watched)
	{
		CacheRegisterRelcacheCallback(outbox_topics_relcache_callback, (Datum) 0);
		outbox_topics_watched = true;
	}
}

/*
 * Read the names of the WAL topics from outbox_topics, with the latest
 * snapshot (a topic configured by a transaction that committed a moment
 * ago counts at once).
 */
static void
load_wal_topics(void)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	AttrNumber	topic_attnum;
	AttrNumber	delivery_attnum;

	watch_outbox_topics();
	if (wal_topics_context == NULL)
		wal_topics_context = AllocSetContextCreate(TopMemoryContext,
												   "event_store WAL topics",
												   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(wal_topics_context);
	wal_topics = NIL;

	rel = es_open_relation("outbox_topics", AccessShareLock);
	outbox_topics_relid = RelationGetRelid(rel);
	/* By name: an updated installation may have its columns elsewhere. */
	topic_attnum = get_attnum(outbox_topics_relid, "topic");
	delivery_attnum = get_attnum(outbox_topics_relid, "delivery");
	if (topic_attnum == InvalidAttrNumber || delivery_attnum == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"event_store\" must be updated"),
				 errhint("Run ALTER EXTENSION event_store UPDATE.")));
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		delivery = slot_getattr(slot, delivery_attnum, &isnull);

		if (!isnull && strcmp(TextDatumGetCString(delivery), "wal") == 0)
		{
			MemoryContext old = MemoryContextSwitchTo(wal_topics_context);

			wal_topics = lappend(wal_topics,
								 DatumGetTextPCopy(slot_getattr(slot, topic_attnum,
																&isnull)));
			MemoryContextSwitchTo(old);
		}
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	/* Set last: an invalidation during the load makes us load again. */
	wal_topics_valid = true;
}

/* Whether messages to the topic are logical decoding messages. */
bool
es_outbox_topic_is_wal(text *topic)
{
	ListCell   *lc;

	if (!wal_topics_valid)
		load_wal_topics();
	foreach(lc, wal_topics)
	{
		if (es_text_equal(lfirst(lc), topic))
			return true;
	}
	return false;
}

/*
 * Statement trigger on outbox_topics: tell every backend to read the WAL
 * topics again.
 */
Datum
event_store_outbox_topics_changed(PG_FUNCTION_ARGS)
{
	return es_invalidate_trigger_table(fcinfo, "outbox_topics_changed");
}

static const char *const policy_sql =
"SELECT s.max_attempts, s.lease FROM event_store.outbox_topic_settings($1) AS s";

/* The topic's maximum attempts and lease. */
void
es_outbox_topic_policy(text *topic, int32 *max_attempts, Interval *lease)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {PointerGetDatum(topic)};
	bool		isnull;
	MemoryContext old;

	watch_outbox_topics();
	if (policy_topic != NULL && es_text_equal(policy_topic, topic))
	{
		*max_attempts = policy_max_attempts;
		*lease = policy_lease;
		return;
	}
	policy_topic = NULL;
	outbox_topics_relid = es_relation_oid("outbox_topics");

	SPI_connect();
	es_spi_execute(es_prepared_plan(&plan, policy_sql, 1, argtypes), values, true,
				   SPI_OK_SELECT, "outbox topic policy");
	if (SPI_processed != 1)
		elog(ERROR, "outbox_topic_settings returned " UINT64_FORMAT " rows",
			 SPI_processed);
	policy_max_attempts = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
	policy_lease = *DatumGetIntervalP(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();

	if (policy_context == NULL)
		policy_context = AllocSetContextCreate(TopMemoryContext,
											   "event_store outbox policy",
											   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(policy_context);
	old = MemoryContextSwitchTo(policy_context);
	policy_topic = (text *) PG_DETOAST_DATUM_COPY(PointerGetDatum(topic));
	MemoryContextSwitchTo(old);
	*max_attempts = policy_max_attempts;
	*lease = policy_lease;
}
