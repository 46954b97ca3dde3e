/*-------------------------------------------------------------------------
 *
 * outbox_xact.c
 *	  What a transaction did to the outbox, and what its end does about it.
 *
 * A transaction that sent to a topic, or freed a message of it (an ack,
 * nack, consume or burial of a keyed message may free the next message of
 * its key), wakes at commit the claims waiting for that topic; one that
 * sent wakes the relay.  One that inserts publishes a bound on the ids it
 * inserts while it runs (see "Where claims start" in outbox_claim_start.c).
 * One whose only writes are claims commits asynchronously.
 *
 * A waiting claim publishes the topic it waits for in its backend slot
 * (shared memory, src/shmem.c), then takes a fresh snapshot and tries to
 * claim; a committer looks at the slots once its commit is visible.
 * Since the waiter publishes before it looks and the committer looks after
 * its commit is visible, either the waiter's snapshot shows the message or
 * the committer sees the waiter: no wake-up is lost, and nothing polls.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"

#include "compat.h"
#include "event_store.h"
#include "outbox.h"

PG_FUNCTION_INFO_V1(event_store_outbox_reinsert_begin);

/*
 * The topics this transaction sent messages to: its commit wakes the relay
 * if one of them is routed (es_outbox_take_sent).
 */
static EsTopicSet sent_to_relay;

/*
 * The topics this transaction sent to or freed a message of: its commit
 * wakes the claims waiting for them.  Past ES_TOPIC_SET_SIZE distinct
 * topics it wakes every claim waiting in the database (a spurious wake-up
 * costs a look).
 */
static EsTopicSet claim_topics;
static bool outbox_callback_registered = false;

/*
 * This transaction published a bound on the outbox ids it inserts
 * (inserting), and that bound is its first id, not 1 (first_id_known).
 */
static bool inserting = false;
static bool first_id_known = false;

/*
 * A topic's hash, as waiting claims publish it and the relay remembers its
 * routed topics; never 0, which means "not waiting".
 */
uint32
es_topic_hash(const char *topic, int len)
{
	uint32		h;

	h = DatumGetUInt32(hash_any((const unsigned char *) topic, len));
	return h == 0 ? 1 : h;
}

static uint32
topic_hash(text *topic)
{
	return es_topic_hash(VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic));
}

/*
 * At commit, set the latch of every claim waiting in this database for a
 * topic the transaction sent to.  The commit is visible by then; the
 * barrier orders that before reading the slots (see the file's header).
 */
static void
wake_waiting_claims(void)
{
	if (!es_shmem_available() || (claim_topics.count == 0 && !claim_topics.all))
		return;
	pg_memory_barrier();
	for (int i = 0; i < es_shared->num_backend_slots; i++)
	{
		volatile EsBackendSlot *slot = &es_backend_slots[i];
		uint32		waiting = slot->claim_wait_topic;

		if (waiting == 0 || slot->claim_wait_dboid != MyDatabaseId)
			continue;
		if (es_topic_set_has(&claim_topics, waiting))
			SetLatch(&ProcGlobal->allProcs[i].procLatch);
	}
}

/*
 * A transaction whose only writes are claims commits without waiting for
 * its WAL to be flushed (asynchronous commit).  A claim is a lease: if a
 * crash loses its commit, the message was simply not leased, and is
 * handed out again at once, its attempt not counted, which at-least-once
 * delivery allows (a crash after a durable claim redelivers it too, once
 * the lease runs out); the consumer's ack of it then matches nothing.  A
 * consumer that claims and acknowledges in two transactions thus waits
 * for one flush per batch, like a queue that deletes in one.  Any other
 * write in the transaction (before the first claim: it had an xid or WAL;
 * after the last one: its WAL went on) keeps the commit synchronous.
 */
static bool claims_only = false;
static XLogRecPtr claims_wal_end = InvalidXLogRecPtr;

static void
outbox_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (claims_only && XactLastRecEnd == claims_wal_end)
				(void) set_config_option("synchronous_commit", "off",
										 PGC_USERSET, PGC_S_SESSION,
										 GUC_ACTION_LOCAL, true, 0, false);
			claims_only = false;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			wake_waiting_claims();
			/* FALLTHROUGH */
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			claim_topics.count = 0;
			claim_topics.all = false;
			/* After the commit is visible: see es_outbox_insert_begin. */
			if (inserting && es_shmem_available())
				pg_atomic_write_u64(&es_my_backend_slot()->outbox_first_id, 0);
			inserting = false;
			first_id_known = false;
			claims_only = false;
			break;
		default:
			break;
	}
}

static void
register_outbox_callback(void)
{
	if (!outbox_callback_registered)
	{
		RegisterXactCallback(outbox_xact_callback, NULL);
		outbox_callback_registered = true;
	}
}

/*
 * Before this transaction takes its first outbox id: publish that it may
 * insert any id (see "Where claims start" in outbox_claim_start.c).
 */
void
es_outbox_insert_begin(void)
{
	volatile EsBackendSlot *slot;

	if (inserting || !es_shmem_available())
		return;
	register_outbox_callback();
	slot = es_my_backend_slot();
	slot->outbox_dboid = MyDatabaseId;
	pg_write_barrier();
	pg_atomic_write_u64((pg_atomic_uint64 *) &slot->outbox_first_id, 1);
	/* Published before the id is taken. */
	pg_memory_barrier();
	inserting = true;
}

