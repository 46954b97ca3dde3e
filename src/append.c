/*-------------------------------------------------------------------------
 *
 * append.c
 *	  append, append_event and delete_stream: writing events to a stream
 *	  with optimistic concurrency.
 *
 * An append takes the stream's lock (stream.c), reads the stream head from
 * the (stream, version) index, checks the expected version, reserves global
 * positions from the feed (feed.c) and inserts the rows.  The stream lock is
 * held to the end of the transaction, so the head read under it is the
 * latest committed one whatever the caller's isolation level, and the
 * versions written can never collide.
 *
 * A retry of an append that already committed (same event ids, now the last
 * events of the stream at the same versions) succeeds without writing.  An
 * event id that exists anywhere else makes the append fail with EV002; the
 * unique index on id is what detects it, and its error is reported in the
 * contract's terms.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/htup_details.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "event_store.h"
#include "guc.h"

PG_FUNCTION_INFO_V1(event_store_append);
PG_FUNCTION_INFO_V1(event_store_append_event);
PG_FUNCTION_INFO_V1(event_store_delete_stream);
PG_FUNCTION_INFO_V1(event_store_check_event_type);

/* One event to write, validated. */
typedef struct EsNewEvent
{
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;		/* NULL when the event has none */
	pg_uuid_t	id;
	bool		has_id;			/* id given by the caller */
} EsNewEvent;

static bool parse_uuid(const char *str, int len, pg_uuid_t *uuid);

/*
 * Check an event type's name: non-empty, not too long.
 */
static void
check_event_type_name(const char *type, int len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type must not be empty")));
	if (len > ES_MAX_TYPE_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event type \"%s...\" is too long",
						es_clipped(type, len, 32)),
				 errdetail("Event types are at most %d bytes; this one has %d.",
						   ES_MAX_TYPE_NAME_BYTES, len)));
}

/*
 * Check the type of an event to write: a valid name, not reserved.
 */
static void
check_event_type(const char *type, int len)
{
	check_event_type_name(type, len);
	if (type[0] == '$')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event type \"%.*s\" is reserved", len, type),
				 errdetail("Types starting with \"$\" are reserved for events the store writes itself.")));
}

static void
check_event_size(const EsNewEvent *event)
{
	Size		size = VARSIZE(event->data);

	if (event->metadata)
		size += VARSIZE(event->metadata);
	if (size > (Size) es_max_event_size * 1024)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("event is too large"),
				 errdetail("Data and metadata take %zu bytes; event_store.max_event_size is %d kB.",
						   size, es_max_event_size)));
}

/*
 * Read one event object of the events argument of append.
 */
static void
parse_event_object(JsonbContainer *object, EsNewEvent *event)
{
	JsonbIterator *it = JsonbIteratorInit(object);
	JsonbValue	key;
	JsonbValue	value;
	JsonbIteratorToken token;
	bool		has_data = false;

	memset(event, 0, sizeof(EsNewEvent));

	while ((token = JsonbIteratorNext(&it, &key, true)) != WJB_DONE)
	{
		char	   *name;
		int			namelen;

		if (token != WJB_KEY)
			continue;
		token = JsonbIteratorNext(&it, &value, true);
		Assert(token == WJB_VALUE);
		name = key.val.string.val;
		namelen = key.val.string.len;

		if (namelen == 4 && memcmp(name, "type", 4) == 0)
		{
			if (value.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event key \"type\" must be a string")));
			check_event_type(value.val.string.val, value.val.string.len);
			event->type = cstring_to_text_with_len(value.val.string.val,
												   value.val.string.len);
		}
		else if (namelen == 4 && memcmp(name, "data", 4) == 0)
		{
			event->data = JsonbValueToJsonb(&value);
			has_data = true;
		}
		else if (namelen == 8 && memcmp(name, "metadata", 8) == 0)
		{
			if (value.type == jbvNull)
				event->metadata = NULL;
			else if (value.type == jbvBinary &&
					 JsonContainerIsObject(value.val.binary.data))
				event->metadata = JsonbValueToJsonb(&value);
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("event key \"metadata\" must be a JSON object")));
		}
		else if (namelen == 2 && memcmp(name, "id", 2) == 0)
		{
			if (value.type == jbvNull)
				event->has_id = false;
			else if (value.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("event key \"id\" must be a UUID string")));
			else if (!parse_uuid(value.val.string.val, value.val.string.len,
								 &event->id))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
						 errmsg("invalid event id \"%s\"",
								es_clipped(value.val.string.val,
										   value.val.string.len, 64))));
			else
				event->has_id = true;
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown event key \"%s\"",
							es_clipped(name, namelen, 64)),
					 errhint("An event has the keys \"type\", \"data\", \"metadata\" and \"id\".")));
	}

	if (event->type == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event key \"type\" is missing")));
	if (!has_data)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("event key \"data\" is missing"),
				 errhint("Use \"data\": null for an event without data.")));
	check_event_size(event);
}

