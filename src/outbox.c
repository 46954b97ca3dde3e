/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The transactional outbox: outbox_send, outbox_claim, outbox_ack and
 *	  outbox_nack.
 *
 * A message is a row of event_store.outbox.  Sending inserts it in the
 * caller's transaction (through writer.c, no SQL), so it is invisible until
 * that transaction commits and gone if it rolls back.  A claim takes
 * available messages in id order with SKIP LOCKED, so claimers never wait
 * for each other nor get the same message; it gives each message a lease
 * (available_at moves to the end of it), counts the attempt, and gives it a
 * new receipt.  A keyed message is not handed out while an earlier message
 * of the same topic and key is still in the outbox (leased, waiting for a
 * retry, or available): per-key FIFO.
 *
 * Receipts fence acknowledgements.  A receipt is the message id (first 8
 * bytes, big-endian) followed by 8 random bytes, so an ack finds the row by
 * primary key and then requires the receipt to be the current one.  A late
 * ack or nack of a lease that expired and was claimed again matches nothing
 * and is not counted.  If the other claim is still in progress, the ack
 * waits for its row lock and then sees the new receipt.
 *
 * A lease is at least as long as asked, counted from when outbox_claim
 * returns: a claim sets the end of its leases a little later than its
 * start plus the lease (a tenth of the lease later, at most a second), and
 * in the rare claim that takes longer than that (a large batch, a wait for
 * a lock) it moves them, before it returns, to end a lease after its end
 * plus as long again as it took (moving them takes time too).
 * Otherwise a slow claim would hand out leases that had already run out,
 * and another consumer could claim the same messages at once.
 *
 * A nack puts the message back after retry_in, or after an exponential
 * backoff; once a message has used the topic's maximum attempts (by nacks,
 * or by leases that expired), it moves to outbox_dead_letters.  The policy
 * (lease, maximum attempts, backoff) is the topic's, as
 * event_store.outbox_topic_settings gives it, defaults included.
 *
 * Claim, ack and nack are single SQL statements kept as prepared plans, run
 * through SPI as the extension's owner (the functions are SECURITY DEFINER).
 *
 * A topic configured with delivery 'wal' has no rows: a message sent to it
 * (by outbox_send or an event route) is a transactional logical decoding
 * message with prefix "event_store" whose content is the message as JSON,
 * {"id", "topic", "key", "payload", "headers"}, as pg_logical_emit_message
 * writes one.  Decoding hands it out when, and only if, the transaction
 * commits, in commit order; there is nothing to claim, ack or vacuum.  Its
 * id still comes from outbox_id_seq, so ids stay unique across both kinds
 * of topic.  Every backend caches the names of the WAL topics (most
 * databases have none); a statement trigger on outbox_topics sends a
 * relcache invalidation that empties the cache, as for event routes.
 *
 * A claim can wait for messages (outbox_claim(..., wait => interval)).  It
 * publishes the topic it waits for in its backend slot (shared memory,
 * src/shmem.c), takes a fresh snapshot and tries to claim; if nothing is
 * available it sleeps on its latch until the wait ends or the next delayed
 * message of the topic is due.  A transaction that sent to a topic, or
 * that acknowledged, nacked, consumed or buried a keyed message of it
 * (which may free the next message of the key), sets the latches of the
 * claims waiting for it once its commit is visible.
 * Since the waiter publishes before it looks and the committer looks after
 * its commit is visible, either the waiter's snapshot shows the message or
 * the committer sees the waiter: no wake-up is lost, and nothing polls.
 *
 * outbox_consume takes messages as a claim chooses them and deletes them
 * in the caller's transaction: one write per message, no lease, no receipt;
 * until the caller commits, the deleted rows stay locked, so other claims
 * skip them and the later messages of their keys wait.
 *
 * outbox_extend moves the end of a lease, fenced by the receipt like an
 * ack.  outbox_send_batch inserts many messages in one call.  A send with
 * a deduplication key records the key in outbox_dedup (one row per topic
 * and key, its unique index serialises concurrent senders); a second send
 * of the key within the window returns the first message's id and inserts
 * nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "compat.h"
#include "event_store.h"
#include "guc.h"

/* ids.c: a fresh receipt for a claim of a message */
extern Datum event_store_outbox_new_receipt(PG_FUNCTION_ARGS);

PG_FUNCTION_INFO_V1(event_store_check_topic);
PG_FUNCTION_INFO_V1(event_store_outbox_send);
PG_FUNCTION_INFO_V1(event_store_outbox_claim);
PG_FUNCTION_INFO_V1(event_store_outbox_ack_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_ack_ids);
PG_FUNCTION_INFO_V1(event_store_outbox_nack_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_nack_ids);
PG_FUNCTION_INFO_V1(event_store_outbox_topics_changed);
PG_FUNCTION_INFO_V1(event_store_outbox_extend_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_send_batch);
PG_FUNCTION_INFO_V1(event_store_outbox_consume);
PG_FUNCTION_INFO_V1(event_store_outbox_reinsert_begin);

/* Columns of event_store.outbox. */
enum
{
	Anum_outbox_id = 1,
	Anum_outbox_topic,
	Anum_outbox_key,
	Anum_outbox_payload,
	Anum_outbox_headers,
	Anum_outbox_attempts,
	Anum_outbox_created_at,
	Anum_outbox_available_at,
	Anum_outbox_receipt,
	Anum_outbox_last_error,
	Natts_outbox = Anum_outbox_last_error
};

/* Columns of event_store.outbox_message, what outbox_claim returns. */
#define Natts_outbox_message 8

/* This transaction sent messages: its commit wakes the relay. */
static bool sent_in_transaction = false;

/* The prefix of the logical decoding messages of WAL topics. */
#define WAL_MESSAGE_PREFIX "event_store"

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
 * The topics this transaction sent to, as hashes: its commit wakes the
 * claims waiting for them.  Past ES_SENT_TOPICS distinct topics it wakes
 * every claim waiting in the database (a spurious wake-up costs a look).
 */
#define ES_SENT_TOPICS 8
static uint32 sent_topics[ES_SENT_TOPICS];
static int	n_sent_topics = 0;
static bool sent_topics_overflow = false;
static bool outbox_callback_registered = false;

/*
 * This transaction published a bound on the outbox ids it inserts
 * (inserting), and that bound is its first id, not 1 (first_id_known).
 */
static bool inserting = false;
static bool first_id_known = false;

/* A deduplication key without a window is remembered this long. */
#define ES_DEFAULT_DEDUP_WINDOW_SECS 300

/*
 * Consume: delete up to $2 available messages of topic $1 in the caller's
 * transaction and return them, chosen as a claim chooses them ($3 now, $4
 * the id to start from).  A message whose last attempt's lease expired goes
 * to the dead letters instead, as a claim would send it.  Until the caller
 * commits, the deleted rows stay locked: other claims skip them, and later
 * messages of their keys wait; a rollback puts them back untouched.
 */
static const char *const consume_sql =
"WITH settings AS ("
"  SELECT s.max_attempts FROM event_store.outbox_topic_settings($1) AS s"
"), candidates AS ("
"  SELECT o.ctid AS row_id FROM event_store.outbox AS o"
"  WHERE o.topic = $1 AND o.id + 0 >= $4 AND o.available_at <= $3"
"    AND (o.key IS NULL OR NOT EXISTS ("
"          SELECT FROM event_store.outbox AS earlier"
"          WHERE earlier.topic = $1 AND earlier.key = o.key AND earlier.id < o.id))"
"  ORDER BY o.topic, o.id + 0 LIMIT $2"
"  FOR UPDATE OF o SKIP LOCKED"
"), consumed AS ("
"  DELETE FROM event_store.outbox AS o"
"  WHERE o.ctid = ANY (ARRAY(SELECT c.row_id FROM candidates AS c))"
"  RETURNING o.*"
"), buried AS ("
"  INSERT INTO event_store.outbox_dead_letters"
"    (id, topic, key, payload, headers, attempts, created_at, last_error, died_at)"
"  SELECT c.id, c.topic, c.key, c.payload, c.headers, c.attempts, c.created_at,"
"         coalesce(c.last_error || '; ', '') || 'lease expired on the last attempt', $3"
"  FROM consumed AS c, settings AS s WHERE c.attempts >= s.max_attempts"
"  RETURNING 1"
") SELECT c.id, c.topic, c.key, c.payload, c.headers, c.attempts + 1, c.created_at,"
"    NULL::uuid, c.attempts < s.max_attempts AS live"
"  FROM consumed AS c, settings AS s"
"  ORDER BY c.id";

