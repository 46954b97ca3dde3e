/*-------------------------------------------------------------------------
 *
 * outbox_claim_start.c
 *	  Where the claims of a topic start: an id below which none of its
 *	  messages can be claimable any more, per database and topic, in
 *	  shared memory.  See "Where claims start" below.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "event_store.h"
#include "outbox.h"

/*
 * Where claims start.  A topic's messages are claimed in id order from
 * the (topic, id + 0) index, and its head is a run of index entries whose
 * rows are gone: acknowledged, consumed, buried, or left by the updates of
 * claims.  Vacuum removes them, and a scan marks the entries of rows that
 * no transaction can see any more so that the next one skips them cheaply;
 * but while any transaction is open that could still see them (a long
 * transaction anywhere in the cluster), neither happens, and every claim
 * would step over the whole run again, fetching each row.  So each claim
 * remembers, per database and topic in shared memory, an id below which no
 * message can be claimable any more, and the next claims start there.
 *
 * That id must never pass a message that is yet to become visible: one
 * inserted by a transaction still running, or taking an id from now on.
 * A transaction that inserts into the outbox publishes, in its backend
 * slot, a bound on the lowest id it inserts before it takes its first id
 * (outbox_insert_begin: 1, raised to that id once taken), and clears it
 * once its commit is visible.  A redrive, which brings back ids the starts
 * may have passed already, publishes them and makes the claims of its
 * database forget their starts (outbox_reinsert_begin).  A claim reads the sequence's last value, then the slots, then
 * takes its snapshot: a message not visible to that snapshot has an id
 * above the last value, or at least the bound of a slot.  The claim's start
 * for the next claims is the lowest of those and of the first message its
 * scan saw.  A claim in REPEATABLE READ or SERIALIZABLE uses the start but
 * does not move it (its snapshot is older than what it read).  Ids can also
 * come back below the start in ways this does not see (a prepared
 * transaction that sent, committed later; rows restored into the table):
 * once a second a claim of the topic scans it from its beginning again.
 * Entries are few and recycled (least recently used first): an entry lost
 * only means a scan from the beginning.
 */
#define ES_CLAIM_STARTS		128
#define ES_CLAIM_RESCAN_MS	1000

typedef struct EsClaimStart
{
	Oid			dboid;
	Oid			relid;			/* of event_store.outbox */
	uint64		topic_hash;
	int64		start;
	TimestampTz scanned_at;		/* last scan from the beginning */
	TimestampTz used_at;
} EsClaimStart;

typedef struct EsClaimStarts
{
	slock_t		mutex;
	uint64		epoch;			/* advanced when starts are forgotten */
	EsClaimStart entries[ES_CLAIM_STARTS];
} EsClaimStarts;

static EsClaimStarts *claim_starts = NULL;

Size
es_outbox_shmem_size(void)
{
	return MAXALIGN(sizeof(EsClaimStarts));
}

void
es_outbox_shmem_init(void *base, bool found)
{
	claim_starts = (EsClaimStarts *) base;
	if (!found)
	{
		memset(claim_starts, 0, sizeof(EsClaimStarts));
		SpinLockInit(&claim_starts->mutex);
	}
}

/*
 * The lowest id a message that the next snapshot does not show can have:
 * see "Where claims start".  Call before taking the snapshot.
 */
int64
es_outbox_lowest_future_id(void)
{
	LOCAL_FCINFO(seq_fcinfo, 1);
	Datum		last;
	int64		lowest;

	InitFunctionCallInfoData(*seq_fcinfo, NULL, 1, InvalidOid, NULL, NULL);
	seq_fcinfo->args[0].value = ObjectIdGetDatum(es_relation_oid("outbox_id_seq"));
	seq_fcinfo->args[0].isnull = false;
	last = pg_sequence_last_value(seq_fcinfo);
	lowest = seq_fcinfo->isnull ? 1 : DatumGetInt64(last) + 1;
	pg_memory_barrier();
	for (int i = 0; i < es_shared->num_backend_slots; i++)
	{
		volatile EsBackendSlot *slot = &es_backend_slots[i];
		uint64		first = pg_atomic_read_u64((pg_atomic_uint64 *) &slot->outbox_first_id);

		if (first == 0)
			continue;
		pg_read_barrier();
		if (slot->outbox_dboid == MyDatabaseId && (int64) first < lowest)
			lowest = (int64) first;
	}
	return lowest;
}