/* The transaction's first id is taken: no lower one will be inserted. */
void
es_outbox_insert_first_id(int64 id)
{
	if (!inserting || first_id_known)
		return;
	pg_atomic_write_u64(&es_my_backend_slot()->outbox_first_id, (uint64) id);
	first_id_known = true;
}

/*
 * outbox_reinsert_begin(ids): this transaction is about to insert outbox
 * rows with these ids, taken earlier (outbox_redrive): claims must not
 * start past them before it ends.
 */
Datum
event_store_outbox_reinsert_begin(PG_FUNCTION_ARGS)
{
	ArrayType  *ids = PG_GETARG_ARRAYTYPE_P(0);
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	int64		lowest = PG_INT64_MAX;
	pg_atomic_uint64 *first;
	uint64		current;

	deconstruct_array(ids, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &elem_nulls, &nelems);
	for (int i = 0; i < nelems; i++)
		if (!elem_nulls[i] && DatumGetInt64(elems[i]) < lowest)
			lowest = DatumGetInt64(elems[i]);
	if (lowest == PG_INT64_MAX || !es_shmem_available())
		PG_RETURN_VOID();
	lowest = Max(lowest, 1);
	es_outbox_insert_begin();
	/* The claims of this database may start past these ids already. */
	es_claim_starts_forget();
	first = &es_my_backend_slot()->outbox_first_id;
	current = pg_atomic_read_u64(first);
	if (!first_id_known || (int64) current > lowest)
		pg_atomic_write_u64(first, (uint64) lowest);
	first_id_known = true;
	PG_RETURN_VOID();
}

/* Add a topic's hash to a set; past its size the set holds all topics. */
void
es_topic_set_add(EsTopicSet *set, uint32 hash)
{
	if (es_topic_set_has(set, hash))
		return;
	if (set->count == ES_TOPIC_SET_SIZE)
		set->all = true;
	else
		set->hashes[set->count++] = hash;
}

bool
es_topic_set_has(const EsTopicSet *set, uint32 hash)
{
	if (set->all)
		return true;
	for (int i = 0; i < set->count; i++)
		if (set->hashes[i] == hash)
			return true;
	return false;
}

/*
 * Remember that this transaction sent to a topic (by its hash), or freed a
 * message of it, for the claims' wake-up at commit.
 */
static void
remember_topic_hash(uint32 hash)
{
	if (!es_shmem_available())
		return;
	register_outbox_callback();
	es_topic_set_add(&claim_topics, hash);
}

static void
remember_topic(text *topic)
{
	remember_topic_hash(topic_hash(topic));
}

/*
 * Remember the topics (non-NULL text values of column col) of the rows an
 * ack, nack or consume just changed that may free the next message of a
 * key: the commit wakes the claims waiting for them.
 */
void
es_outbox_note_freed_topics(SPITupleTable *tuptable, uint64 nrows, int col)
{
	for (uint64 i = 0; i < nrows; i++)
	{
		bool		isnull;
		Datum		topic = SPI_getbinval(tuptable->vals[i], tuptable->tupdesc,
										  col, &isnull);

		if (!isnull)
			remember_topic(DatumGetTextPP(topic));
	}
}

/* This transaction sent a message to topic: its commit wakes the relay. */
void
es_outbox_note_sent(text *topic)
{
	uint32		hash = topic_hash(topic);

	remember_topic_hash(hash);
	es_topic_set_add(&sent_to_relay, hash);
}

/* This transaction freed a message of topic (the next of its key). */
void
es_outbox_note_freed(text *topic)
{
	remember_topic(topic);
}

/*
 * Whether this transaction sent a message, and to which topics (then
 * forgotten).  Called at the transaction's end, to wake the relay.
 */
bool
es_outbox_take_sent(EsTopicSet *sent)
{
	*sent = sent_to_relay;
	sent_to_relay.count = 0;
	sent_to_relay.all = false;
	return sent->count > 0 || sent->all;
}

/* Publish that this backend waits for messages of topic (0: no more). */
static void
publish_claim_wait(uint32 topic)
{
	volatile EsBackendSlot *slot = es_my_backend_slot();

	slot->claim_wait_dboid = MyDatabaseId;
	pg_write_barrier();
	slot->claim_wait_topic = topic;
	/* Published before the next snapshot is taken. */
	pg_memory_barrier();
}

/* This backend waits for messages of topic, until es_outbox_claim_wait_end. */
void
es_outbox_claim_wait_begin(text *topic)
{
	publish_claim_wait(topic_hash(topic));
}

void
es_outbox_claim_wait_end(void)
{
	publish_claim_wait(0);
}

/*
 * Whether this transaction wrote nothing but claims so far: no write at
 * all, or none since the last claim.
 */
bool
es_outbox_wrote_only_claims(void)
{
	return (claims_only && XactLastRecEnd == claims_wal_end) ||
		(!TransactionIdIsValid(GetTopTransactionIdIfAny()) &&
		 XactLastRecEnd == InvalidXLogRecPtr);
}

/*
 * A claim wrote, in a transaction that had written nothing but claims
 * before (es_outbox_wrote_only_claims): unless it writes more, it commits
 * asynchronously.
 */
void
es_outbox_claims_written(void)
{
	if (XactLastRecEnd == InvalidXLogRecPtr)
		return;
	register_outbox_callback();
	claims_only = true;
	claims_wal_end = XactLastRecEnd;
}