/* Extend the leases of the messages $1 just claimed to end at $2. */
static const char *const extend_sql =
"UPDATE event_store.outbox AS o SET available_at = $2 WHERE o.id = ANY ($1)";

/* Move claimed messages $1 that went past their last attempt ($2 now). */
static const char *const bury_sql =
"WITH exhausted AS ("
"  DELETE FROM event_store.outbox AS o WHERE o.id = ANY ($1) RETURNING o.*"
") INSERT INTO event_store.outbox_dead_letters"
"    (id, topic, key, payload, headers, attempts, created_at, last_error, died_at)"
"  SELECT id, topic, key, payload, headers, attempts - 1, created_at,"
"         coalesce(last_error || '; ', '') || 'lease expired on the last attempt', $2"
"  FROM exhausted";

/*
 * Lease extension: the messages whose current receipt is given are leased
 * until $3 (now) plus $4 (NULL: the topic's lease), with the claim's margin.
 */
static const char *const extend_receipts_sql =
"UPDATE event_store.outbox AS o"
" SET available_at = ("
"   SELECT $3 + l.lease + least(l.lease / 10, interval '1 second')"
"   FROM (SELECT coalesce($4, s.lease) AS lease"
"         FROM event_store.outbox_topic_settings(o.topic) AS s) AS l)"
" FROM unnest($1::bigint[], $2::uuid[]) AS r(id, receipt)"
" WHERE o.id = r.id AND o.receipt = r.receipt";

/*
 * Deduplication: the message a key of a topic ($1, $2) was sent as after $3.
 * outbox_send runs these with the caller's search_path (it is not SECURITY
 * DEFINER), as the owner of outbox_dedup: every operator is qualified.
 */
static const char *const dedup_find_sql =
"SELECT d.message_id FROM event_store.outbox_dedup AS d"
" WHERE d.topic OPERATOR(pg_catalog.=) $1"
"   AND d.dedup_key OPERATOR(pg_catalog.=) $2"
"   AND d.sent_at OPERATOR(pg_catalog.>) $3";

/*
 * Record that the key was sent as message $4 at $5, unless a send of it
 * after $3 is recorded (committed, or committed while this waited for its
 * sender): then no row is returned.
 */
static const char *const dedup_record_sql =
"INSERT INTO event_store.outbox_dedup AS d (topic, dedup_key, message_id, sent_at)"
" VALUES ($1, $2, $4, $5)"
" ON CONFLICT (topic, dedup_key) DO UPDATE"
"   SET message_id = excluded.message_id, sent_at = excluded.sent_at"
"   WHERE d.sent_at OPERATOR(pg_catalog.<=) $3"
" RETURNING d.message_id";

/*
 * Ack by id: delete the messages.  Returns the topic of each keyed one
 * (NULL for the others): its deletion may free the next message of its
 * key, so the commit wakes the claims waiting for it.
 */
static const char *const ack_ids_sql =
"DELETE FROM event_store.outbox AS o WHERE o.id = ANY ($1)"
" RETURNING CASE WHEN o.key IS NOT NULL THEN o.topic END";

/*
 * Nack: the targets (by receipt or by id) go back to the queue after $3
 * (NULL: backoff), or to the dead letters if they used their last attempt.
 * $4 error, $5 now.  Returns how many were nacked, and the topics of the
 * keyed ones (the next message of their key may be free now, or at once).
 */
#define NACK_SQL(targets) \
"WITH targets AS (" targets \
"), policy AS (" \
"  SELECT t.id, t.attempts >= s.max_attempts AS exhausted," \
"         least(s.backoff_max," \
"               s.backoff_base * power(2, least(greatest(t.attempts - 1, 0), 40))) AS backoff" \
"  FROM targets AS t CROSS JOIN LATERAL event_store.outbox_topic_settings(t.topic) AS s" \
"), exhausted AS (" \
"  DELETE FROM event_store.outbox AS o USING policy AS p" \
"  WHERE o.id = p.id AND p.exhausted RETURNING o.*" \
"), buried AS (" \
"  INSERT INTO event_store.outbox_dead_letters" \
"    (id, topic, key, payload, headers, attempts, created_at, last_error, died_at)" \
"  SELECT id, topic, key, payload, headers, attempts, created_at," \
"         coalesce($4, last_error), $5 FROM exhausted" \
"  RETURNING 1" \
"), retried AS (" \
"  UPDATE event_store.outbox AS o" \
"  SET receipt = NULL, available_at = $5 + coalesce($3, p.backoff)," \
"      last_error = coalesce($4, o.last_error)" \
"  FROM policy AS p WHERE o.id = p.id AND NOT p.exhausted" \
"  RETURNING 1" \
") SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM buried)," \
"    ARRAY(SELECT DISTINCT t.topic FROM targets AS t WHERE t.keyed)"

static const char *const nack_receipts_sql = NACK_SQL(
"  SELECT o.id, o.attempts, o.topic, o.key IS NOT NULL AS keyed"
"  FROM event_store.outbox AS o"
"  JOIN unnest($1::bigint[], $2::uuid[]) AS r(id, receipt)"
"    ON o.id = r.id AND o.receipt = r.receipt"
"  FOR UPDATE OF o");

static const char *const nack_ids_sql = NACK_SQL(
"  SELECT o.id, o.attempts, o.topic, o.key IS NOT NULL AS keyed"
"  FROM event_store.outbox AS o"
"  WHERE o.id = ANY ($1)"
"  FOR UPDATE OF o");

/*
 * Check a topic argument: not NULL, not empty, at most ES_MAX_TOPIC_BYTES.
 */
static text *
es_checked_topic_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *topic;
	int			len;

	es_require_arg(fcinfo, argno, "topic");
	topic = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(topic);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("topic must not be empty")));
	if (len > ES_MAX_TOPIC_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("topic \"%s...\" is too long",
						es_clipped(VARDATA_ANY(topic), len, 32)),
				 errdetail("Topics are at most %d bytes; this one has %d.",
						   ES_MAX_TOPIC_BYTES, len)));
	return topic;
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
static bool
topic_is_wal(text *topic)
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
 * Emit the message to a WAL topic: a transactional logical decoding
 * message, decoded at the transaction's commit, dropped if it aborts.
 */
static int64
emit_wal_message(int64 id, text *topic, text *key, Jsonb *payload, Jsonb *headers)
{
	StringInfoData buf;
	char	   *topic_cstring = text_to_cstring(topic);

	if (!XLogLogicalInfoActive())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("topic \"%s\" is delivered through the WAL, but wal_level is not \"logical\"",
						topic_cstring),
				 errhint("Set wal_level = logical and restart the server, or deliver the topic through the outbox table with outbox_configure(topic, delivery => 'table').")));

	if (id == 0)
		id = nextval_internal(es_relation_oid("outbox_id_seq"), false);

	initStringInfo(&buf);
	appendStringInfo(&buf, "{\"id\": " INT64_FORMAT ", \"topic\": ", id);
	escape_json(&buf, topic_cstring);
	appendStringInfoString(&buf, ", \"key\": ");
	if (key == NULL)
		appendStringInfoString(&buf, "null");
	else
		escape_json(&buf, text_to_cstring(key));
	appendStringInfoString(&buf, ", \"payload\": ");
	(void) JsonbToCString(&buf, &payload->root, VARSIZE(payload));
	appendStringInfoString(&buf, ", \"headers\": ");
	if (headers == NULL)
		appendStringInfoString(&buf, "null");
	else
		(void) JsonbToCString(&buf, &headers->root, VARSIZE(headers));
	appendStringInfoChar(&buf, '}');

	LogLogicalMessage(WAL_MESSAGE_PREFIX, buf.data, buf.len, true);
	pfree(buf.data);
	pfree(topic_cstring);
	return id;
}

/* A message to a WAL topic is published at commit: it cannot wait. */
static void
check_wal_send(text *topic, TimestampTz available_at, TimestampTz now)
{
	if (available_at > now)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a message to topic \"%s\" cannot be delayed",
						text_to_cstring(topic)),
				 errdetail("The topic is delivered through the WAL, at commit.")));
}

/*
 * Send one message in the caller's transaction: a row of the outbox
 * (through *writer, opened here on first use; the caller closes it), or
 * for a WAL topic a logical decoding message.  Returns its id.
 */
