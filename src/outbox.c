/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  The transactional outbox, sending: outbox_send and outbox_send_batch.
 *
 * A message is a row of event_store.outbox.  Sending inserts it in the
 * caller's transaction (through writer.c, no SQL), so it is invisible until
 * that transaction commits and gone if it rolls back.  Consumers take it
 * with outbox_claim or outbox_consume (outbox_claim.c); the relay workers
 * publish the topics routed to sinks (relay.c).  outbox.h lists the other
 * files of the outbox.
 *
 * A topic configured with delivery 'wal' has no rows: a message sent to it
 * (by outbox_send or an event route) is a transactional logical decoding
 * message with prefix "event_store" whose content is the message as JSON,
 * {"id", "topic", "key", "payload", "headers"}, as pg_logical_emit_message
 * writes one.  Decoding hands it out when, and only if, the transaction
 * commits, in commit order; there is nothing to claim, ack or vacuum.  Its
 * id still comes from outbox_id_seq, so ids stay unique across both kinds
 * of topic.  Which topics these are, every backend caches
 * (outbox_topics.c).
 *
 * outbox_send_batch inserts many messages in one call.  A send with a
 * deduplication key records the key in outbox_dedup (one row per topic and
 * key, its unique index serialises concurrent senders); a second send of
 * the key within the window returns the first message's id and inserts
 * nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/sequence.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/syscache.h"

#include "event_store.h"
#include "guc.h"
#include "outbox.h"

PG_FUNCTION_INFO_V1(event_store_check_topic);
PG_FUNCTION_INFO_V1(event_store_outbox_send);
PG_FUNCTION_INFO_V1(event_store_outbox_send_batch);

/* The prefix of the logical decoding messages of WAL topics. */
#define WAL_MESSAGE_PREFIX "event_store"

/* A deduplication key without a window is remembered this long. */
#define ES_DEFAULT_DEDUP_WINDOW_SECS 300

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
	if (es_outbox_topic_is_wal(topic))
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
		es_outbox_insert_begin();
		id = nextval_internal(es_relation_oid("outbox_id_seq"), false);
	}
	es_outbox_insert_first_id(id);

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
	es_outbox_note_sent(topic);
	return id;
}

int64
es_outbox_enqueue(EsTableWriter *writer, text *topic, text *key,
				  Jsonb *payload, Jsonb *headers, TimestampTz available_at,
				  TimestampTz now)
{
	return enqueue(writer, 0, topic, key, payload, headers, available_at, now);
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
		if (!es_outbox_topic_is_wal(topic))
			es_outbox_insert_begin();
		id = nextval_internal(es_relation_oid("outbox_id_seq"), false);
		es_outbox_insert_first_id(id);
		values[3] = Int64GetDatum(id);
		if (run_dedup_statement(&record_plan, dedup_record_sql, values, 5) != id)
		{
			int64		first = run_dedup_statement(&find_plan, dedup_find_sql, values, 3);

			if (first == 0)
				elog(ERROR, "deduplication key of a concurrent send not found");
			PG_RETURN_INT64(first);
		}
	}

	if (es_outbox_topic_is_wal(topic))
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
	wal = es_outbox_topic_is_wal(topic);
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
 * check_topic(topic): the checks of a topic argument, for the SQL
 * functions that take one.
 */
Datum
event_store_check_topic(PG_FUNCTION_ARGS)
{
	(void) es_checked_topic_arg(fcinfo, 0);
	PG_RETURN_VOID();
}
