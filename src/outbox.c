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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type_d.h"
#include "commands/sequence.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_outbox_send);
PG_FUNCTION_INFO_V1(event_store_outbox_claim);
PG_FUNCTION_INFO_V1(event_store_outbox_ack_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_ack_ids);
PG_FUNCTION_INFO_V1(event_store_outbox_nack_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_nack_ids);
PG_FUNCTION_INFO_V1(event_store_outbox_topics_changed);

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

/*
 * The claim statement returns those, then the topic's maximum attempts, the
 * end of the lease it set and the lease.
 */
#define Natts_claimed (Natts_outbox_message + 3)
#define Claimed_attempts 5
#define Claimed_max_attempts Natts_outbox_message
#define Claimed_lease_end (Natts_outbox_message + 1)
#define Claimed_lease (Natts_outbox_message + 2)

/* This transaction sent messages: its commit wakes the relay. */
static bool sent_in_transaction = false;

/* The prefix of the logical decoding messages of WAL topics. */
#define WAL_MESSAGE_PREFIX "event_store"

/* The names of the topics delivered through the WAL (text *), cached. */
static MemoryContext wal_topics_context = NULL;
static List *wal_topics = NIL;
static bool wal_topics_valid = false;
static bool wal_topics_callback_registered = false;
static Oid	wal_topics_relid = InvalidOid;

/*
 * Claim: lock up to $2 available messages of topic $1 in id order (keyed
 * ones only when no earlier message of their key is left) and lease them.
 * $3 lease (NULL: the topic's), $4 now, $5 the id to start from (the first
 * available message, found by first_available_id).  Also returns the
 * topic's maximum attempts, so that the caller can spot a message claimed
 * beyond it (its lease expired on the last attempt) and bury it instead:
 * that is rare, so it is a second statement rather than more work in every
 * claim; and the lease with the end it set, for the caller to extend it
 * after a slow claim.  (It scans the (topic, id + 0) index and updates the
 * locked rows by ctid: see plans.c.)
 */
static const char *const claim_sql =
"WITH settings AS ("
"  SELECT s.max_attempts, coalesce($3, s.lease) AS lease"
"  FROM event_store.outbox_topic_settings($1) AS s"
"), candidates AS ("
"  SELECT o.ctid AS row_id FROM event_store.outbox AS o"
"  WHERE o.topic = $1 AND o.id + 0 >= $5 AND o.available_at <= $4"
"    AND (o.key IS NULL OR NOT EXISTS ("
"          SELECT FROM event_store.outbox AS earlier"
"          WHERE earlier.topic = $1 AND earlier.key = o.key AND earlier.id < o.id))"
"  ORDER BY o.topic, o.id + 0 LIMIT $2"
"  FOR UPDATE OF o SKIP LOCKED"
"), claimed AS ("
"  UPDATE event_store.outbox AS o"
"  SET attempts = o.attempts + 1,"
"      available_at = $4 + s.lease + least(s.lease / 10, interval '1 second'),"
"      receipt = event_store.outbox_new_receipt(o.id)"
"  FROM settings AS s"
"  WHERE o.ctid = ANY (ARRAY(SELECT c.row_id FROM candidates AS c))"
"  RETURNING o.id, o.topic, o.key, o.payload, o.headers, o.attempts, o.created_at, o.receipt,"
"    s.max_attempts, o.available_at, s.lease"
") SELECT * FROM claimed AS c ORDER BY c.id";

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

/* Ack: delete the messages whose current receipt is given. */
static const char *const ack_receipts_sql =
"DELETE FROM event_store.outbox AS o"
" USING unnest($1::bigint[], $2::uuid[]) AS r(id, receipt)"
" WHERE o.id = r.id AND o.receipt = r.receipt";

static const char *const ack_ids_sql =
"DELETE FROM event_store.outbox AS o WHERE o.id = ANY ($1)";

/*
 * Nack: the targets (by receipt or by id) go back to the queue after $3
 * (NULL: backoff), or to the dead letters if they used their last attempt.
 * $4 error, $5 now.  Returns how many were nacked.
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
") SELECT (SELECT count(*) FROM retried) + (SELECT count(*) FROM buried)"

static const char *const nack_receipts_sql = NACK_SQL(
"  SELECT o.id, o.attempts, o.topic FROM event_store.outbox AS o"
"  JOIN unnest($1::bigint[], $2::uuid[]) AS r(id, receipt)"
"    ON o.id = r.id AND o.receipt = r.receipt"
"  FOR UPDATE OF o");

static const char *const nack_ids_sql = NACK_SQL(
"  SELECT o.id, o.attempts, o.topic FROM event_store.outbox AS o"
"  WHERE o.id = ANY ($1)"
"  FOR UPDATE OF o");

/*
 * Check a topic argument: not NULL, not empty, at most ES_MAX_TOPIC_BYTES.
 */
text *
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