int64
es_outbox_deliver(EsTableWriter **writer, text *topic, text *key,
				  Jsonb *payload, Jsonb *headers, TimestampTz available_at,
				  TimestampTz now)
{
	if (topic_is_wal(topic))
	{
		check_wal_send(topic, available_at, now);
		return emit_wal_message(0, topic, key, payload, headers);
	}
	if (*writer == NULL)
		*writer = es_writer_open("outbox");
	return es_outbox_enqueue(*writer, topic, key, payload, headers,
							 available_at, now);
}

/*
 * Statement trigger on outbox_topics: tell every backend to read the WAL
 * topics again.
 */
Datum
event_store_outbox_topics_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("outbox_topics_changed must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/*
 * A topic's hash as waiting claims publish it; never 0, which means "not
 * waiting".
 */
static uint32
topic_hash(text *topic)
{
	uint32		h;

	h = DatumGetUInt32(hash_any((const unsigned char *) VARDATA_ANY(topic),
								VARSIZE_ANY_EXHDR(topic)));
	return h == 0 ? 1 : h;
}

/*
 * At commit, set the latch of every claim waiting in this database for a
 * topic the transaction sent to.  The commit is visible by then; the
 * barrier orders that before reading the slots (see the file's header).
 */
static void
wake_waiting_claims(void)
{
	if (!es_shmem_available() || (n_sent_topics == 0 && !sent_topics_overflow))
		return;
	pg_memory_barrier();
	for (int i = 0; i < es_shared->num_backend_slots; i++)
	{
		volatile EsBackendSlot *slot = &es_backend_slots[i];
		uint32		waiting = slot->claim_wait_topic;
		bool		match = sent_topics_overflow;

		if (waiting == 0 || slot->claim_wait_dboid != MyDatabaseId)
			continue;
		for (int j = 0; j < n_sent_topics && !match; j++)
			match = (sent_topics[j] == waiting);
		if (match)
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
			n_sent_topics = 0;
			sent_topics_overflow = false;
			/* After the commit is visible: see outbox_insert_begin. */
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
 * Before this transaction takes its first outbox id: publish that it may
 * insert any id (see "Where claims start" above).
 */
static void
outbox_insert_begin(void)
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
static void
outbox_insert_first_id(int64 id)
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
	outbox_insert_begin();
	/*
	 * The claims of this database may start past these ids already: they
	 * forget where they start, and claims that are running do not store
	 * what they found (the epoch moves).
	 */
	SpinLockAcquire(&claim_starts->mutex);
	claim_starts->epoch++;
	for (int i = 0; i < ES_CLAIM_STARTS; i++)
		if (claim_starts->entries[i].dboid == MyDatabaseId)
			claim_starts->entries[i].dboid = InvalidOid;
	SpinLockRelease(&claim_starts->mutex);
	first = &es_my_backend_slot()->outbox_first_id;
	current = pg_atomic_read_u64(first);
	if (!first_id_known || (int64) current > lowest)
		pg_atomic_write_u64(first, (uint64) lowest);
	first_id_known = true;
	PG_RETURN_VOID();
}

/*
 * The lowest id a message that the next snapshot does not show can have:
 * see "Where claims start".  Call before taking the snapshot.
 */
static int64
lowest_future_id(void)
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

static uint64
topic_hash64(text *topic)
{
	return DatumGetUInt64(hash_any_extended((const unsigned char *) VARDATA_ANY(topic),
											VARSIZE_ANY_EXHDR(topic), 0));
}

/*
 * Where a claim of topic starts; *from_beginning when the topic has no
 * entry, or was not scanned from its beginning for a second.
 */
static int64
claim_start_get(Oid relid, uint64 hash, TimestampTz now, bool *from_beginning,
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
static void
claim_start_set(Oid relid, uint64 hash, TimestampTz now, int64 start,
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
 * Remember that this transaction sent to topic, or freed a message of it,
 * for the wake-up at commit.
 */
static void
remember_sent_topic(text *topic)
{
	uint32		h;

	if (!es_shmem_available() || sent_topics_overflow)
		return;
	h = topic_hash(topic);
	for (int i = 0; i < n_sent_topics; i++)
		if (sent_topics[i] == h)
			return;
	register_outbox_callback();
	if (n_sent_topics == ES_SENT_TOPICS)
		sent_topics_overflow = true;
	else
		sent_topics[n_sent_topics++] = h;
}

/*
 * Remember the topics (non-NULL text values of column col) of the rows an
 * ack, nack or consume just changed that may free the next message of a
 * key: the commit wakes the claims waiting for them.
 */
static void
remember_freed_topics(SPITupleTable *tuptable, uint64 nrows, int col)
{
	for (uint64 i = 0; i < nrows; i++)
	{
		bool		isnull;
		Datum		topic = SPI_getbinval(tuptable->vals[i], tuptable->tupdesc,
										  col, &isnull);

		if (!isnull)
			remember_sent_topic(DatumGetTextPP(topic));
	}
}

/*
 * Insert one message into the outbox, in the caller's transaction, through
 * a writer opened on event_store.outbox.  Returns its id.  id is the id to
 * give it, or 0 for the next of the sequence.
 */
static int64
enqueue(EsTableWriter *writer, int64 id, text *topic, text *key,
		Jsonb *payload, Jsonb *headers, TimestampTz available_at,
		TimestampTz now)
{
	Datum		values[Natts_outbox];
	bool		nulls[Natts_outbox];

	if (id == 0)
	{
		outbox_insert_begin();
		id = nextval_internal(es_relation_oid("outbox_id_seq"), false);
	}
	outbox_insert_first_id(id);

	memset(nulls, false, sizeof(nulls));
	values[Anum_outbox_id - 1] = Int64GetDatum(id);
	values[Anum_outbox_topic - 1] = PointerGetDatum(topic);
	values[Anum_outbox_key - 1] = PointerGetDatum(key);
	nulls[Anum_outbox_key - 1] = (key == NULL);
	values[Anum_outbox_payload - 1] = JsonbPGetDatum(payload);
	values[Anum_outbox_headers - 1] = PointerGetDatum(headers);
	nulls[Anum_outbox_headers - 1] = (headers == NULL);
	values[Anum_outbox_attempts - 1] = Int32GetDatum(0);
	values[Anum_outbox_created_at - 1] = TimestampTzGetDatum(now);
	values[Anum_outbox_available_at - 1] = TimestampTzGetDatum(available_at);
	nulls[Anum_outbox_receipt - 1] = true;
	nulls[Anum_outbox_last_error - 1] = true;

	es_writer_insert(writer, values, nulls);
	sent_in_transaction = true;
	remember_sent_topic(topic);
	return id;
}

int64
es_outbox_enqueue(EsTableWriter *writer, text *topic, text *key,
				  Jsonb *payload, Jsonb *headers, TimestampTz available_at,
				  TimestampTz now)
{
	return enqueue(writer, 0, topic, key, payload, headers, available_at, now);
}

/*
 * Whether this transaction sent a message (and forget it).  Called at
 * commit, to wake the relay.
 */
bool
es_outbox_take_sent_flag(void)
{
	bool		sent = sent_in_transaction;

	sent_in_transaction = false;
	return sent;
}

/* Refuse a message key longer than ES_MAX_KEY_BYTES. */
static void
check_key(text *key, const char *what)
{
	if (VARSIZE_ANY_EXHDR(key) > ES_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s \"%s...\" is too long", what,
						es_clipped(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), 32)),
				 errdetail("Keys are at most %d bytes; this one has %d.",
						   ES_MAX_KEY_BYTES, (int) VARSIZE_ANY_EXHDR(key))));
}

/* Refuse a message larger than event_store.max_message_size. */
static void
check_message_size(Jsonb *payload, Jsonb *headers)
{
	Size		size = VARSIZE(payload) + (headers ? VARSIZE(headers) : 0);

	if (size > (Size) es_max_message_size * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message is too large"),
				 errdetail("Payload and headers take %zu bytes; event_store.max_message_size is %d kB.",
						   size, es_max_message_size)));
}

/* When a message sent now with the delay of argument argno is available. */
static TimestampTz
available_after_delay(FunctionCallInfo fcinfo, int argno, TimestampTz now)
{
	Interval   *delay;

	if (PG_ARGISNULL(argno))
		return now;
	delay = PG_GETARG_INTERVAL_P(argno);
	if (es_interval_sign(delay) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("delay must not be negative")));
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(now),
												   IntervalPGetDatum(delay)));
}

