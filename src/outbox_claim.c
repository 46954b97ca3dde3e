/*-------------------------------------------------------------------------
 *
 * outbox_claim.c
 *	  Consuming the outbox: outbox_claim, outbox_consume, outbox_extend,
 *	  outbox_ack and outbox_nack.
 *
 * A claim takes available messages of a topic in id order, skipping those
 * another transaction holds, so claimers never wait for each other nor get
 * the same message; it gives each message a lease (available_at moves to
 * the end of it), counts the attempt, and gives it a new receipt.  A keyed
 * message is not handed out while an earlier message of the same topic and
 * key is still in the outbox (leased, waiting for a retry, or available):
 * per-key FIFO.  Claims start past the messages no claim can take any more
 * (outbox_claim_start.c).
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
 * Claims, consumes and acks by receipt work on the table through the table
 * AM (claim_rows, consume_batch, ack_one): they are the consumers' hot
 * path, and a statement's executor start-up cost more than their work.
 * Claims and consumes also move messages past their last attempt to the
 * dead letters (bury_message).  Extensions, nacks, acks by id and moved
 * leases are SQL statements kept as prepared plans, run through SPI as the
 * extension's owner (the functions are SECURITY DEFINER).
 *
 * A claim can wait for messages (outbox_claim(..., wait => interval)): it
 * publishes the topic it waits for, takes a fresh snapshot and tries to
 * claim; if nothing is available it sleeps on its latch until the wait
 * ends or the next delayed message of the topic is due.  A transaction
 * that sent to the topic, or freed a message of it, sets the latch once
 * its commit is visible (outbox_xact.c).
 *
 * outbox_consume takes messages as a claim chooses them and deletes them
 * in the caller's transaction: one write per message (the deletion is also
 * what makes other consumers skip it), no lease, no receipt;
 * until the caller commits, the deleted rows stay locked, so other claims
 * skip them and the later messages of their keys wait.  outbox_extend
 * moves the end of a lease, fenced by the receipt like an ack.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "funcapi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/lsyscache.h"

#include "compat.h"
#include "event_store.h"
#include "outbox.h"

/* ids.c: a fresh receipt for a claim of a message */
extern Datum event_store_outbox_new_receipt(PG_FUNCTION_ARGS);

PG_FUNCTION_INFO_V1(event_store_outbox_claim);
PG_FUNCTION_INFO_V1(event_store_outbox_consume);
PG_FUNCTION_INFO_V1(event_store_outbox_extend_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_ack_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_ack_ids);
PG_FUNCTION_INFO_V1(event_store_outbox_nack_receipts);
PG_FUNCTION_INFO_V1(event_store_outbox_nack_ids);

/* Extend the leases of the messages $1 just claimed to end at $2. */
static const char *const extend_sql =
"UPDATE event_store.outbox AS o SET available_at = $2 WHERE o.id = ANY ($1)";

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
 * Run a statement of a claim (extend_sql) through SPI
 * with the plan settings the other consumer functions set in SQL (see
 * sql/install/50_outbox.sql): set around each run, since the plan cache
 * may plan the statement again at any run.
 */
static void
execute_claim_statement(SPIPlanPtr *plan, const char *sql, int nargs,
						Oid *argtypes, Datum *values)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("jit", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SPI_connect();
	execute_saved(plan, sql, nargs, argtypes, values, NULL, false);
	SPI_finish();
	AtEOXact_GUC(true, nestlevel);
}

/*
 * A scan of the messages of a topic available now, in id order from a
 * first id on, as claims and consumes take them: from the (topic, id + 0)
 * index, a keyed message only when no earlier message of its key is left.
 * It reads where the next claims may start (see "Where claims start" in
 * outbox_claim_start.c) before it takes its snapshot.
 */
typedef struct Candidates
{
	text	   *topic;
	TimestampTz now;
	Relation	outbox;
	Relation	index;
	Relation	key_index;
	Snapshot	snapshot;
	IndexScanDesc scan;
	TupleTableSlot *slot;		/* the current message, every column read */
	TupleTableSlot *probe;		/* for the look for earlier messages of a key */
	IndexScanDesc key_scan;		/* its scan, begun at the first keyed message */
	TimestampTz next_due;		/* the first delayed message stepped over, or 0 */
	int64		next_start;		/* where the next claims of the topic start */
} Candidates;