/* A topic's key among the claim starts. */
uint64
es_claim_topic_hash(text *topic)
{
	return DatumGetUInt64(hash_any_extended((const unsigned char *) VARDATA_ANY(topic),
											VARSIZE_ANY_EXHDR(topic), 0));
}

/*
 * Where a claim of topic starts; *from_beginning when the topic has no
 * entry, or was not scanned from its beginning for a second.
 */
int64
es_claim_start_get(Oid relid, uint64 hash, TimestampTz now, bool *from_beginning,
				   uint64 *epoch)
{
	int64		start = 0;

	*from_beginning = true;
	*epoch = 0;
	if (claim_starts == NULL)
		return 0;
	SpinLockAcquire(&claim_starts->mutex);
	*epoch = claim_starts->epoch;
	for (int i = 0; i < ES_CLAIM_STARTS; i++)
	{
		EsClaimStart *e = &claim_starts->entries[i];

		if (e->topic_hash == hash && e->relid == relid && e->dboid == MyDatabaseId)
		{
			if (!TimestampDifferenceExceeds(e->scanned_at, now, ES_CLAIM_RESCAN_MS))
			{
				start = e->start;
				*from_beginning = false;
			}
			e->used_at = now;
			break;
		}
	}
	SpinLockRelease(&claim_starts->mutex);
	return start;
}

/*
 * Remember where the next claims of topic start: start, found by a scan
 * from the beginning (then it replaces what was there) or not (then the
 * start only moves on).  Nothing, if the starts were forgotten since the
 * claim read its own (epoch).
 */
void
es_claim_start_set(Oid relid, uint64 hash, TimestampTz now, int64 start,
				   bool from_beginning, uint64 epoch)
{
	EsClaimStart *e = NULL;

	if (claim_starts == NULL)
		return;
	SpinLockAcquire(&claim_starts->mutex);
	if (claim_starts->epoch != epoch)
	{
		SpinLockRelease(&claim_starts->mutex);
		return;
	}
	for (int i = 0; i < ES_CLAIM_STARTS; i++)
	{
		EsClaimStart *candidate = &claim_starts->entries[i];

		if (candidate->topic_hash == hash && candidate->relid == relid &&
			candidate->dboid == MyDatabaseId)
		{
			e = candidate;
			break;
		}
		if (e == NULL || candidate->used_at < e->used_at)
			e = candidate;
	}
	if (e->topic_hash != hash || e->relid != relid || e->dboid != MyDatabaseId)
	{
		/* a new entry: only a scan from the beginning may make it */
		if (from_beginning)
		{
			e->dboid = MyDatabaseId;
			e->relid = relid;
			e->topic_hash = hash;
			e->start = start;
			e->scanned_at = now;
			e->used_at = now;
		}
	}
	else if (from_beginning)
	{
		e->start = start;
		e->scanned_at = now;
	}
	else if (start > e->start)
		e->start = start;
	SpinLockRelease(&claim_starts->mutex);
}

/*
 * Forget where the claims of this database start, and make the claims
 * that are running not store what they found (the epoch moves): a
 * redrive is about to bring back ids they may have passed.
 */
void
es_claim_starts_forget(void)
{
	if (claim_starts == NULL)
		return;
	SpinLockAcquire(&claim_starts->mutex);
	claim_starts->epoch++;
	for (int i = 0; i < ES_CLAIM_STARTS; i++)
		if (claim_starts->entries[i].dboid == MyDatabaseId)
			claim_starts->entries[i].dboid = InvalidOid;
	SpinLockRelease(&claim_starts->mutex);
}