/*
 * Run a deduplication statement as the owner of outbox_dedup: the table is
 * closed to the senders, who reach it only through outbox_send.  Returns
 * the message id of its one row, or 0.
 */
static int64
run_dedup_statement(SPIPlanPtr *plan, const char *sql, Datum *values, int nargs)
{
	Oid			argtypes[5] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID};
	HeapTuple	tuple;
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;
	int64		id = 0;
	int			rc;

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(es_relation_oid("outbox_dedup")));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation outbox_dedup");
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	SPI_connect();
	rc = SPI_execute_plan(es_prepared_plan(plan, sql, nargs, argtypes),
						  values, NULL, false, 0);
	if (rc < 0)
		elog(ERROR, "outbox statement failed: %s", SPI_result_code_string(rc));
	if (SPI_processed > 0)
	{
		bool		isnull;

		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	return id;
}

/*
 * outbox_send(topic, payload, key, headers, delay, dedup_key, dedup_window)
 */
Datum
event_store_outbox_send(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr find_plan = NULL;
	static SPIPlanPtr record_plan = NULL;
	text	   *topic = es_checked_topic_arg(fcinfo, 0);
	Jsonb	   *payload;
	text	   *key = NULL;
	Jsonb	   *headers = NULL;
	text	   *dedup_key = NULL;
	TimestampTz dedup_after = 0;
	TimestampTz now;
	TimestampTz available_at;
	EsTableWriter *writer;
	int64		id = 0;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be null"),
				 errhint("Use 'null'::jsonb for a message without payload.")));
	payload = PG_GETARG_JSONB_P(1);

	if (!PG_ARGISNULL(2))
	{
		key = PG_GETARG_TEXT_PP(2);
		check_key(key, "message key");
	}

	if (!PG_ARGISNULL(3))
		headers = es_checked_json_object(PG_GETARG_JSONB_P(3), "headers");

	check_message_size(payload, headers);

	now = GetCurrentTimestamp();
	available_at = available_after_delay(fcinfo, 4, now);

	/* The arguments of deduplication exist since 0.2. */
	if (PG_NARGS() > 5 && !PG_ARGISNULL(5))
	{
		Interval	default_window = {.time = ES_DEFAULT_DEDUP_WINDOW_SECS * USECS_PER_SEC};
		Interval   *window = &default_window;

		dedup_key = PG_GETARG_TEXT_PP(5);
		if (VARSIZE_ANY_EXHDR(dedup_key) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("dedup_key must not be empty"),
					 errhint("A NULL dedup_key sends without deduplication.")));
		check_key(dedup_key, "deduplication key");
		if (PG_NARGS() > 6 && !PG_ARGISNULL(6))
		{
			window = PG_GETARG_INTERVAL_P(6);
			if (es_interval_sign(window) <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("dedup_window must be positive")));
		}
		dedup_after = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_mi_interval,
															  TimestampTzGetDatum(now),
															  IntervalPGetDatum(window)));
	}

	es_check_writable("outbox_send");

	if (dedup_key != NULL)
	{
		Datum		values[5];

		values[0] = PointerGetDatum(topic);
		values[1] = PointerGetDatum(dedup_key);
		values[2] = TimestampTzGetDatum(dedup_after);
		values[3] = Int64GetDatum(0);
		values[4] = TimestampTzGetDatum(now);

		/* A retry of a committed send: answer without writing anything. */
		id = run_dedup_statement(&find_plan, dedup_find_sql, values, 3);
		if (id != 0)
			PG_RETURN_INT64(id);

		/*
		 * Record the key with the id the message will have.  A concurrent
		 * send of the key holds its index entry until it ends; if it
		 * commits, the insert finds its row and returns nothing, and that
		 * row (now visible to a new snapshot) has the id to return.  The id
		 * taken from the sequence is then left unused.
		 */
		if (!topic_is_wal(topic))
			outbox_insert_begin();
		id = nextval_internal(es_relation_oid("outbox_id_seq"), false);
		outbox_insert_first_id(id);
		values[3] = Int64GetDatum(id);
		if (run_dedup_statement(&record_plan, dedup_record_sql, values, 5) != id)
		{
			int64		first = run_dedup_statement(&find_plan, dedup_find_sql, values, 3);

			if (first == 0)
				elog(ERROR, "deduplication key of a concurrent send not found");
			PG_RETURN_INT64(first);
		}
	}

	if (topic_is_wal(topic))
	{
		check_wal_send(topic, available_at, now);
		PG_RETURN_INT64(emit_wal_message(id, topic, key, payload, headers));
	}
	writer = es_writer_open("outbox");
	id = enqueue(writer, id, topic, key, payload, headers, available_at, now);
	es_writer_close(writer);
	CommandCounterIncrement();

	PG_RETURN_INT64(id);
}

/* An array argument: not NULL, at most one dimension. */
static ArrayType *
one_dim_array_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	ArrayType  *array;

	es_require_arg(fcinfo, argno, name);
	array = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", name)));
	return array;
}

/*
 * outbox_send_batch(topic, payloads, keys, headers, delay): one message per
 * payload, in the order of the array, with the key and headers of the same
 * index.  Returns their ids, in the same order.
 */