static void
candidates_begin(Candidates *c, text *topic, TimestampTz now, int64 first_id)
{
	ScanKeyData keys[2];

	c->topic = topic;
	c->now = now;
	c->next_due = 0;
	c->outbox = es_open_relation("outbox", RowExclusiveLock);
	c->index = es_open_relation("outbox_topic_id_idx", AccessShareLock);
	c->key_index = es_open_relation("outbox_topic_key_id_idx", AccessShareLock);
	c->next_start = es_shmem_available() ? es_outbox_lowest_future_id() : 0;
	PushActiveSnapshot(GetTransactionSnapshot());
	c->snapshot = GetActiveSnapshot();
	c->slot = table_slot_create(c->outbox, NULL);
	c->probe = table_slot_create(c->outbox, NULL);
	c->key_scan = NULL;
	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   c->index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(topic));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTGreaterEqualStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8GE, Int64GetDatum(first_id));
	c->scan = es_index_beginscan(c->outbox, c->index, c->snapshot, 2, 0);
	index_rescan(c->scan, keys, 2, NULL, 0);
}

/*
 * Whether a message of the topic and key with an id below id is in the
 * outbox (visible to the snapshot): then the message id waits for it
 * (per-key order).
 */
static bool
earlier_of_key_exists(Candidates *c, Datum key, int64 id)
{
	ScanKeyData keys[3];

	ScanKeyEntryInitialize(&keys[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
						   c->key_index->rd_indcollation[0], F_TEXTEQ,
						   PointerGetDatum(c->topic));
	ScanKeyEntryInitialize(&keys[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
						   c->key_index->rd_indcollation[1], F_TEXTEQ, key);
	ScanKeyEntryInitialize(&keys[2], 0, 3, BTLessStrategyNumber, InvalidOid,
						   InvalidOid, F_INT8LT, Int64GetDatum(id));
	if (c->key_scan == NULL)
		c->key_scan = es_index_beginscan(c->outbox, c->key_index, c->snapshot, 3, 0);
	index_rescan(c->key_scan, keys, 3, NULL, 0);
	return index_getnext_slot(c->key_scan, ForwardScanDirection, c->probe);
}

/* The next candidate into c->slot; false when there is none. */
static bool
candidates_next(Candidates *c)
{
	TupleTableSlot *slot = c->slot;

	while (index_getnext_slot(c->scan, ForwardScanDirection, slot))
	{
		TimestampTz available_at;
		int64		id;

		CHECK_FOR_INTERRUPTS();
		slot_getallattrs(slot);
		id = DatumGetInt64(slot->tts_values[Anum_outbox_id - 1]);
		if (id < c->next_start)
			c->next_start = id; /* the first message the scan sees */
		available_at = DatumGetTimestampTz(slot->tts_values[Anum_outbox_available_at - 1]);
		if (available_at > c->now)
		{
			if (c->next_due == 0 || available_at < c->next_due)
				c->next_due = available_at;
			continue;
		}
		if (!slot->tts_isnull[Anum_outbox_key - 1] &&
			earlier_of_key_exists(c, slot->tts_values[Anum_outbox_key - 1], id))
			continue;
		return true;
	}
	return false;
}

static void
candidates_end(Candidates *c)
{
	if (c->key_scan != NULL)
		index_endscan(c->key_scan);
	index_endscan(c->scan);
	ExecDropSingleTupleTableSlot(c->probe);
	ExecDropSingleTupleTableSlot(c->slot);
	PopActiveSnapshot();
	index_close(c->key_index, AccessShareLock);
	index_close(c->index, AccessShareLock);
	table_close(c->outbox, NoLock);
}

/* Put a message into the function's result, with its attempts and receipt. */
static void
put_message(FunctionCallInfo fcinfo, TupleTableSlot *slot, int32 attempts,
			Datum receipt, bool receipt_isnull)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
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
	row_nulls[7] = receipt_isnull;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, row, row_nulls);
}

/*
 * Move a message that had used its last attempt (its last lease expired),
 * taken by a claim or a consume, to the dead letters.
 */