/* Errors about one event of append's events argument name it. */
static void
event_error_context(void *arg)
{
	errcontext("event %d of the events argument", *(int *) arg);
}

/*
 * The events argument of append: one object or a non-empty array of them.
 */
static EsNewEvent *
parse_events(Jsonb *events, int *count)
{
	EsNewEvent *parsed;
	int			n;
	int			index = 0;
	ErrorContextCallback context;

	if (JB_ROOT_IS_SCALAR(events) ||
		!(JB_ROOT_IS_OBJECT(events) || JB_ROOT_IS_ARRAY(events)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must be a JSON object or an array of objects")));

	if (JB_ROOT_IS_OBJECT(events))
	{
		parsed = palloc(sizeof(EsNewEvent));
		context.callback = event_error_context;
		context.arg = &index;
		context.previous = error_context_stack;
		error_context_stack = &context;
		parse_event_object(&events->root, parsed);
		error_context_stack = context.previous;
		*count = 1;
		return parsed;
	}

	n = JB_ROOT_COUNT(events);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("events must not be an empty array")));
	if (n > es_max_append_events)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many events in one append"),
				 errdetail("The append has %d events; event_store.max_append_events is %d.",
						   n, es_max_append_events)));

	parsed = palloc(n * sizeof(EsNewEvent));
	context.callback = event_error_context;
	context.arg = &index;
	context.previous = error_context_stack;
	error_context_stack = &context;
	for (int i = 0; i < n; i++)
	{
		JsonbValue *element = getIthJsonbValueFromContainer(&events->root, i);

		index = i;

		if (element->type != jbvBinary ||
			!JsonContainerIsObject(element->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("event must be a JSON object")));
		parse_event_object(element->val.binary.data, &parsed[i]);
	}
	error_context_stack = context.previous;
	*count = n;
	return parsed;
}

static int
hex_digit_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Parse a UUID the way the uuid type's input does: 32 hex digits,
 * optionally in braces, optionally with a hyphen after any group of four.
 */
static bool
parse_uuid(const char *str, int len, pg_uuid_t *uuid)
{
	const char *p = str;
	const char *end = str + len;
	bool		braces = false;

	if (p < end && *p == '{')
	{
		braces = true;
		p++;
	}
	for (int i = 0; i < UUID_LEN; i++)
	{
		int			hi,
					lo;

		if (end - p < 2)
			return false;
		hi = hex_digit_value(p[0]);
		lo = hex_digit_value(p[1]);
		if (hi < 0 || lo < 0)
			return false;
		uuid->data[i] = (unsigned char) ((hi << 4) | lo);
		p += 2;
		if (p < end && *p == '-' && (i % 2) == 1 && i < UUID_LEN - 1)
			p++;
	}
	if (braces)
	{
		if (p >= end || *p != '}')
			return false;
		p++;
	}
	return p == end;
}