Datum
event_store_outbox_send_batch(PG_FUNCTION_ARGS)
{
	text	   *topic = es_checked_topic_arg(fcinfo, 0);
	ArrayType  *payload_array = one_dim_array_arg(fcinfo, 1, "payloads");
	Datum	   *payloads;
	bool	   *payload_nulls;
	int			count;
	Datum	   *keys = NULL;
	bool	   *key_nulls = NULL;
	Datum	   *headers = NULL;
	bool	   *header_nulls = NULL;
	Datum	   *ids;
	TimestampTz now;
	TimestampTz available_at;
	EsTableWriter *writer = NULL;
	bool		wal;

	deconstruct_array(payload_array, JSONBOID, -1, false, TYPALIGN_INT,
					  &payloads, &payload_nulls, &count);
	if (!PG_ARGISNULL(2))
	{
		int			nkeys;

		deconstruct_array(one_dim_array_arg(fcinfo, 2, "keys"), TEXTOID, -1,
						  false, TYPALIGN_INT, &keys, &key_nulls, &nkeys);
		if (nkeys != count)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("keys must have one element per payload"),
					 errdetail("There are %d payloads and %d keys.", count, nkeys),
					 errhint("Use NULL elements for messages without a key.")));
	}
	if (!PG_ARGISNULL(3))
	{
		int			nheaders;

		deconstruct_array(one_dim_array_arg(fcinfo, 3, "headers"), JSONBOID, -1,
						  false, TYPALIGN_INT, &headers, &header_nulls, &nheaders);
		if (nheaders != count)
			ereport(ERROR,
					(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
					 errmsg("headers must have one element per payload"),
					 errdetail("There are %d payloads and %d headers.", count, nheaders),
					 errhint("Use NULL elements for messages without headers.")));
	}

	/* Check every message before writing any. */
	for (int i = 0; i < count; i++)
	{
		Jsonb	   *message_headers = NULL;

		CHECK_FOR_INTERRUPTS();
		if (payload_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("payload must not be null"),
					 errdetail("Element %d of payloads is null.", i + 1),
					 errhint("Use 'null'::jsonb for a message without payload.")));
		payloads[i] = PointerGetDatum(DatumGetJsonbP(payloads[i]));
		if (keys != NULL && !key_nulls[i])
		{
			keys[i] = PointerGetDatum(DatumGetTextPP(keys[i]));
			check_key((text *) DatumGetPointer(keys[i]), "message key");
		}
		if (headers != NULL && !header_nulls[i])
		{
			message_headers = es_checked_json_object(DatumGetJsonbP(headers[i]), "headers");
			headers[i] = PointerGetDatum(message_headers);
		}
		check_message_size(DatumGetJsonbP(payloads[i]), message_headers);
	}

	now = GetCurrentTimestamp();
	available_at = available_after_delay(fcinfo, 4, now);
	es_check_writable("outbox_send_batch");

	ids = palloc(sizeof(Datum) * Max(count, 1));
	wal = topic_is_wal(topic);
	if (wal)
		check_wal_send(topic, available_at, now);
	else
		writer = es_writer_open("outbox");
	for (int i = 0; i < count; i++)
	{
		text	   *key = (keys != NULL && !key_nulls[i]) ?
			(text *) DatumGetPointer(keys[i]) : NULL;
		Jsonb	   *message_headers = (headers != NULL && !header_nulls[i]) ?
			DatumGetJsonbP(headers[i]) : NULL;

		CHECK_FOR_INTERRUPTS();
		if (wal)
			ids[i] = Int64GetDatum(emit_wal_message(0, topic, key,
													DatumGetJsonbP(payloads[i]),
													message_headers));
		else
			ids[i] = Int64GetDatum(enqueue(writer, 0, topic, key,
										   DatumGetJsonbP(payloads[i]),
										   message_headers, available_at, now));
	}
	if (!wal)
	{
		es_writer_close(writer);
		CommandCounterIncrement();
	}

	PG_RETURN_ARRAYTYPE_P(construct_array(ids, count, INT8OID, 8,
										  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Run a prepared statement through SPI, preparing it on first use.
 */
static void
execute_saved(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes,
			  Datum *values, const char *nulls, bool read_only)
{
	int			rc;

	rc = SPI_execute_plan(es_prepared_plan(plan, sql, nargs, argtypes),
						  values, nulls, read_only, 0);
	if (rc < 0)
		elog(ERROR, "event_store outbox statement returned %s",
			 SPI_result_code_string(rc));
}

/*
 * Find the id of the topic's first message available now, from *first_id
 * on (where claims start); false if it has none.  A direct scan of the
 * (topic, id + 0) index: polling an idle topic costs an index lookup
 * rather than the consume statement, and a consume starts at that id
 * instead of stepping again over the messages at the head of the topic
 * that are leased, or acknowledged and not yet vacuumed.
 * A message that commits with a lower id after this scan waits for the
 * next claim; per-key order does not depend on it (the claim looks for
 * earlier messages of a key without this bound).  When it finds none,
 * *next_due is when the first of the messages it stepped over (leased or
 * delayed) is due, 0 if none: a waiting claim looks again then.
 */
static bool
first_available_id(text *topic, TimestampTz now, int64 *first_id,
				   TimestampTz *next_due)
{
	Relation	outbox = es_open_relation("outbox", AccessShareLock);
	Relation	index = es_open_relation("outbox_topic_id_idx", AccessShareLock);
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData keys[2];
	bool		found = false;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(topic));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTGreaterEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GE, Int64GetDatum(*first_id));
	slot = table_slot_create(outbox, NULL);
	scan = es_index_beginscan(outbox, index, GetActiveSnapshot(), 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (!found && index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		available_at = slot_getattr(slot, Anum_outbox_available_at, &isnull);

		CHECK_FOR_INTERRUPTS();
		if (DatumGetTimestampTz(available_at) <= now)
		{
			*first_id = DatumGetInt64(slot_getattr(slot, Anum_outbox_id, &isnull));
			found = true;
		}
		else if (*next_due == 0 || DatumGetTimestampTz(available_at) < *next_due)
			*next_due = DatumGetTimestampTz(available_at);
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(outbox, AccessShareLock);
	return found;
}

/*
 * Split receipts into their ids and themselves, as two arrays for unnest.
 * NULL receipts are left out.
 */
static void
receipt_arrays(ArrayType *receipts, Datum *ids_array, Datum *receipts_array)
{
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	Datum	   *ids;
	Datum	   *kept;
	int			n = 0;

	deconstruct_array(receipts, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
					  &elems, &elem_nulls, &nelems);
	ids = palloc(sizeof(Datum) * Max(nelems, 1));
	kept = palloc(sizeof(Datum) * Max(nelems, 1));
	for (int i = 0; i < nelems; i++)
	{
		if (elem_nulls[i])
			continue;
		ids[n] = Int64GetDatum(es_receipt_message_id(DatumGetUUIDP(elems[i])));
		kept[n] = elems[i];
		n++;
	}
	*ids_array = PointerGetDatum(construct_array(ids, n, INT8OID, 8,
												 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	*receipts_array = PointerGetDatum(construct_array(kept, n, UUIDOID, UUID_LEN,
													  false, TYPALIGN_CHAR));
}

static ArrayType *
checked_array_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	es_require_arg(fcinfo, argno, name);
	return PG_GETARG_ARRAYTYPE_P(argno);
}

/*
 * The receipts argument as uuid[], whichever of its forms was called: uuid[],
 * text[] (each element a receipt) or text (an array literal).
 */
static ArrayType *
receipts_arg(FunctionCallInfo fcinfo)
{
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 0);

	es_require_arg(fcinfo, 0, "receipts");
	if (argtype == TEXTOID)
	{
		Oid			input;
		Oid			ioparam;

		getTypeInputInfo(UUIDARRAYOID, &input, &ioparam);
		return DatumGetArrayTypeP(OidInputFunctionCall(input,
													   text_to_cstring(PG_GETARG_TEXT_PP(0)),
													   ioparam, -1));
	}
	if (argtype == TEXTARRAYOID)
	{
		ArrayType  *texts = PG_GETARG_ARRAYTYPE_P(0);
		Datum	   *elems;
		bool	   *elem_nulls;
		int			nelems;
		int			dims[1];
		int			lbs[1] = {1};

		deconstruct_array(texts, TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &elem_nulls, &nelems);
		for (int i = 0; i < nelems; i++)
			if (!elem_nulls[i])
				elems[i] = DirectFunctionCall1(uuid_in,
											   CStringGetDatum(TextDatumGetCString(elems[i])));
		dims[0] = nelems;
		return construct_md_array(elems, elem_nulls, nelems > 0 ? 1 : 0, dims, lbs,
								  UUIDOID, UUID_LEN, false, TYPALIGN_CHAR);
	}
	return PG_GETARG_ARRAYTYPE_P(0);
}

/*
 * One claim of up to max_count messages, put in the function's result.
 * Returns how many it put there.  With fresh_snapshot, the look for the
 * first available message takes a new snapshot (a waiting claim must see
 * what committed after its statement began).
 */
static int
consume_batch(FunctionCallInfo fcinfo, text *topic, int32 max_count,
			  TimestampTz now, bool fresh_snapshot, TimestampTz *next_due);

/*
 * The plan settings the other consumer functions set in SQL (see
 * sql/install/50_outbox.sql), for the statements claims run: set around
 * each run, since the plan cache may plan them again at any run.
 */
static int
queue_plan_settings(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

static const char *const policy_sql =
"SELECT s.max_attempts, s.lease FROM event_store.outbox_topic_settings($1) AS s";

/* The topic's maximum attempts and lease. */
static void
topic_policy(text *topic, int32 *max_attempts, Interval *lease)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1] = {PointerGetDatum(topic)};
	bool		isnull;
	MemoryContext old;
	int			nestlevel;

	watch_outbox_topics();
	if (policy_topic != NULL && es_text_equal(policy_topic, topic))
	{
		*max_attempts = policy_max_attempts;
		*lease = policy_lease;
		return;
	}
	policy_topic = NULL;
	outbox_topics_relid = es_relation_oid("outbox_topics");

	nestlevel = queue_plan_settings();
	SPI_connect();
	execute_saved(&plan, policy_sql, 1, argtypes, values, NULL, true);
	if (SPI_processed != 1)
		elog(ERROR, "outbox_topic_settings returned " UINT64_FORMAT " rows",
			 SPI_processed);
	policy_max_attempts = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
	policy_lease = *DatumGetIntervalP(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 2, &isnull));
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);

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

/*
 * Whether a message of topic and key with an id below id is in the outbox
 * (visible to snapshot): then the message id waits for it (per-key order).
 */
static bool
earlier_of_key_exists(Relation outbox, Relation key_index, Snapshot snapshot,
					  TupleTableSlot *slot, text *topic, Datum key, int64 id)
{
	IndexScanDesc scan;
	ScanKeyData keys[3];
	bool		found;

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   key_index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(topic));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   key_index->rd_indcollation[1], F_TEXTEQ, key);
	ScanKeyEntryInitialize(&keys[2], 0, 3, BTLessStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8LT, Int64GetDatum(id));
	scan = es_index_beginscan(outbox, key_index, snapshot, 3, 0);
	index_rescan(scan, keys, 3, NULL, 0);
	found = index_getnext_slot(scan, ForwardScanDirection, slot);
	index_endscan(scan);
	return found;
}