static void
bury_message(EsTableWriter **dead_letters, TupleTableSlot *slot, TimestampTz now)
{
	Datum		values[Natts_dead_letters];
	bool		nulls[Natts_dead_letters];
	const char *reason = "lease expired on the last attempt";
	text	   *last_error;

	if (slot->tts_isnull[Anum_outbox_last_error - 1])
		last_error = cstring_to_text(reason);
	else
	{
		char	   *earlier = TextDatumGetCString(slot->tts_values[Anum_outbox_last_error - 1]);

		last_error = cstring_to_text(psprintf("%s; %s", earlier, reason));
	}
	if (*dead_letters == NULL)
		*dead_letters = es_writer_open("outbox_dead_letters");
	memset(nulls, false, sizeof(nulls));
	values[Anum_dead_letters_id - 1] = slot->tts_values[Anum_outbox_id - 1];
	values[Anum_dead_letters_topic - 1] = slot->tts_values[Anum_outbox_topic - 1];
	values[Anum_dead_letters_key - 1] = slot->tts_values[Anum_outbox_key - 1];
	nulls[Anum_dead_letters_key - 1] = slot->tts_isnull[Anum_outbox_key - 1];
	values[Anum_dead_letters_payload - 1] = slot->tts_values[Anum_outbox_payload - 1];
	values[Anum_dead_letters_headers - 1] = slot->tts_values[Anum_outbox_headers - 1];
	nulls[Anum_dead_letters_headers - 1] = slot->tts_isnull[Anum_outbox_headers - 1];
	values[Anum_dead_letters_attempts - 1] = slot->tts_values[Anum_outbox_attempts - 1];
	values[Anum_dead_letters_created_at - 1] = slot->tts_values[Anum_outbox_created_at - 1];
	values[Anum_dead_letters_last_error - 1] = PointerGetDatum(last_error);
	values[Anum_dead_letters_died_at - 1] = TimestampTzGetDatum(now);
	es_writer_insert(*dead_letters, values, nulls);
}

/*
 * Delete the candidate in c->slot without waiting, as a claim or consume
 * takes it; false if another transaction holds it or changed it since the
 * snapshot (skipped, as FOR UPDATE SKIP LOCKED would skip it).  The
 * deletion of a keyed message frees the next one of its key at commit.
 */
static bool
delete_candidate(Candidates *c, CommandId cid)
{
	TM_FailureData tmfd;

	if (table_tuple_delete(c->outbox, &c->slot->tts_tid, cid, c->snapshot,
						   InvalidSnapshot, false, &tmfd, false) != TM_Ok)
		return false;
	if (!c->slot->tts_isnull[Anum_outbox_key - 1])
		es_outbox_note_freed(c->topic);
	return true;
}

/*
 * One claim: lease up to max_count available messages of the topic in id
 * order, from first_id on, and put them in the function's result; returns
 * how many.  Written against the table AM rather than in SQL: a claim is
 * the queue's hot path, and a statement's executor start-up cost more than
 * its work.  Each candidate is updated in place (attempts, lease, receipt:
 * no indexed column, so a HOT update) without waiting: one that another
 * transaction holds (a claim, a consume, an ack, the relay) or changed
 * since the snapshot is skipped, as FOR UPDATE SKIP LOCKED would skip it,
 * and the update is the lock.  A message that used the topic's maximum
 * attempts (its last lease expired) goes to the dead letters instead;
 * *nburied counts them.
 */