static char *
uuid_to_cstring(const pg_uuid_t *uuid)
{
	return DatumGetCString(DirectFunctionCall1(uuid_out,
											   UUIDPGetDatum((pg_uuid_t *) uuid)));
}

/*
 * Render an expected version for messages.
 */
static const char *
expected_version_str(int64 expected)
{
	if (expected == ES_EXPECT_NO_STREAM)
		return "-1 (no stream)";
	if (expected == ES_EXPECT_STREAM_EXISTS)
		return "-2 (stream exists)";
	return psprintf(INT64_FORMAT, expected);
}

static int64
checked_expected_version(FunctionCallInfo fcinfo, int argno, bool *has_expected)
{
	int64		expected;

	*has_expected = !PG_ARGISNULL(argno);
	if (!*has_expected)
		return 0;
	expected = PG_GETARG_INT64(argno);
	if (expected < ES_EXPECT_STREAM_EXISTS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid expected version " INT64_FORMAT, expected),
				 errhint("Use NULL (any), -1 (stream must not exist), -2 (stream must exist) or the current version.")));
	return expected;
}

static void
check_expected_version(text *stream, const EsStreamHead *head,
					   bool has_expected, int64 expected)
{
	bool		ok;

	/* A soft-deleted stream does not exist, but its versions continue. */
	bool		live = head->exists && !head->soft_deleted;

	if (!has_expected)
		return;
	if (expected == ES_EXPECT_NO_STREAM)
		ok = !live;
	else if (expected == ES_EXPECT_STREAM_EXISTS)
		ok = live;
	else
		ok = head->exists && head->version == expected;

	if (!ok)
	{
		char	   *name = text_to_cstring(stream);

		ereport(ERROR,
				(errcode(ERRCODE_ES_WRONG_EXPECTED_VERSION),
				 errmsg("wrong expected version for stream \"%s\"", name),
				 errdetail("Stream \"%s\": expected version %s, actual version %s.",
						   name, expected_version_str(expected),
						   !head->exists ? "-1 (no stream)" :
						   head->soft_deleted ?
						   psprintf(INT64_FORMAT " (soft-deleted)", head->version) :
						   psprintf(INT64_FORMAT, head->version))));
	}
}

/*
 * Is this append a retry of one that already committed?  It is when every
 * event has an id and those ids are, in order, the last events of the
 * stream, and the expected version is the one the first attempt had.  The
 * events of a soft-deleted stream are no longer its events: an append that
 * repeats their ids would give them new versions, so it is not a retry.
 */
static bool
is_committed_retry(Relation events, Relation stream_index, text *stream,
				   const EsStreamHead *head, const EsNewEvent *new_events,
				   int n, bool has_expected, int64 expected)
{
	EsStreamScan *ss;
	TupleTableSlot *slot;
	int			i;

	if (!head->exists || head->soft_deleted || !head->has_last_id ||
		head->version < n - 1)
		return false;
	for (i = 0; i < n; i++)
		if (!new_events[i].has_id)
			return false;
	/* Cheap test first: the last id must be the stream's last event. */
	if (memcmp(&head->last_id, &new_events[n - 1].id, sizeof(pg_uuid_t)) != 0)
		return false;

	if (has_expected)
	{
		if (expected == ES_EXPECT_NO_STREAM && head->version != n - 1)
			return false;
		if (expected >= 0 && expected != head->version - n)
			return false;
	}

	ss = es_stream_scan_begin(events, stream_index, stream, false, 0, true,
							  SnapshotSelf);
	for (i = n - 1; i >= 0; i--)
	{
		slot = es_stream_scan_next(ss);
		if (slot == NULL ||
			memcmp(DatumGetUUIDP(es_getattr(slot, Anum_events_id)),
				   &new_events[i].id, sizeof(pg_uuid_t)) != 0)
			break;
	}
	es_stream_scan_end(ss);
	return i < 0;
}

