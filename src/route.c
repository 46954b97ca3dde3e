/*-------------------------------------------------------------------------
 *
 * route.c
 *	  Routes from the event log to the outbox: an append enqueues, in its
 *	  own transaction, a message for each event that a route matches.
 *
 * Routes (event_store.event_routes) are few and read on every append, so
 * each backend caches them.  A statement-level trigger on the table sends a
 * relcache invalidation for it, which every backend receives at its next
 * transaction (or, in the changing transaction, at the next command) and
 * which empties the cache.
 *
 * The message of an event: topic from the route, key = the stream, payload
 * = the event's data, headers = {event_id, stream, version, type, position,
 * recorded_at, metadata (JSON null when the event has none)}.  A route to a
 * topic delivered through the WAL emits a logical decoding message instead
 * (outbox.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "miscadmin.h"
#include "utils/datetime.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_event_routes_changed);

typedef struct EsRoute
{
	char	   *category;		/* NULL: any */
	char	   *event_type;		/* NULL: any */
	text	   *topic;
} EsRoute;

static MemoryContext routes_context = NULL;
static List *routes = NIL;
static bool routes_valid = false;
static Oid	routes_relid = InvalidOid;

static void
routes_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == routes_relid)
		routes_valid = false;
}

void
es_route_init(void)
{
	CacheRegisterRelcacheCallback(routes_relcache_callback, (Datum) 0);
}

static char *
nullable_string(TupleTableSlot *slot, int attnum)
{
	bool		isnull;
	Datum		value = slot_getattr(slot, attnum, &isnull);

	return isnull ? NULL : TextDatumGetCString(value);
}

static void
load_routes(void)
{
	Relation	rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	Snapshot	snapshot;
	MemoryContext old;

	if (routes_context == NULL)
		routes_context = AllocSetContextCreate(TopMemoryContext,
											   "event_store routes",
											   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(routes_context);
	routes = NIL;

	rel = es_open_relation("event_routes", AccessShareLock);
	routes_relid = RelationGetRelid(rel);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	old = MemoryContextSwitchTo(routes_context);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		EsRoute    *route = palloc(sizeof(EsRoute));

		route->category = nullable_string(slot, 1);
		route->event_type = nullable_string(slot, 2);
		route->topic = cstring_to_text(nullable_string(slot, 3));
		routes = lappend(routes, route);
	}
	MemoryContextSwitchTo(old);
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);

	/* Set last: an invalidation during the load makes us load again. */
	routes_valid = true;
}

static bool
text_equals_cstring(text *value, const char *cstring)
{
	size_t		len = strlen(cstring);

	return VARSIZE_ANY_EXHDR(value) == len &&
		memcmp(VARDATA_ANY(value), cstring, len) == 0;
}

/* The routes matching an event, without repeating a topic. */
static List *
matching_routes(text *category, text *type)
{
	List	   *matches = NIL;
	ListCell   *lc;

	foreach(lc, routes)
	{
		EsRoute    *route = lfirst(lc);
		ListCell   *seen;
		bool		duplicate = false;

		if (route->category && !text_equals_cstring(category, route->category))
			continue;
		if (route->event_type && !text_equals_cstring(type, route->event_type))
			continue;
		foreach(seen, matches)
		{
			EsRoute    *other = lfirst(seen);

			if (es_text_equal(other->topic, route->topic))
				duplicate = true;
		}
		if (!duplicate)
			matches = lappend(matches, route);
	}
	return matches;
}

static void
push_key(JsonbParseState **state, const char *key)
{
	JsonbValue	v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &v);
}

static void
push_string(JsonbParseState **state, const char *key, const char *value, int len)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvString;
	v.val.string.val = (char *) value;
	v.val.string.len = len;
	pushJsonbValue(state, WJB_VALUE, &v);
}

static void
push_int64(JsonbParseState **state, const char *key, int64 value)
{
	JsonbValue	v;

	push_key(state, key);
	v.type = jbvNumeric;
	v.val.numeric = int64_to_numeric(value);
	pushJsonbValue(state, WJB_VALUE, &v);
}

/* A timestamp as ISO 8601 in UTC, whatever the session's settings. */
static char *
iso8601_utc(TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char		buf[MAXDATELEN + 2];

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range")));
	EncodeDateTime(&tm, fsec, false, 0, NULL, USE_XSD_DATES, buf);
	strcat(buf, "Z");
	return pstrdup(buf);
}

static Jsonb *
event_headers(const EsRoutedEvent *event)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;
	char	   *id = DatumGetCString(DirectFunctionCall1(uuid_out,
														 UUIDPGetDatum(event->id)));
	char	   *recorded_at = iso8601_utc(event->recorded_at);

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	push_string(&state, "event_id", id, strlen(id));
	push_string(&state, "stream", VARDATA_ANY(event->stream),
				VARSIZE_ANY_EXHDR(event->stream));
	push_int64(&state, "version", event->version);
	push_string(&state, "type", VARDATA_ANY(event->type),
				VARSIZE_ANY_EXHDR(event->type));
	push_int64(&state, "position", event->position);
	push_string(&state, "recorded_at", recorded_at, strlen(recorded_at));
	push_key(&state, "metadata");
	if (event->metadata)
	{
		JsonbValue	v;

		v.type = jbvBinary;
		v.val.binary.data = &event->metadata->root;
		v.val.binary.len = VARSIZE(event->metadata) - VARHDRSZ;
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	else
	{
		JsonbValue	v;

		v.type = jbvNull;
		pushJsonbValue(&state, WJB_VALUE, &v);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * Enqueue the outbox messages that the routes ask for, for events just
 * appended to one stream in this transaction.
 */
void
es_route_events(text *stream, EsRoutedEvent *events, int count)
{
	EsTableWriter *writer = NULL;
	text	   *category;

	if (!routes_valid)
		load_routes();
	if (routes == NIL)
		return;
	category = es_category_of(VARDATA_ANY(stream), VARSIZE_ANY_EXHDR(stream));

	for (int i = 0; i < count; i++)
	{
		List	   *matches = matching_routes(category, events[i].type);
		ListCell   *lc;
		Jsonb	   *headers;

		if (matches == NIL)
			continue;
		headers = event_headers(&events[i]);
		foreach(lc, matches)
		{
			EsRoute    *route = lfirst(lc);

			es_outbox_deliver(&writer, route->topic, events[i].stream,
							  events[i].data, headers,
							  events[i].recorded_at, events[i].recorded_at);
		}
		list_free(matches);
	}
	if (writer != NULL)
		es_writer_close(writer);
}

/*
 * Statement trigger on event_routes: tell every backend to reload.
 */
Datum
event_store_event_routes_changed(PG_FUNCTION_ARGS)
{
	return es_invalidate_trigger_table(fcinfo, "event_routes_changed");
}