static int
claim_rows(FunctionCallInfo fcinfo, text *topic, int32 max_count,
		   TimestampTz now, int64 first_id, TimestampTz *next_due,
		   Datum **leased, int *nleased, int *nburied, int *capacity,
		   Interval *lease, TimestampTz *lease_end, int64 *next_start)
{
	EsTableWriter *writer = NULL;
	EsTableWriter *dead_letters = NULL;
	Candidates	c;
	TupleTableSlot *updated = NULL;
	CommandId	cid = InvalidCommandId;
	int32		max_attempts;
	Interval	margin;

	es_outbox_topic_policy(topic, &max_attempts, lease);
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
	candidates_begin(&c, topic, now, first_id);
	while (*nleased + *nburied < max_count && candidates_next(&c))
	{
		TupleTableSlot *slot = c.slot;
		TM_FailureData tmfd;
		LockTupleMode lockmode;
		EsUpdateIndexes update_indexes;
		TM_Result	result;
		int32		attempts;
		Datum		receipt;
		int64		id = DatumGetInt64(slot->tts_values[Anum_outbox_id - 1]);

		if (cid == InvalidCommandId)
			cid = GetCurrentCommandId(true);
		attempts = DatumGetInt32(slot->tts_values[Anum_outbox_attempts - 1]) + 1;
		if (attempts > max_attempts)
		{
			if (delete_candidate(&c, cid))
			{
				bury_message(&dead_letters, slot, now);
				(*nburied)++;
			}
			continue;
		}
		if (writer == NULL)
		{
			writer = es_writer_open("outbox");
			updated = writer->slot;
		}
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
									c.snapshot, InvalidSnapshot, false,
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
		/* Room for one more: max_count may be far larger. */
		if (*nleased >= *capacity)
		{
			*capacity *= 2;
			*leased = repalloc(*leased, sizeof(Datum) * *capacity);
		}
		(*leased)[(*nleased)++] = Int64GetDatum(id);
		put_message(fcinfo, slot, attempts, receipt, false);
	}
	*next_due = c.next_due;
	*next_start = c.next_start;
	candidates_end(&c);
	if (writer != NULL)
		es_writer_close(writer);
	if (dead_letters != NULL)
		es_writer_close(dead_letters);
	/* What follows in the transaction sees the leases and burials. */
	if (cid != InvalidCommandId)
		CommandCounterIncrement();
	return *nleased;
}

static int
claim_batch(FunctionCallInfo fcinfo, text *topic, int32 max_count,
			TimestampTz now, TimestampTz *next_due)
{
	static SPIPlanPtr extend_plan = NULL;
	int			nburied = 0;
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
	bool		only_claims;
	int			capacity;

	*next_due = 0;
	capacity = Min(max_count, 64);
	leased = palloc(sizeof(Datum) * capacity);
	relid = es_relation_oid("outbox");
	hash = es_claim_topic_hash(topic);
	start = es_claim_start_get(relid, hash, now, &from_beginning, &epoch);
	/* Whether the transaction wrote nothing but claims so far. */
	only_claims = es_outbox_wrote_only_claims();
	(void) claim_rows(fcinfo, topic, max_count, now, start,
					  next_due, &leased, &nleased, &nburied, &capacity,
					  &lease, &lease_end, &next_start);
	if (!IsolationUsesXactSnapshot())
		es_claim_start_set(relid, hash, now, next_start, from_beginning, epoch);

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
		execute_claim_statement(&extend_plan, extend_sql, 2, extend_types,
								extend_values);
	}

	if (only_claims)
		es_outbox_claims_written();

	/* The messages past their last attempt are not in the result. */
	if (nleased == 0 && nburied > 0 && *next_due == 0)
		*next_due = now;
	return nleased;
}

/*
 * One consume: delete up to max_count available messages of the topic,
 * chosen as a claim chooses them, in the caller's transaction, and put them
 * in the function's result (without receipt); like claim_batch otherwise.
 * Each candidate is deleted without waiting (delete_candidate): the
 * deletion is the lock.  Until the caller commits,
 * other claims skip the deleted rows and the later messages of their keys
 * wait; a rollback puts them back untouched.  One write per message, as a
 * hand-written queue's DELETE, without its row lock before.
 */
