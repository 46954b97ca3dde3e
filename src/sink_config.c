/*-------------------------------------------------------------------------
 *
 * sink_config.c
 *	  The table of sinks (es_sink_lookup) and the named sinks made by
 *	  relay_sink_create: their connections, kept per worker across batches,
 *	  their destinations, and their counters in event_store.relay_sink_state.
 *
 * A route names either a URI (notify:<channel>) or a sink by name (no
 * colon).  A named sink's definition is read in each batch's transaction,
 * so a change of its url or options is seen at the next batch and makes a
 * new connection.  Credentials stay in this worker's memory and in the
 * drivers' connections: errors name the sink, never its url or options.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "event_store.h"
#include "sink.h"
#include "sink_named.h"

/* A named sink's connection, kept across batches. */
typedef struct NamedConnection
{
	char		name[NAMEDATALEN];
	const EsSinkDriver *driver;
	char	   *fingerprint;	/* scheme, url and options: malloc'd */
	void	   *conn;			/* NULL: not connected */
	struct NamedConnection *next;
} NamedConnection;

static NamedConnection *connections = NULL;

/* One batch of a named sink. */
typedef struct NamedBatch
{
	NamedConnection *nc;
	char	   *connect_error;	/* the connection could not be made */
} NamedBatch;

static const EsSinkDriver *const drivers[] = {
	&es_sink_driver_kafka,
	&es_sink_driver_amqp,
	&es_sink_driver_http,
	&es_sink_driver_https
};

static const char *const definition_sql =
"SELECT d.scheme, d.url, d.options::text FROM event_store.relay_sink_definitions AS d"
" WHERE d.name = $1";

static const char *const destination_sql =
"SELECT r.destination FROM event_store.relay_routes AS r WHERE r.topic = $1";

static const char *const message_sql =
"SELECT o.payload::text, o.headers::text FROM event_store.outbox AS o WHERE o.id = $1";

static const char *const state_sql =
"INSERT INTO event_store.relay_sink_state AS s"
" (name, connected, in_flight, delivered, retried, last_error, last_error_at, updated_at)"
" VALUES ($1, $2, $3, $4, $5, $6, CASE WHEN $6 IS NOT NULL THEN $7 END, $7)"
" ON CONFLICT (name) DO UPDATE SET connected = excluded.connected,"
"  in_flight = excluded.in_flight,"
"  delivered = s.delivered + excluded.delivered,"
"  retried = s.retried + excluded.retried,"
"  last_error = coalesce(excluded.last_error, s.last_error),"
"  last_error_at = coalesce(excluded.last_error_at, s.last_error_at),"
"  updated_at = excluded.updated_at";

static const EsSinkDriver *
driver_of(const char *scheme)
{
	for (size_t i = 0; i < lengthof(drivers); i++)
	{
		if (strcmp(drivers[i]->scheme, scheme) == 0)
			return drivers[i];
	}
	return NULL;
}

static NamedConnection *
find_connection(const char *name)
{
	NamedConnection *nc;

	for (nc = connections; nc != NULL; nc = nc->next)
	{
		if (strcmp(nc->name, name) == 0)
			return nc;
	}
	nc = MemoryContextAllocZero(TopMemoryContext, sizeof(NamedConnection));
	strlcpy(nc->name, name, NAMEDATALEN);
	nc->next = connections;
	connections = nc;
	return nc;
}

static void
drop_connection(NamedConnection *nc)
{
	if (nc->conn != NULL)
		nc->driver->disconnect(nc->conn);
	nc->conn = NULL;
}

static void *
named_open(const char *target)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	NamedBatch *batch = palloc0(sizeof(NamedBatch));
	NamedConnection *nc;
	char	   *scheme;
	char	   *url;
	char	   *options;
	char	   *fingerprint;

	values[0] = CStringGetTextDatum(target);
	if (SPI_execute_plan(es_prepared_plan(&plan, definition_sql, 1, argtypes),
						 values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "relay sink statement failed");
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sink \"%s\" does not exist", target)));
	scheme = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	url = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	options = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3);

	nc = find_connection(target);
	fingerprint = psprintf("%s\n%s\n%s", scheme, url, options);
	if (nc->fingerprint == NULL || strcmp(nc->fingerprint, fingerprint) != 0)
	{
		drop_connection(nc);
		if (nc->fingerprint)
			free(nc->fingerprint);
		nc->fingerprint = strdup(fingerprint);
		if (nc->fingerprint == NULL)
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
		nc->driver = driver_of(scheme);
	}
	if (nc->driver == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("sink \"%s\": the relay cannot publish to %s sinks", target, scheme)));
	if (nc->conn != NULL && !nc->driver->usable(nc->conn))
		drop_connection(nc);
	if (nc->conn == NULL)
		nc->conn = nc->driver->connect(nc->name, url, options, &batch->connect_error);
	/* The credentials are not kept in this transaction's memory. */
	memset(url, 0, strlen(url));
	memset(options, 0, strlen(options));
	memset(fingerprint, 0, strlen(fingerprint));
	batch->nc = nc;
	return batch;
}