static void
wal_topics_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == wal_topics_relid)
		wal_topics_valid = false;
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

	if (!wal_topics_callback_registered)
	{
		CacheRegisterRelcacheCallback(wal_topics_relcache_callback, (Datum) 0);
		wal_topics_callback_registered = true;
	}
	if (wal_topics_context == NULL)
		wal_topics_context = AllocSetContextCreate(TopMemoryContext,
												   "event_store WAL topics",
												   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(wal_topics_context);
	wal_topics = NIL;

	rel = es_open_relation("outbox_topics", AccessShareLock);
	wal_topics_relid = RelationGetRelid(rel);
	/* By name: an updated installation may have its columns elsewhere. */
	topic_attnum = get_attnum(wal_topics_relid, "topic");
	delivery_attnum = get_attnum(wal_topics_relid, "delivery");
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
		text	   *name = lfirst(lc);

		if (VARSIZE_ANY_EXHDR(name) == VARSIZE_ANY_EXHDR(topic) &&
			memcmp(VARDATA_ANY(name), VARDATA_ANY(topic), VARSIZE_ANY_EXHDR(topic)) == 0)
			return true;
	}
	return false;
}

/*
 * Emit the message to a WAL topic: a transactional logical decoding
 * message, decoded at the transaction's commit, dropped if it aborts.
 */
static int64
emit_wal_message(text *topic, text *key, Jsonb *payload, Jsonb *headers)
{
	StringInfoData buf;
	char	   *topic_cstring = text_to_cstring(topic);
	int64		id;

	if (!XLogLogicalInfoActive())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("topic \"%s\" is delivered through the WAL, but wal_level is not \"logical\"",
						topic_cstring),
				 errhint("Set wal_level = logical and restart the server, or deliver the topic through the outbox table with outbox_configure(topic, delivery => 'table').")));

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
		if (available_at > now)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("a message to topic \"%s\" cannot be delayed",
							text_to_cstring(topic)),
					 errdetail("The topic is delivered through the WAL, at commit.")));
		return emit_wal_message(topic, key, payload, headers);
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
 * Insert one message into the outbox, in the caller's transaction, through
 * a writer opened on event_store.outbox.  Returns its id.
 */
int64
es_outbox_enqueue(EsTableWriter *writer, text *topic, text *key,
				  Jsonb *payload, Jsonb *headers, TimestampTz available_at,
				  TimestampTz now)
{
	Datum		values[Natts_outbox];
	bool		nulls[Natts_outbox];
	int64		id;

	id = nextval_internal(es_relation_oid("outbox_id_seq"), false);

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
	return id;
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

/*
 * outbox_send(topic, payload, key, headers, delay)
 */
Datum
event_store_outbox_send(PG_FUNCTION_ARGS)
{
	text	   *topic = es_checked_topic_arg(fcinfo, 0);
	Jsonb	   *payload;
	text	   *key = NULL;
	Jsonb	   *headers = NULL;
	TimestampTz now;
	TimestampTz available_at;
	EsTableWriter *writer = NULL;
	int64		id;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be null"),
				 errhint("Use 'null'::jsonb for a message without payload.")));
	payload = PG_GETARG_JSONB_P(1);

	if (!PG_ARGISNULL(2))
	{
		key = PG_GETARG_TEXT_PP(2);
		if (VARSIZE_ANY_EXHDR(key) > ES_MAX_KEY_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("message key \"%s...\" is too long",
							es_clipped(VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key), 32)),
					 errdetail("Keys are at most %d bytes; this one has %d.",
							   ES_MAX_KEY_BYTES, (int) VARSIZE_ANY_EXHDR(key))));
	}

	if (!PG_ARGISNULL(3))
		headers = es_checked_json_object(PG_GETARG_JSONB_P(3), "headers");

	if (VARSIZE(payload) + (headers ? VARSIZE(headers) : 0) >
		(Size) es_max_message_size * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("message is too large"),
				 errdetail("Payload and headers take %zu bytes; event_store.max_message_size is %d kB.",
						   (Size) VARSIZE(payload) + (headers ? VARSIZE(headers) : 0),
						   es_max_message_size)));

	now = GetCurrentTimestamp();
	available_at = now;
	if (!PG_ARGISNULL(4))
	{
		Interval   *delay = PG_GETARG_INTERVAL_P(4);

		if (es_interval_sign(delay) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("delay must not be negative")));
		available_at = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
															   TimestampTzGetDatum(now),
															   IntervalPGetDatum(delay)));
	}

	es_check_writable("outbox_send");
	id = es_outbox_deliver(&writer, topic, key, payload, headers, available_at, now);
	if (writer != NULL)
	{
		es_writer_close(writer);
		CommandCounterIncrement();
	}

	PG_RETURN_INT64(id);
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
		elog(ERROR, "outbox statement failed: %s", SPI_result_code_string(rc));
}

/*
 * Find the id of the topic's first message available now; false if it has
 * none.  A direct scan of the (topic, id + 0) index: polling an idle topic
 * costs an index lookup rather than the claim statement, and a claim
 * starts at that id instead of stepping again over the messages at the
 * head of the topic that are leased, or acknowledged and not yet vacuumed.
 * A message that commits with a lower id after this scan waits for the
 * next claim; per-key order does not depend on it (the claim looks for
 * earlier messages of a key without this bound).
 */