static int
consume_batch(FunctionCallInfo fcinfo, text *topic, int32 max_count,
			  TimestampTz now, TimestampTz *next_due)
{
	EsTableWriter *dead_letters = NULL;
	Candidates	c;
	CommandId	cid = InvalidCommandId;
	Oid			relid = es_relation_oid("outbox");
	uint64		hash = es_claim_topic_hash(topic);
	int64		start;
	bool		from_beginning;
	uint64		epoch;
	int32		max_attempts;
	Interval	lease;
	int			consumed = 0;
	int			buried = 0;

	es_outbox_topic_policy(topic, &max_attempts, &lease);
	start = es_claim_start_get(relid, hash, now, &from_beginning, &epoch);
	candidates_begin(&c, topic, now, start);
	while (consumed + buried < max_count && candidates_next(&c))
	{
		TupleTableSlot *slot = c.slot;
		int32		attempts;

		if (cid == InvalidCommandId)
			cid = GetCurrentCommandId(true);
		if (!delete_candidate(&c, cid))
			continue;
		attempts = DatumGetInt32(slot->tts_values[Anum_outbox_attempts - 1]);
		if (attempts >= max_attempts)
		{
			bury_message(&dead_letters, slot, now);
			buried++;
			continue;
		}
		put_message(fcinfo, slot, attempts + 1, (Datum) 0, true);
		consumed++;
	}
	*next_due = c.next_due;
	if (!IsolationUsesXactSnapshot())
		es_claim_start_set(relid, hash, now, c.next_start, from_beginning, epoch);
	candidates_end(&c);
	if (dead_letters != NULL)
		es_writer_close(dead_letters);
	if (cid != InvalidCommandId)
		CommandCounterIncrement();	/* what follows sees the deletions */

	/* Only dead letters this time: there may be more to consume at once. */
	if (consumed == 0 && buried > 0)
		*next_due = now;
	return consumed;
}

typedef int (*TakeBatch) (FunctionCallInfo fcinfo, text *topic, int32 max_count,
						  TimestampTz now, TimestampTz *next_due);

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

	es_init_result_store(fcinfo);
	if (max_count == 0)
		return (Datum) 0;
	if (deadline <= start)
	{
		(void) take(fcinfo, topic, max_count, start, &next_due);
		return (Datum) 0;
	}

	es_outbox_claim_wait_begin(topic);
	PG_TRY();
	{
		for (;;)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz wake_at = deadline;
			long		timeout_ms;

			if (take(fcinfo, topic, max_count, now, &next_due) > 0)
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
		es_outbox_claim_wait_end();
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
ack_one(Relation outbox, Relation pkey, IndexScanDesc scan, TupleTableSlot *slot,
		CommandId cid, const pg_uuid_t *receipt)
{
	int64		id = es_receipt_message_id(receipt);
	Snapshot	snapshot = GetActiveSnapshot();
	IndexScanDesc fresh_scan = NULL;
	bool		fresh = false;
	bool		acked = false;

	for (;;)
	{
		ScanKeyData key;
		bool		found;
		bool		isnull;
		Datum		current;
		TM_FailureData tmfd;
		TM_Result	result;

		ScanKeyEntryInitialize(&key, 0, 1, BTEqualStrategyNumber, InvalidOid,
							   InvalidOid, F_INT8EQ, Int64GetDatum(id));
		index_rescan(scan, &key, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, slot);
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
				es_outbox_note_freed(DatumGetTextPP(slot_getattr(slot, Anum_outbox_topic,
																&isnull)));
			break;
		}
		if (result != TM_Updated)
			break;				/* deleted, or already by this command */
		/*
		 * Changed by a transaction that committed meanwhile: look again,
		 * with a snapshot that sees it (and a scan of its own).
		 */
		if (fresh_scan != NULL)
			index_endscan(fresh_scan);
		snapshot = es_snapshot_after_concurrent_update(snapshot, &fresh);
		scan = fresh_scan = es_index_beginscan(outbox, pkey, snapshot, 1, 0);
	}
	if (fresh_scan != NULL)
		index_endscan(fresh_scan);
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
	IndexScanDesc scan;
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
	/* One scan of the primary key for all receipts: each rescans it. */
	scan = es_index_beginscan(outbox, pkey, GetActiveSnapshot(), 1, 0);
	cid = GetCurrentCommandId(true);
	for (int i = 0; i < nelems; i++)
	{
		CHECK_FOR_INTERRUPTS();
		if (!elem_nulls[i] &&
			ack_one(outbox, pkey, scan, slot, cid, DatumGetUUIDP(elems[i])))
			acked++;
	}
	index_endscan(scan);
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
	es_outbox_note_freed_topics(SPI_tuptable, SPI_processed, 1);
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
				es_outbox_note_freed(DatumGetTextPP(topic));
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