/* Load the messages the relay handed over without their text. */
static void
load_large(EsSinkMessage *m)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {INT8OID};
	Datum		values[1];

	values[0] = Int64GetDatum(m->id);
	if (SPI_execute_plan(es_prepared_plan(&plan, message_sql, 1, argtypes),
						 values, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read outbox message " INT64_FORMAT, m->id);
	m->payload = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	m->headers = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
}

static void
named_publish(void *state, EsSinkMessage *messages, int count)
{
	static SPIPlanPtr plan = NULL;
	NamedBatch *batch = state;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	char	   *destination = NULL;

	if (count == 0)
		return;
	if (batch->nc->conn == NULL)
	{
		for (int i = 0; i < count; i++)
		{
			messages[i].status = ES_SINK_FAILED;
			messages[i].error = psprintf("%s sink \"%s\": %s",
										 batch->nc->driver->label, batch->nc->name,
										 batch->connect_error ? batch->connect_error :
										 "could not connect");
		}
		return;
	}
	values[0] = CStringGetTextDatum(messages[0].topic);
	if (SPI_execute_plan(es_prepared_plan(&plan, destination_sql, 1, argtypes),
						 values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "relay destination statement failed");
	if (SPI_processed == 1)
		destination = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	for (int i = 0; i < count; i++)
	{
		if (messages[i].payload == NULL)
			load_large(&messages[i]);
	}
	batch->nc->driver->publish(batch->nc->conn, destination, messages, count);
}

static void
named_confirm(void *state, EsSinkMessage *messages, int count, int timeout_ms)
{
	static SPIPlanPtr plan = NULL;
	NamedBatch *batch = state;
	NamedConnection *nc = batch->nc;
	Oid			argtypes[7] = {TEXTOID, BOOLOID, INT4OID, INT8OID, INT8OID, TEXTOID,
	TIMESTAMPTZOID};
	Datum		values[7];
	char		nulls[7] = "       ";
	int64		delivered = 0;
	int64		retried = 0;
	const char *error = NULL;
	bool		connected;

	if (nc->conn != NULL && count > 0)
		nc->driver->confirm(nc->conn, messages, count, timeout_ms);
	for (int i = 0; i < count; i++)
	{
		if (messages[i].status == ES_SINK_CONFIRMED)
			delivered++;
		else if (messages[i].status == ES_SINK_FAILED)
		{
			retried++;
			error = messages[i].error;
		}
	}
	/*
	 * The relay commits asynchronously; a broker has these messages now, so
	 * their deletion must survive a crash, or they would all be published
	 * again: only a batch whose commit had not happened is.
	 */
	if (delivered > 0)
		ForceSyncCommit();
	connected = nc->conn != NULL && nc->driver->usable(nc->conn);
	if (nc->conn != NULL && !connected)
		drop_connection(nc);

	values[0] = CStringGetTextDatum(nc->name);
	values[1] = BoolGetDatum(connected);
	values[2] = Int32GetDatum(nc->conn ? nc->driver->in_flight(nc->conn) : 0);
	values[3] = Int64GetDatum(delivered);
	values[4] = Int64GetDatum(retried);
	if (error)
		values[5] = CStringGetTextDatum(error);
	else
		nulls[5] = 'n';
	values[6] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (SPI_execute_plan(es_prepared_plan(&plan, state_sql, 7, argtypes),
						 values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "relay sink state statement failed");
}

static void
named_close(void *state)
{
	pfree(state);
}

/*
 * Messages larger than this come without their text; the sink reads them
 * itself, one at a time.
 */
const EsSinkMethods es_sink_named = {
	.scheme = "",
	.max_inline_bytes = 1024 * 1024,
	.open = named_open,
	.publish = named_publish,
	.confirm = named_confirm,
	.close = named_close
};

/*
 * The headers of a message as name/value pairs: string values as they are,
 * other values as JSON text, a JSON null as NULL.  Returns how many.
 */
int
es_sink_headers(const char *headers_json, EsSinkHeader **headers)
{
	Jsonb	   *jb;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			size;
	char	   *name = NULL;

	*headers = NULL;
	if (headers_json == NULL)
		return 0;
	jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(headers_json)));
	if (!JB_ROOT_IS_OBJECT(jb))
		return 0;
	size = JB_ROOT_COUNT(jb);
	if (size == 0)
		return 0;
	*headers = palloc(sizeof(EsSinkHeader) * size);
	it = JsonbIteratorInit(&jb->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			name = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && name != NULL && n < size)
		{
			char	   *value = NULL;

			switch (v.type)
			{
				case jbvString:
					value = pnstrdup(v.val.string.val, v.val.string.len);
					break;
				case jbvNumeric:
					value = DatumGetCString(DirectFunctionCall1(numeric_out,
																NumericGetDatum(v.val.numeric)));
					break;
				case jbvBool:
					value = pstrdup(v.val.boolean ? "true" : "false");
					break;
				case jbvBinary:
					value = JsonbToCString(NULL, v.val.binary.data, v.val.binary.len);
					break;
				default:
					value = NULL;
					break;
			}
			(*headers)[n].name = name;
			(*headers)[n].value = value;
			n++;
			name = NULL;
		}
	}
	return n;
}

/* Every sink with a URI of its own, by scheme. */
static const EsSinkMethods *const sinks[] = {
	&es_sink_notify
};

bool
es_sink_key_failed(EsSinkMessage *messages, int upto, const char *key)
{
	if (key == NULL)
		return false;
	for (int i = 0; i < upto; i++)
	{
		if (messages[i].status == ES_SINK_FAILED && messages[i].key != NULL &&
			strcmp(messages[i].key, key) == 0)
			return true;
	}
	return false;
}

const EsSinkMethods *
es_sink_lookup(const char *uri, const char **target)
{
	const char *colon = strchr(uri, ':');

	/* No scheme: the name of a sink made by relay_sink_create. */
	if (colon == NULL)
	{
		*target = uri;
		return &es_sink_named;
	}
	for (size_t i = 0; i < lengthof(sinks); i++)
	{
		if (strlen(sinks[i]->scheme) == (size_t) (colon - uri) &&
			pg_strncasecmp(uri, sinks[i]->scheme, colon - uri) == 0)
		{
			*target = colon + 1;
			return sinks[i];
		}
	}
	return NULL;
}