/*
 * One claim: lease up to max_count available messages of the topic in id
 * order, from first_id on, and put them in the function's result; returns
 * how many.  Written against the table AM rather than in SQL: a claim is
 * the queue's hot path, and a statement's executor start-up cost more than
 * its work.  The messages come from the (topic, id + 0) index; a keyed one
 * is taken only when no earlier message of its key is left.  Each is
 * updated in place (attempts, lease, receipt: no indexed column, so a HOT
 * update) without waiting: one that another transaction holds (a claim, a
 * consume, an ack, the relay) or changed since the snapshot is skipped, as
 * FOR UPDATE SKIP LOCKED would skip it, and the update is the lock.
 * Messages claimed past the topic's maximum attempts (their last lease
 * expired) go to the dead letters instead (bury_sql).
 */
static int
claim_rows(FunctionCallInfo fcinfo, text *topic, int32 max_count,
		   TimestampTz now, int64 first_id, TimestampTz *next_due,
		   Datum **leased, int *nleased, Datum **exhausted, int *nexhausted,
		   int *capacity, Interval *lease, TimestampTz *lease_end,
		   int64 *next_start)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsTableWriter *writer = NULL;
	Relation	outbox;
	Relation	index;
	Relation	key_index;
	IndexScanDesc scan;
	ScanKeyData keys[2];
	TupleTableSlot *slot;
	TupleTableSlot *probe;
	TupleTableSlot *updated = NULL;
	Snapshot	snapshot;
	CommandId	cid = InvalidCommandId;
	int32		max_attempts;
	Interval	margin;

	topic_policy(topic, &max_attempts, lease);
	if (!PG_ARGISNULL(2))
		*lease = *PG_GETARG_INTERVAL_P(2);
	/* the end of the leases: now + lease + least(lease / 10, 1 second) */
	margin = *DatumGetIntervalP(DirectFunctionCall2(interval_div,
													IntervalPGetDatum(lease),
													Float8GetDatum(10.0)));
	{
		Interval	second = {.time = USECS_PER_SEC};

		if (DatumGetInt32(DirectFunctionCall2(interval_cmp,
											  IntervalPGetDatum(&margin),
											  IntervalPGetDatum(&second))) > 0)
			margin = second;
	}
	*lease_end = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(now),
														 IntervalPGetDatum(lease)));
	*lease_end = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(*lease_end),
														 IntervalPGetDatum(&margin)));

	/*
	 * The writer (executor state, the table's indexes) is opened at the
	 * first message to update: polling an empty topic costs only the scan.
	 */
	outbox = es_open_relation("outbox", RowExclusiveLock);
	index = es_open_relation("outbox_topic_id_idx", AccessShareLock);
	key_index = es_open_relation("outbox_topic_key_id_idx", AccessShareLock);
	/* Where the next claims start: see "Where claims start". */
	*next_start = es_shmem_available() ? lowest_future_id() : 0;
	PushActiveSnapshot(GetTransactionSnapshot());
	snapshot = GetActiveSnapshot();

	slot = table_slot_create(outbox, NULL);
	probe = table_slot_create(outbox, NULL);
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(topic));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTGreaterEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GE, Int64GetDatum(first_id));
	scan = es_index_beginscan(outbox, index, snapshot, 2, 0);
	index_rescan(scan, keys, 2, NULL, 0);
	while (*nleased + *nexhausted < max_count &&
		   index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		TM_FailureData tmfd;
		LockTupleMode lockmode;
		EsUpdateIndexes update_indexes;
		TM_Result	result;
		TimestampTz available_at;
		int32		attempts;
		Datum		receipt;
		int64		id;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(slot);
		id = DatumGetInt64(slot->tts_values[Anum_outbox_id - 1]);
		if (id < *next_start)
			*next_start = id;	/* the first message the scan sees */
		available_at = DatumGetTimestampTz(slot->tts_values[Anum_outbox_available_at - 1]);
		if (available_at > now)
		{
			if (*next_due == 0 || available_at < *next_due)
				*next_due = available_at;
			continue;
		}
		if (!slot->tts_isnull[Anum_outbox_key - 1] &&
			earlier_of_key_exists(outbox, key_index, snapshot, probe, topic,
								  slot->tts_values[Anum_outbox_key - 1], id))
			continue;

		if (writer == NULL)
		{
			writer = es_writer_open("outbox");
			updated = writer->slot;
			cid = GetCurrentCommandId(true);
		}
		attempts = DatumGetInt32(slot->tts_values[Anum_outbox_attempts - 1]) + 1;
		receipt = DirectFunctionCall1(event_store_outbox_new_receipt, Int64GetDatum(id));
		ExecClearTuple(updated);
		memcpy(updated->tts_values, slot->tts_values, sizeof(Datum) * Natts_outbox);
		memcpy(updated->tts_isnull, slot->tts_isnull, sizeof(bool) * Natts_outbox);
		updated->tts_values[Anum_outbox_attempts - 1] = Int32GetDatum(attempts);
		updated->tts_values[Anum_outbox_available_at - 1] = TimestampTzGetDatum(*lease_end);
		updated->tts_values[Anum_outbox_receipt - 1] = receipt;
		updated->tts_isnull[Anum_outbox_receipt - 1] = false;
		ExecStoreVirtualTuple(updated);

		result = table_tuple_update(writer->rel, &slot->tts_tid, updated, cid,
									snapshot, InvalidSnapshot, false,
									&tmfd, &lockmode, &update_indexes);
		if (result != TM_Ok)
			continue;			/* held or changed by another: skipped */
		if (update_indexes)
		{
			ResetPerTupleExprContext(writer->estate);
			(void) es_insert_index_tuples_after_update(writer->rri, updated,
													   writer->estate,
													   update_indexes);
		}
		/* Room for one more of either: max_count may be far larger. */
		if (*nleased + *nexhausted >= *capacity)
		{
			*capacity *= 2;
			*leased = repalloc(*leased, sizeof(Datum) * *capacity);
			*exhausted = repalloc(*exhausted, sizeof(Datum) * *capacity);
		}
		if (attempts > max_attempts)
		{
			(*exhausted)[(*nexhausted)++] = Int64GetDatum(id);
			continue;
		}
		(*leased)[(*nleased)++] = Int64GetDatum(id);
		{
			Datum		row[Natts_outbox_message];
			bool		row_nulls[Natts_outbox_message];

			row[0] = slot->tts_values[Anum_outbox_id - 1];
			row[1] = slot->tts_values[Anum_outbox_topic - 1];
			row[2] = slot->tts_values[Anum_outbox_key - 1];
			row[3] = slot->tts_values[Anum_outbox_payload - 1];
			row[4] = slot->tts_values[Anum_outbox_headers - 1];
			row[5] = Int32GetDatum(attempts);
			row[6] = slot->tts_values[Anum_outbox_created_at - 1];
			row[7] = receipt;
			row_nulls[0] = false;
			row_nulls[1] = false;
			row_nulls[2] = slot->tts_isnull[Anum_outbox_key - 1];
			row_nulls[3] = false;
			row_nulls[4] = slot->tts_isnull[Anum_outbox_headers - 1];
			row_nulls[5] = false;
			row_nulls[6] = false;
			row_nulls[7] = false;
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, row_nulls);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(probe);
	ExecDropSingleTupleTableSlot(slot);
	PopActiveSnapshot();
	index_close(key_index, AccessShareLock);
	index_close(index, AccessShareLock);
	table_close(outbox, NoLock);
	if (writer != NULL)
	{
		es_writer_close(writer);
		/* What follows in the transaction sees the leases. */
		CommandCounterIncrement();
	}
	return *nleased;
}

