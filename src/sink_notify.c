/*-------------------------------------------------------------------------
 *
 * sink_notify.c
 *	  The notify: sink: outbox messages published with NOTIFY.
 *
 * A message becomes one notification on the route's channel, its payload
 * the JSON object {"id", "key", "topic", "headers", "payload"}.  NOTIFY is
 * delivered when the relay's transaction commits, the same transaction
 * that deletes the message from the outbox: a message is published and
 * acknowledged, or neither.  So confirm() has nothing to wait for.
 *
 * A message whose notification would not fit NOTIFY's 8000 bytes is
 * copied to event_store.relay_parked (row to row, inside the server: the
 * worker never holds its text) and announced by a reference
 * {"id", "key", "topic", "reference": true} that relay_fetch() resolves.
 * Each copy runs in a subtransaction: one that fails fails its message
 * alone, and the later messages of its key stay pending.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "event_store.h"
#include "sink.h"

/* Longest NOTIFY payload, one less than PostgreSQL's limit (it counts the NUL). */
#define NOTIFY_PAYLOAD_LIMIT 7999

typedef struct NotifySink
{
	char	   *channel;
	List	   *failed_keys;	/* keys with a failed message in this batch */
} NotifySink;

static const char *const park_sql =
"INSERT INTO event_store.relay_parked (id, topic, key, payload, headers, created_at, parked_at)"
" SELECT o.id, o.topic, o.key, o.payload, o.headers, o.created_at, $2"
" FROM event_store.outbox AS o WHERE o.id = $1";

static void *
notify_open(const char *target)
{
	NotifySink *sink = palloc0(sizeof(NotifySink));

	sink->channel = pstrdup(target);
	return sink;
}

static bool
key_failed(NotifySink *sink, const char *key)
{
	ListCell   *lc;

	if (key == NULL)
		return false;
	foreach(lc, sink->failed_keys)
	{
		if (strcmp((char *) lfirst(lc), key) == 0)
			return true;
	}
	return false;
}

static void
append_json_string_or_null(StringInfo buf, const char *value)
{
	if (value == NULL)
		appendStringInfoString(buf, "null");
	else
		escape_json(buf, value);
}

/*
 * The notification: the keys in the order jsonb prints them (shorter keys
 * first), as earlier versions sent them.
 */
static void
append_message_head(StringInfo buf, const EsSinkMessage *m)
{
	appendStringInfo(buf, "{\"id\": " INT64_FORMAT ", \"key\": ", m->id);
	append_json_string_or_null(buf, m->key);
	appendStringInfoString(buf, ", \"topic\": ");
	escape_json(buf, m->topic);
}

static char *
message_text(const EsSinkMessage *m)
{
	StringInfoData buf;

	initStringInfo(&buf);
	append_message_head(&buf, m);
	appendStringInfo(&buf, ", \"headers\": %s, \"payload\": %s}",
					 m->headers ? m->headers : "null", m->payload);
	return buf.data;
}

/* A message too large to go inline: its id, key and topic, for relay_fetch. */
static char *
reference_text(const EsSinkMessage *m)
{
	StringInfoData buf;

	initStringInfo(&buf);
	append_message_head(&buf, m);
	appendStringInfoString(&buf, ", \"reference\": true}");
	return buf.data;
}

/*
 * Copy a message to relay_parked in a subtransaction; on failure, the
 * error text (in the caller's memory context), else NULL.
 */
static char *
park(int64 id)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *volatile error = NULL;	/* set in PG_CATCH */

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		Oid			argtypes[2] = {INT8OID, TIMESTAMPTZOID};
		Datum		values[2];

		values[0] = Int64GetDatum(id);
		values[1] = TimestampTzGetDatum(GetCurrentTimestamp());
		es_spi_execute(es_prepared_plan(&plan, park_sql, 2, argtypes),
					   values, false, SPI_OK_INSERT, "relay parking");
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		error = psprintf("could not publish a message too large for NOTIFY: %s",
						 edata->message);
		FreeErrorData(edata);
	}
	PG_END_TRY();
	return error;
}

static void
notify_publish(void *state, EsSinkMessage *messages, int count)
{
	NotifySink *sink = state;

	for (int i = 0; i < count; i++)
	{
		EsSinkMessage *m = &messages[i];
		char	   *text = NULL;

		CHECK_FOR_INTERRUPTS();
		if (key_failed(sink, m->key))
			continue;			/* stays pending, behind its key */
		if (m->payload != NULL)
		{
			text = message_text(m);
			if (strlen(text) > NOTIFY_PAYLOAD_LIMIT)
			{
				pfree(text);
				text = NULL;
			}
		}
		if (text == NULL)
		{
			char	   *error = park(m->id);

			if (error != NULL)
			{
				m->status = ES_SINK_FAILED;
				m->error = error;
				if (m->key != NULL)
					sink->failed_keys = lappend(sink->failed_keys, pstrdup(m->key));
				continue;
			}
			text = reference_text(m);
		}
		Async_Notify(sink->channel, text);
		pfree(text);
		m->status = ES_SINK_CONFIRMED;
	}
}

/* NOTIFY is delivered at commit, with the acknowledgement: nothing to wait for. */
static void
notify_confirm(void *state, EsSinkMessage *messages, int count, int timeout_ms)
{
}

static void
notify_close(void *state)
{
	NotifySink *sink = state;

	list_free_deep(sink->failed_keys);
	pfree(sink->channel);
	pfree(sink);
}

const EsSinkMethods es_sink_notify = {
	.scheme = "notify",
	.max_inline_bytes = 4 * NOTIFY_PAYLOAD_LIMIT,
	.open = notify_open,
	.publish = notify_publish,
	.confirm = notify_confirm,
	.close = notify_close
};