/*
 * The index of an event before this one in the same append with the same
 * id, or -1: what the unique index on id reports as a conflict may be the
 * append's own.
 */
static int
duplicate_in_append(const EsNewEvent *new_events, int current)
{
	for (int i = 0; i < current; i++)
		if (memcmp(&new_events[i].id, &new_events[current].id,
				   sizeof(pg_uuid_t)) == 0)
			return i;
	return -1;
}

/*
 * Hand the events just written to the outbox routes (route.c).
 */
static void
route_appended_events(text *stream, EsNewEvent *new_events,
					  int n, int64 first_position, int64 first_version,
					  TimestampTz recorded_at)
{
	EsRoutedEvent *routed = palloc(n * sizeof(EsRoutedEvent));

	for (int i = 0; i < n; i++)
	{
		routed[i].stream = stream;
		routed[i].type = new_events[i].type;
		routed[i].data = new_events[i].data;
		routed[i].metadata = new_events[i].metadata;
		routed[i].id = &new_events[i].id;
		routed[i].version = first_version + i;
		routed[i].position = first_position + i;
		routed[i].recorded_at = recorded_at;
	}
	es_route_events(stream, routed, n);
	pfree(routed);
}

/*
 * Write validated events to a stream.  Returns the stream's new version.
 * A tombstone (deleting) needs a stream that exists, unless the expected
 * version says it must not.
 */
static int64
append_events(const char *function_name, text *stream,
			  EsNewEvent *new_events, int n,
			  bool has_expected, int64 expected, bool deleting)
{
	MemoryContext callercxt = CurrentMemoryContext;
	EsTableWriter *writer;
	Relation	stream_index;
	EsStreamHead head;
	int64		first_position;
	Datum		values[Natts_events];
	bool		nulls[Natts_events];
	TimestampTz now;
	volatile int current = 0;

	es_check_writable(function_name);
	es_lock_stream(VARDATA_ANY(stream), VARSIZE_ANY_EXHDR(stream));

	writer = es_writer_open("events");
	es_check_appendable(writer->rel);
	stream_index = es_open_relation("events_stream_version_key",
							  AccessShareLock);

	/*
	 * Under the stream lock no other transaction can be writing this stream,
	 * so the committed state (SnapshotSelf also sees our own earlier appends)
	 * is the stream's true head.
	 */
	head = es_read_stream_head(writer->rel, stream_index, stream, SnapshotSelf);
	if (head.deleted)
		es_report_stream_deleted(stream);

	if (is_committed_retry(writer->rel, stream_index, stream, &head,
						   new_events, n, has_expected, expected))
	{
		index_close(stream_index, AccessShareLock);
		es_writer_close(writer);
		return head.version;
	}
	check_expected_version(stream, &head, has_expected, expected);
	if (deleting && !head.exists &&
		!(has_expected && expected == ES_EXPECT_NO_STREAM))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", text_to_cstring(stream)),
				 errdetail("It has no events."),
				 errhint("To delete a stream that has no events, so that its name cannot be used, pass expected_version => -1.")));

	now = GetCurrentTimestamp();
	memset(nulls, false, sizeof(nulls));
	values[Anum_events_stream - 1] = PointerGetDatum(stream);
	values[Anum_events_recorded_at - 1] = TimestampTzGetDatum(now);

	first_position = es_feed_reserve_positions(writer->rel, n);

	PG_TRY();
	{
		for (current = 0; current < n; current++)
		{
			EsNewEvent *event = &new_events[current];

			if (!event->has_id)
				es_generate_uuid(&event->id);
			values[Anum_events_position - 1] = Int64GetDatum(first_position + current);
			values[Anum_events_version - 1] = Int64GetDatum(head.version + 1 + current);
			values[Anum_events_type - 1] = PointerGetDatum(event->type);
			values[Anum_events_data - 1] = JsonbPGetDatum(event->data);
			values[Anum_events_metadata - 1] = JsonbPGetDatum(event->metadata);
			nulls[Anum_events_metadata - 1] = (event->metadata == NULL);
			values[Anum_events_id - 1] = UUIDPGetDatum(&event->id);
			es_writer_insert(writer, values, nulls);
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(callercxt);
		edata = CopyErrorData();
		if (edata->sqlerrcode == ERRCODE_UNIQUE_VIOLATION &&
			edata->constraint_name != NULL &&
			strcmp(edata->constraint_name, "events_id_key") == 0)
		{
			int			earlier = duplicate_in_append(new_events, current);

			FlushErrorState();
			if (earlier >= 0)
				ereport(ERROR,
						(errcode(ERRCODE_ES_EVENT_ID_CONFLICT),
						 errmsg("event id %s already exists",
								uuid_to_cstring(&new_events[current].id)),
						 errdetail("Events %d and %d of the append to stream \"%s\" have the same id.",
								   earlier, current, text_to_cstring(stream))));
			ereport(ERROR,
					(errcode(ERRCODE_ES_EVENT_ID_CONFLICT),
					 errmsg("event id %s already exists",
							uuid_to_cstring(&new_events[current].id)),
					 errdetail("Event %d of the append to stream \"%s\" has an id that is already in the store.",
							   current, text_to_cstring(stream))));
		}
		PG_RE_THROW();
	}
	PG_END_TRY();

	es_feed_reservation_done();
	index_close(stream_index, AccessShareLock);
	es_writer_close(writer);

	route_appended_events(stream, new_events, n, first_position,
						  head.version + 1, now);

	/* Let later commands of this transaction see the new head. */
	CommandCounterIncrement();
	return head.version + n;
}