static int
claim_batch(FunctionCallInfo fcinfo, text *topic, int32 max_count,
			TimestampTz now, bool fresh_snapshot, TimestampTz *next_due)
{
	static SPIPlanPtr bury_plan = NULL;
	static SPIPlanPtr extend_plan = NULL;
	Datum	   *exhausted;
	int			nexhausted = 0;
	Datum	   *leased;
	int			nleased = 0;
	TimestampTz lease_end = 0;
	Interval	lease;
	Datum		extend_values[2];
	Oid			relid;
	uint64		hash;
	int64		start;
	int64		next_start;
	bool		from_beginning;
	uint64		epoch;
	int			nestlevel;
	bool		only_claims;
	int			capacity;

	*next_due = 0;
	capacity = Min(max_count, 64);
	exhausted = palloc(sizeof(Datum) * capacity);
	leased = palloc(sizeof(Datum) * capacity);
	relid = es_relation_oid("outbox");
	hash = topic_hash64(topic);
	start = claim_start_get(relid, hash, now, &from_beginning, &epoch);
	/* Whether the transaction wrote nothing but claims so far. */
	only_claims = (claims_only && XactLastRecEnd == claims_wal_end) ||
		(!TransactionIdIsValid(GetTopTransactionIdIfAny()) &&
		 XactLastRecEnd == InvalidXLogRecPtr);
	(void) claim_rows(fcinfo, topic, max_count, now, start,
					  next_due, &leased, &nleased, &exhausted, &nexhausted,
					  &capacity, &lease, &lease_end, &next_start);
	if (!IsolationUsesXactSnapshot())
		claim_start_set(relid, hash, now, next_start, from_beginning, epoch);

	if (nexhausted > 0)
	{
		Oid			bury_types[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
		Datum		bury_values[2];

		bury_values[0] = PointerGetDatum(construct_array(exhausted, nexhausted,
														 INT8OID, 8, FLOAT8PASSBYVAL,
														 TYPALIGN_DOUBLE));
		bury_values[1] = TimestampTzGetDatum(now);
		nestlevel = queue_plan_settings();
		SPI_connect();
		execute_saved(&bury_plan, bury_sql, 2, bury_types, bury_values, NULL, false);
		SPI_finish();
		AtEOXact_GUC(true, nestlevel);
		/* The next messages of their keys may be free at commit. */
		remember_sent_topic(topic);
	}
	/*
	 * A slow claim: its leases must still run a whole lease when it returns.
	 * Moving them takes time too, as long as the claim at most (it updates
	 * the same rows, by primary key): they end that much later again, and
	 * are checked once more.  Each round's margin covers everything before
	 * it, so a second round is rare and a third one never needed.
	 */
	for (int round = 0; nleased > 0 && round < 3; round++)
	{
		TimestampTz current = GetCurrentTimestamp();
		TimestampTz needed;
		Oid			extend_types[2] = {INT8ARRAYOID, TIMESTAMPTZOID};

		needed = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														 TimestampTzGetDatum(current),
														 IntervalPGetDatum(&lease)));
		if (lease_end >= needed)
			break;
		lease_end = needed + (current - now);
		if (round == 0)
			extend_values[0] = PointerGetDatum(construct_array(leased, nleased,
															   INT8OID, 8, FLOAT8PASSBYVAL,
															   TYPALIGN_DOUBLE));
		extend_values[1] = TimestampTzGetDatum(lease_end);
		nestlevel = queue_plan_settings();
		SPI_connect();
		execute_saved(&extend_plan, extend_sql, 2, extend_types, extend_values,
					  NULL, false);
		SPI_finish();
		AtEOXact_GUC(true, nestlevel);
	}

	if (only_claims && XactLastRecEnd != InvalidXLogRecPtr)
	{
		register_outbox_callback();
		claims_only = true;
		claims_wal_end = XactLastRecEnd;
	}

	/* The claimed messages past their last attempt are not in the result. */
	if (nleased == 0 && nexhausted > 0 && *next_due == 0)
		*next_due = now;
	return nleased;
}

/*
 * One consume of up to max_count messages (see consume_sql), put in the
 * function's result; like claim_batch otherwise.
 */
static int
consume_batch(FunctionCallInfo fcinfo, text *topic, int32 max_count,
			  TimestampTz now, bool fresh_snapshot, TimestampTz *next_due)
{
	static SPIPlanPtr consume_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			argtypes[4] = {TEXTOID, INT4OID, TIMESTAMPTZOID, INT8OID};
	Datum		values[4];
	int64		first_id;
	bool		found;
	int			consumed = 0;
	bool		buried = false;
	bool		keyed = false;
	bool		from_beginning;
	uint64		epoch;

	*next_due = 0;
	if (fresh_snapshot)
		PushActiveSnapshot(GetTransactionSnapshot());
	first_id = claim_start_get(es_relation_oid("outbox"), topic_hash64(topic),
							   now, &from_beginning, &epoch);
	found = first_available_id(topic, now, &first_id, next_due);
	if (fresh_snapshot)
		PopActiveSnapshot();
	if (!found)
		return 0;

	values[0] = PointerGetDatum(topic);
	values[1] = Int32GetDatum(max_count);
	values[2] = TimestampTzGetDatum(now);
	values[3] = Int64GetDatum(first_id);

	SPI_connect();
	execute_saved(&consume_plan, consume_sql, 4, argtypes, values, NULL, false);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		row[Natts_outbox_message + 1];
		bool		row_nulls[Natts_outbox_message + 1];

		heap_deform_tuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, row, row_nulls);
		/* Its deletion frees the next message of its key at commit. */
		if (!row_nulls[2])
			keyed = true;
		if (!DatumGetBool(row[Natts_outbox_message]))
		{
			buried = true;	/* moved to the dead letters by the statement */
			continue;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, row_nulls);
		consumed++;
	}
	SPI_finish();
	if (keyed)
		remember_sent_topic(topic);

	/* Only dead letters this time: there may be more to consume at once. */
	if (consumed == 0 && buried)
		*next_due = now;
	return consumed;
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

typedef int (*TakeBatch) (FunctionCallInfo fcinfo, text *topic, int32 max_count,
						  TimestampTz now, bool fresh_snapshot,
						  TimestampTz *next_due);

/*
 * The body of outbox_claim and outbox_consume: take once, or with a wait
 * (argument wait_argno, absent in 0.1's outbox_claim), again each time a
 * transaction that sent to the topic commits and when a delayed or leased
 * message of the topic is due, until something is taken or the wait has
 * passed; then the result is empty.
 */
static Datum
take_messages(FunctionCallInfo fcinfo, TakeBatch take, int wait_argno,
			  const char *function_name)
{
	text	   *topic = es_checked_topic_arg(fcinfo, 0);
	int32		max_count = es_checked_max_count(fcinfo, 1);
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz deadline = start;
	TimestampTz next_due;

	if (PG_NARGS() > wait_argno && !PG_ARGISNULL(wait_argno))
	{
		Interval   *wait = PG_GETARG_INTERVAL_P(wait_argno);

		if (es_interval_sign(wait) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("wait must not be negative")));
		deadline = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
														   TimestampTzGetDatum(start),
														   IntervalPGetDatum(wait)));
	}
	if (deadline > start)
	{
		if (IsolationUsesXactSnapshot())
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("%s cannot wait in a REPEATABLE READ or SERIALIZABLE transaction",
							function_name),
					 errdetail("Its snapshot would not show the messages sent while it waits."),
					 errhint("Wait in a READ COMMITTED transaction, or claim without wait.")));
		if (!es_shmem_available())
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("%s cannot wait: event_store is not in shared_preload_libraries",
							function_name),
					 errhint("Add event_store to shared_preload_libraries, or claim without wait.")));
	}
	es_check_writable(function_name);

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (max_count == 0)
		return (Datum) 0;
	if (deadline <= start)
	{
		(void) take(fcinfo, topic, max_count, start, false, &next_due);
		return (Datum) 0;
	}

	publish_claim_wait(topic_hash(topic));
	PG_TRY();
	{
		for (;;)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz wake_at = deadline;
			long		timeout_ms;

			if (take(fcinfo, topic, max_count, now, true, &next_due) > 0)
				break;
			now = GetCurrentTimestamp();
			if (now >= deadline)
				break;
			if (next_due != 0 && next_due < wake_at)
				wake_at = next_due;
			/* at least a millisecond: a due message was not claimable */
			timeout_ms = Max(TimestampDifferenceMilliseconds(now, wake_at), 1);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 timeout_ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_FINALLY();
	{
		publish_claim_wait(0);
	}
	PG_END_TRY();

	return (Datum) 0;
}

/*
 * outbox_claim(topic, max_count, lease, wait)
 */