static bool
first_available_id(text *topic, TimestampTz now, int64 *first_id)
{
	Relation	outbox = es_open_relation("outbox", AccessShareLock);
	Relation	index = es_open_relation("outbox_topic_id_idx", AccessShareLock);
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData key;
	bool		found = false;

	ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(topic));
	slot = table_slot_create(outbox, NULL);
	scan = index_beginscan(outbox, index, GetActiveSnapshot(), 1, 0);
	index_rescan(scan, &key, 1, NULL, 0);
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
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	index_close(index, AccessShareLock);
	table_close(outbox, AccessShareLock);
	return found;
}

/*
 * outbox_claim(topic, max_count, lease)
 */
Datum
event_store_outbox_claim(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr claim_plan = NULL;
	static SPIPlanPtr bury_plan = NULL;
	static SPIPlanPtr extend_plan = NULL;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text	   *topic = es_checked_topic_arg(fcinfo, 0);
	int32		max_count = es_checked_max_count(fcinfo, 1);
	Oid			argtypes[5] = {TEXTOID, INT4OID, INTERVALOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	TimestampTz now = GetCurrentTimestamp();
	int64		first_id;
	SPITupleTable *claimed;
	Datum	   *exhausted;
	int			nexhausted = 0;
	Datum	   *leased;
	int			nleased = 0;
	TimestampTz lease_end = 0;
	Interval   *lease = NULL;
	Datum		extend_values[2];

	if (!PG_ARGISNULL(2) && es_interval_sign(PG_GETARG_INTERVAL_P(2)) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lease must be positive")));
	es_check_writable("outbox_claim");

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	if (max_count == 0 || !first_available_id(topic, now, &first_id))
		return (Datum) 0;

	values[0] = PointerGetDatum(topic);
	values[1] = Int32GetDatum(max_count);
	values[2] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[2] = PG_ARGISNULL(2) ? 'n' : ' ';
	values[3] = TimestampTzGetDatum(now);
	values[4] = Int64GetDatum(first_id);

	SPI_connect();
	execute_saved(&claim_plan, claim_sql, 5, argtypes, values, nulls, false);
	claimed = SPI_tuptable;
	exhausted = palloc(sizeof(Datum) * Max(SPI_processed, 1));
	leased = palloc(sizeof(Datum) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		Datum		row[Natts_claimed];
		bool		row_nulls[Natts_claimed];

		heap_deform_tuple(claimed->vals[i], claimed->tupdesc, row, row_nulls);
		lease_end = DatumGetTimestampTz(row[Claimed_lease_end]);
		lease = DatumGetIntervalP(row[Claimed_lease]);
		if (DatumGetInt32(row[Claimed_attempts]) > DatumGetInt32(row[Claimed_max_attempts]))
			exhausted[nexhausted++] = row[0];
		else
		{
			leased[nleased++] = row[0];
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, row_nulls);
		}
	}
	if (nexhausted > 0)
	{
		Oid			bury_types[2] = {INT8ARRAYOID, TIMESTAMPTZOID};
		Datum		bury_values[2];

		bury_values[0] = PointerGetDatum(construct_array(exhausted, nexhausted,
														 INT8OID, 8, FLOAT8PASSBYVAL,
														 TYPALIGN_DOUBLE));
		bury_values[1] = TimestampTzGetDatum(now);
		execute_saved(&bury_plan, bury_sql, 2, bury_types, bury_values, NULL, false);
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
														 IntervalPGetDatum(lease)));
		if (lease_end >= needed)
			break;
		lease_end = needed + (current - now);
		if (round == 0)
			extend_values[0] = PointerGetDatum(construct_array(leased, nleased,
															   INT8OID, 8, FLOAT8PASSBYVAL,
															   TYPALIGN_DOUBLE));
		extend_values[1] = TimestampTzGetDatum(lease_end);
		execute_saved(&extend_plan, extend_sql, 2, extend_types, extend_values,
					  NULL, false);
	}
	SPI_finish();

	return (Datum) 0;
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
 * outbox_ack(receipts): the fenced acknowledgement consumers use.
 */
Datum
event_store_outbox_ack_receipts(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	ArrayType  *receipts = receipts_arg(fcinfo);
	Oid			argtypes[2] = {INT8ARRAYOID, UUIDARRAYOID};
	Datum		values[2];
	uint64		acked;

	es_check_writable("outbox_ack");
	if (ArrayGetNItems(ARR_NDIM(receipts), ARR_DIMS(receipts)) == 0)
		PG_RETURN_INT32(0);
	receipt_arrays(receipts, &values[0], &values[1]);

	SPI_connect();
	execute_saved(&plan, ack_receipts_sql, 2, argtypes, values, NULL, false);
	acked = SPI_processed;
	SPI_finish();

	PG_RETURN_INT32((int32) acked);
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