/*
 * append(stream, events, expected_version)
 */
Datum
event_store_append(PG_FUNCTION_ARGS)
{
	text	   *stream = es_checked_stream_arg(fcinfo, 0);
	bool		has_expected;
	int64		expected = checked_expected_version(fcinfo, 2, &has_expected);
	EsNewEvent *new_events;
	int			n;

	es_require_arg(fcinfo, 1, "events");
	new_events = parse_events(PG_GETARG_JSONB_P(1), &n);

	PG_RETURN_INT64(append_events("append", stream, new_events, n,
								 has_expected, expected, false));
}

/*
 * append_event(stream, type, data, metadata, expected_version, id)
 */
Datum
event_store_append_event(PG_FUNCTION_ARGS)
{
	text	   *stream = es_checked_stream_arg(fcinfo, 0);
	bool		has_expected;
	int64		expected = checked_expected_version(fcinfo, 4, &has_expected);
	EsNewEvent event;

	es_require_arg(fcinfo, 1, "event type");
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("event data must not be null"),
				 errhint("Use 'null'::jsonb for an event without data.")));

	event.type = PG_GETARG_TEXT_PP(1);
	check_event_type(VARDATA_ANY(event.type), VARSIZE_ANY_EXHDR(event.type));
	event.data = PG_GETARG_JSONB_P(2);
	event.metadata = PG_ARGISNULL(3) ? NULL :
		es_checked_json_object(PG_GETARG_JSONB_P(3), "metadata");
	event.has_id = !PG_ARGISNULL(5);
	if (event.has_id)
		memcpy(&event.id, PG_GETARG_UUID_P(5), sizeof(pg_uuid_t));
	check_event_size(&event);

	PG_RETURN_INT64(append_events("append_event", stream, &event, 1,
								 has_expected, expected, false));
}

/*
 * Soft delete: the stream reads as empty from now on (its metadata row
 * hides every version up to its current one), can be written again with
 * its versions continuing, and the scavenger removes its events.  Nothing
 * is written to the log.  Returns the version of the stream's last event,
 * -1 for a stream that has none and expected_version -1.
 */