Datum
event_store_outbox_claim(PG_FUNCTION_ARGS)
{
	if (!PG_ARGISNULL(2) && es_interval_sign(PG_GETARG_INTERVAL_P(2)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be positive")));
	return take_messages(fcinfo, claim_batch, 3, "outbox_claim");
}

/*
 * outbox_consume(topic, max_count, wait): claim and acknowledge in one
 * statement of the caller's transaction, for consumers whose effects are
 * in the same database: they commit with the deletion, or roll back with
 * it.  The messages have no receipt.
 */
Datum
event_store_outbox_consume(PG_FUNCTION_ARGS)
{
	return take_messages(fcinfo, consume_batch, 2, "outbox_consume");
}

/*
 * outbox_extend(receipts, lease): the fenced lease extension.  Each message
 * whose current receipt is given is leased for lease (NULL: the topic's)
 * from now.  Returns how many were extended: a receipt whose lease ran out
 * and was claimed again, or that was acked, counts nothing.
 */
Datum
event_store_outbox_extend_receipts(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ArrayType  *receipts = receipts_arg(fcinfo);
	Oid			argtypes[4] = {INT8ARRAYOID, UUIDARRAYOID, TIMESTAMPTZOID, INTERVALOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	uint64		extended;

	if (!PG_ARGISNULL(1) && es_interval_sign(PG_GETARG_INTERVAL_P(1)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be positive")));
	es_check_writable("outbox_extend");
	if (ArrayGetNItems(ARR_NDIM(receipts), ARR_DIMS(receipts)) == 0)
		PG_RETURN_INT32(0);
	receipt_arrays(receipts, &values[0], &values[1]);
	values[2] = TimestampTzGetDatum(GetCurrentTimestamp());
	values[3] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[3] = PG_ARGISNULL(1) ? 'n' : ' ';

	SPI_connect();
	execute_saved(&plan, extend_receipts_sql, 4, argtypes, values, nulls, false);
	extended = SPI_processed;
	SPI_finish();

	PG_RETURN_INT32((int32) extended);
}

/*
 * Delete the message whose current receipt is receipt, found by its id in
 * the primary key; returns whether it did.  Like a DELETE: it waits for a
 * transaction that holds the row, and if that one changed it, looks at the
 * row's latest version (READ COMMITTED) or fails to serialize (REPEATABLE
 * READ and above).  A receipt that is no longer the message's current one
 * deletes nothing.
 */
static bool
ack_one(Relation outbox, Relation pkey, TupleTableSlot *slot, CommandId cid,
		const pg_uuid_t *receipt)
{
	int64		id = es_receipt_message_id(receipt);
	Snapshot	snapshot = GetActiveSnapshot();
	bool		fresh = false;
	bool		acked = false;

	for (;;)
	{
		IndexScanDesc scan;
		ScanKeyData key;
		bool		found;
		bool		isnull;
		Datum		current;
		TM_FailureData tmfd;
		TM_Result	result;

		ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_INT8EQ, Int64GetDatum(id));
		scan = es_index_beginscan(outbox, pkey, snapshot, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
		index_endscan(scan);
		if (!found)
			break;
		current = slot_getattr(slot, Anum_outbox_receipt, &isnull);
		if (isnull || memcmp(DatumGetUUIDP(current), receipt, UUID_LEN) != 0)
			break;
		result = table_tuple_delete(outbox, &slot->tts_tid, cid, snapshot,
									InvalidSnapshot, true, &tmfd, false);
		if (result == TM_Ok)
		{
			acked = true;
			if (!slot_attisnull(slot, Anum_outbox_key))
				remember_sent_topic(DatumGetTextPP(slot_getattr(slot, Anum_outbox_topic,
																&isnull)));
			break;
		}
		if (result != TM_Updated)
			break;				/* deleted, or already by this command */
		/* Changed by a transaction that committed meanwhile: look again. */
		snapshot = es_snapshot_after_concurrent_update(snapshot, &fresh);
	}
	if (fresh)
		UnregisterSnapshot(snapshot);
	return acked;
}

/*
 * outbox_ack(receipts): the fenced acknowledgement consumers use.  Written
 * against the table AM, like claims: a primary key lookup and a delete per
 * receipt.
 */
Datum
event_store_outbox_ack_receipts(PG_FUNCTION_ARGS)
{
	ArrayType  *receipts = receipts_arg(fcinfo);
	Datum	   *elems;
	bool	   *elem_nulls;
	int			nelems;
	Relation	outbox;
	Relation	pkey;
	TupleTableSlot *slot;
	CommandId	cid;
	int32		acked = 0;

	es_check_writable("outbox_ack");
	if (ArrayGetNItems(ARR_NDIM(receipts), ARR_DIMS(receipts)) == 0)
		PG_RETURN_INT32(0);
	deconstruct_array(receipts, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR,
					  &elems, &elem_nulls, &nelems);

	outbox = es_open_relation("outbox", RowExclusiveLock);
	pkey = es_open_relation("outbox_pkey", AccessShareLock);
	slot = table_slot_create(outbox, NULL);
	PushActiveSnapshot(GetTransactionSnapshot());
	cid = GetCurrentCommandId(true);
	for (int i = 0; i < nelems; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (!elem_nulls[i] &&
			ack_one(outbox, pkey, slot, cid, DatumGetUUIDP(elems[i])))
			acked++;
	}
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(slot);
	index_close(pkey, AccessShareLock);
	table_close(outbox, NoLock);
	CommandCounterIncrement();

	PG_RETURN_INT32(acked);
}

/*
 * outbox_ack_ids(ids bigint[]): the unfenced form, for operators.
 */
Datum
event_store_outbox_ack_ids(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ArrayType  *ids = checked_array_arg(fcinfo, 0, "ids");
	Oid			argtypes[1] = {INT8ARRAYOID};
	Datum		values[1] = {PointerGetDatum(ids)};
	uint64		acked;

	es_check_writable("outbox_ack_ids");
	SPI_connect();
	execute_saved(&plan, ack_ids_sql, 1, argtypes, values, NULL, false);
	acked = SPI_processed;
	remember_freed_topics(SPI_tuptable, SPI_processed, 1);
	SPI_finish();

	PG_RETURN_INT32((int32) acked);
}

/*
 * The common part of both nacks: $1 ids, $2 receipts (NULL for nack by
 * ids), then retry_in and error from the function's arguments 1 and 2.
 */
static int32
nack(FunctionCallInfo fcinfo, SPIPlanPtr *plan, const char *sql,
	 Datum ids, Datum receipts, bool by_receipt)
{
	Oid			argtypes[5] = {INT8ARRAYOID, UUIDARRAYOID, INTERVALOID, TEXTOID,
	TIMESTAMPTZOID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int32		nacked;
	bool		isnull;
	Datum		topics;

	if (!PG_ARGISNULL(1) && es_interval_sign(PG_GETARG_INTERVAL_P(1)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("retry_in must not be negative")));
	if (!PG_ARGISNULL(2) && VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(2)) > ES_MAX_ERROR_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("error text is too long"),
				 errdetail("Error texts are at most %d bytes.", ES_MAX_ERROR_BYTES)));
	es_check_writable("outbox_nack");

	values[0] = ids;
	values[1] = receipts;
	nulls[1] = by_receipt ? ' ' : 'n';
	values[2] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[2] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[3] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[3] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[4] = TimestampTzGetDatum(GetCurrentTimestamp());

	SPI_connect();
	execute_saved(plan, sql, 5, argtypes, values, nulls, false);
	nacked = (int32) DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1, &isnull));
	topics = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (!isnull)
	{
		ArrayIterator it = array_create_iterator(DatumGetArrayTypeP(topics), 0, NULL);
		Datum		topic;
		bool		topic_null;

		while (array_iterate(it, &topic, &topic_null))
			if (!topic_null)
				remember_sent_topic(DatumGetTextPP(topic));
		array_free_iterator(it);
	}
	SPI_finish();
	return nacked;
}

/*
 * outbox_nack(receipts, retry_in, error)
 */
Datum
event_store_outbox_nack_receipts(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ArrayType  *receipts = receipts_arg(fcinfo);
	Datum		ids_array;
	Datum		receipts_array;

	receipt_arrays(receipts, &ids_array, &receipts_array);
	PG_RETURN_INT32(nack(fcinfo, &plan, nack_receipts_sql,
						 ids_array, receipts_array, true));
}

/*
 * outbox_nack_ids(ids bigint[], retry_in, error)
 */
Datum
event_store_outbox_nack_ids(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ArrayType  *ids = checked_array_arg(fcinfo, 0, "ids");

	PG_RETURN_INT32(nack(fcinfo, &plan, nack_ids_sql,
						 PointerGetDatum(ids), (Datum) 0, false));
}

/*
 * check_topic(topic): the checks of a topic argument, for the SQL
 * functions that take one.
 */
Datum
event_store_check_topic(PG_FUNCTION_ARGS)
{
	(void) es_checked_topic_arg(fcinfo, 0);
	PG_RETURN_VOID();
}