static int64
soft_delete_stream(text *stream, bool has_expected, int64 expected)
{
	Relation	events;
	Relation	stream_index;
	EsStreamHead head;
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		args[2];
	int			rc;
	HeapTuple	tuple;
	Oid			owner;
	Oid			save_userid;
	int			save_sec_context;

	es_check_writable("delete_stream");
	es_lock_stream(VARDATA_ANY(stream), VARSIZE_ANY_EXHDR(stream));

	events = es_open_relation("events", AccessShareLock);
	stream_index = es_open_relation("events_stream_version_key",
									AccessShareLock);
	head = es_read_stream_head(events, stream_index, stream, SnapshotSelf);
	index_close(stream_index, AccessShareLock);
	table_close(events, AccessShareLock);

	if (head.deleted)
		es_report_stream_deleted(stream);
	check_expected_version(stream, &head, has_expected, expected);
	if (!head.exists)
	{
		if (has_expected && expected == ES_EXPECT_NO_STREAM)
			return -1;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" does not exist", text_to_cstring(stream)),
				 errdetail("It has no events.")));
	}

	/*
	 * The row is written as the owner of the extension's schema (a
	 * superuser, checked at install): no role may write the table itself.
	 * An error restores the caller's identity with the transaction.
	 */
	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(es_schema_oid()));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for the namespace of event_store");
	owner = ((Form_pg_namespace) GETSTRUCT(tuple))->nspowner;
	ReleaseSysCache(tuple);
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context |
						   SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);

	args[0] = PointerGetDatum(stream);
	args[1] = Int64GetDatum(head.version + 1);
	SPI_connect();
	rc = SPI_execute_with_args("INSERT INTO event_store.stream_settings AS s (stream, deleted_before) "
							   "VALUES ($1, $2) ON CONFLICT (stream) DO UPDATE "
							   "SET deleted_before = GREATEST(s.deleted_before, excluded.deleted_before), "
							   "updated_at = pg_catalog.now()",
							   2, argtypes, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	CommandCounterIncrement();
	return head.version;
}

/*
 * delete_stream(stream, expected_version, soft)
 *
 * Hard (soft false): ends a stream with a tombstone event: later appends,
 * reads and stream_version of the stream fail with EV003.  The stream's
 * events stay in the global feed, followed by the tombstone, so consumers
 * learn of the deletion.  Returns the version of the tombstone.  A stream
 * that has no events is refused (it would only burn the name), unless
 * expected_version is -1 (no stream), which asks for exactly that.
 *
 * Soft: see soft_delete_stream.
 */
Datum
event_store_delete_stream(PG_FUNCTION_ARGS)
{
	text	   *stream = es_checked_stream_arg(fcinfo, 0);
	bool		has_expected;
	int64		expected = checked_expected_version(fcinfo, 1, &has_expected);
	EsNewEvent	tombstone;

	if (PG_NARGS() > 2)
	{
		es_require_arg(fcinfo, 2, "soft");
		if (PG_GETARG_BOOL(2))
			PG_RETURN_INT64(soft_delete_stream(stream, has_expected, expected));
	}

	tombstone.type = cstring_to_text(ES_TOMBSTONE_TYPE);
	tombstone.data = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														CStringGetDatum("{}")));
	tombstone.metadata = NULL;
	tombstone.has_id = false;

	PG_RETURN_INT64(append_events("delete_stream", stream, &tombstone, 1,
								 has_expected, expected, true));
}

/*
 * check_event_type(event_type): the checks of an event type's name, for
 * the SQL functions that take one to match events; NULL passes (it stands
 * for every type).
 */
Datum
event_store_check_event_type(PG_FUNCTION_ARGS)
{
	text	   *type;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	type = PG_GETARG_TEXT_PP(0);
	check_event_type_name(VARDATA_ANY(type), VARSIZE_ANY_EXHDR(type));
	PG_RETURN_VOID();
}
