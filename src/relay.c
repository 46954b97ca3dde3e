/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The relay worker of one database: it publishes outbox messages to
 *	  their sinks, and runs the feed announcer.
 *
 * A worker is started by the launcher (launcher.c) when its database has
 * work, and leaves when it has had none for event_store.relay_idle_timeout
 * (sooner when other databases wait for a worker).  A cycle runs, with the
 * privileges of event_store.relay_role, one transaction per step, so that
 * a step that fails (logged with the database's name, recorded in
 * relay_workers) stops nothing else:
 *	- for each route (event_store.relay_routes) that is not paused, a batch
 *	  of the topic: lock (SKIP LOCKED) the first event_store.relay_batch_size
 *	  messages that are eligible now, in id order; a keyed message is
 *	  eligible when no earlier message of its key is left in the outbox, and
 *	  the check comes before the limit, so blocked messages never hide
 *	  eligible ones.  The batch goes to the route's sink (sink.h); what the
 *	  sink confirmed is deleted, what failed goes through the topic's
 *	  backoff (no sooner than the sink's Retry-After), and after its
 *	  max_attempts to the dead letters with its error, and what the sink
 *	  rejected goes there at once;
 *	- the feed announcer (feed_announce.c) tells LISTENers when the safe
 *	  head of the feed moved.
 * Relay transactions commit asynchronously: after a crash, a batch whose
 * commit was not yet flushed is sent again (at-least-once).
 *
 * Every transaction of the worker first takes the extension's lock (the
 * one DROP EXTENSION, and ALTER EXTENSION through the utility hook, take
 * before anything else), then checks the extension is still the one it
 * serves: so the worker never holds a table that DROP or ALTER EXTENSION
 * wants while waiting for another.  What the worker keeps in shared memory
 * (the announced head, counters) belongs to one instance of the extension
 * and starts afresh after DROP and CREATE EXTENSION.
 *
 * Commits wake the worker (wakeup.c): it clears the database's pending
 * flag before each cycle, and leaves only if it is still clear, under the
 * lock the committers read the worker under.  Its state in shared memory
 * is named by relay_state.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/detoast.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type_d.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "event_store.h"
#include "guc.h"
#include "sink.h"

/* How often oversized messages past their time to live are removed. */
#define PARKED_CLEANUP_INTERVAL_MS 60000

/* How long a busy worker keeps its database while others wait. */
#define RELAY_SLICE_MS 1000

/* How long a sink may take to confirm a batch. */
#define SINK_CONFIRM_TIMEOUT_MS 30000

/* This worker: its slot, its database's entry, the extension it serves. */
static int	my_index = -1;
static EsRelayWorker *my_worker = NULL;
static EsRelayDatabase *my_db = NULL;
static Oid	my_dboid = InvalidOid;
static char *my_database_name = NULL;
static Oid	my_extension_oid = InvalidOid;

static TimestampTz last_parked_cleanup = 0;

/* The earliest retry of a message that failed (0: none): wake up for it. */
static TimestampTz retry_at = 0;
static TimestampTz last_error_logged_at = 0;
static char last_error_logged[256];

/* Role and security context saved by begin_step. */
static Oid	saved_user;
static int	saved_context;

/*
 * Lock the first $3 eligible messages of topic $1 ($2 now) in id order.  A
 * keyed message is eligible when every earlier message of its key is
 * available now and in the batch.  Before the limit, the first message of
 * the key (one probe of the (topic, key, id) index) must be available: so
 * messages blocked behind a delayed, backing-off or leased message of
 * their key never hide eligible ones.  The probe is a lateral join rather
 * than a subquery of the WHERE clause, so that the planner can remember
 * each key's answer (Memoize) instead of probing again for every message
 * of the key: the probes were most of the cost of a batch.  After the
 * limit, the keys whose messages up to the last one taken are all in the
 * batch (one count per key) keep them; for the others (a delayed message
 * in the middle of the key, one locked by a claimer) each message is
 * checked against the batch.  The probes of the (topic, key, id) index
 * start at the topic's first message: the entries of messages relayed
 * before and not yet vacuumed lie below it and are never walked again.
 * (It scans the (topic, id + 0) index: see plans.c.)
 * The route is looked at again in the batch's snapshot: a cycle that read
 * the routes before a pause or an unroute committed sends nothing committed
 * after it.
 */
static const char *const select_sql =
"WITH first AS MATERIALIZED ("
"  SELECT f.id FROM event_store.outbox AS f WHERE f.topic = $1"
"  ORDER BY f.topic, f.id + 0 LIMIT 1"
"), candidates AS ("
"  SELECT o.id, o.key, o.payload, o.headers, o.created_at"
"  FROM event_store.outbox AS o"
"  LEFT JOIN LATERAL ("
"    SELECT head.available_at <= $2 AS ready FROM event_store.outbox AS head"
"    WHERE head.topic = $1 AND head.key = o.key"
"      AND head.id >= (SELECT first.id FROM first)"
"    ORDER BY head.topic, head.key, head.id LIMIT 1) AS h ON true"
"  WHERE o.topic = $1 AND o.available_at <= $2"
"    AND EXISTS (SELECT FROM event_store.relay_routes AS r"
"                WHERE r.topic = $1 AND NOT r.paused)"
"    AND (o.key IS NULL OR h.ready)"
"  ORDER BY o.topic, o.id + 0 LIMIT $3"
"  FOR UPDATE OF o SKIP LOCKED"
"), keys AS ("
"  SELECT c.key, max(c.id) AS last, count(*) AS n FROM candidates AS c"
"  WHERE c.key IS NOT NULL GROUP BY c.key"
"), complete AS ("
"  SELECT k.key FROM keys AS k"
"  WHERE (SELECT count(*) FROM event_store.outbox AS e"
"         WHERE e.topic = $1 AND e.key = k.key"
"           AND e.id >= (SELECT first.id FROM first) AND e.id <= k.last) = k.n"
") SELECT c.id, c.key, c.payload, c.headers, c.created_at,"
"    (SELECT count(*) FROM candidates) AS locked"
"  FROM candidates AS c"
"  WHERE c.key IS NULL OR c.key IN (SELECT m.key FROM complete AS m)"
"    OR NOT EXISTS ("
"      SELECT FROM event_store.outbox AS earlier"
"      WHERE earlier.topic = $1 AND earlier.key = c.key AND earlier.id < c.id"
"        AND earlier.id >= (SELECT first.id FROM first)"
"        AND earlier.id NOT IN (SELECT d.id FROM candidates AS d))"
"  ORDER BY c.id";

static const char *const delete_sql =
"DELETE FROM event_store.outbox AS o WHERE o.id = ANY ($1)";

/*
 * Messages $1 failed with errors $2 ($3 now): back to the queue after the
 * topic's backoff (outbox_topic_settings, defaults included; at least $4
 * milliseconds, the sink's Retry-After), or to the dead letters after its
 * last attempt, or at once when the sink rejected them ($5).  Returns how
 * many, and when the first retry comes due.
 */
static const char *const fail_sql =
"WITH failed AS ("
"  SELECT f.id, f.error, f.retry_after, f.rejected"
"  FROM unnest($1::bigint[], $2::text[], $4::bigint[], $5::boolean[])"
"    AS f(id, error, retry_after, rejected)"
"), policy AS ("
"  SELECT o.id, f.error, f.rejected OR o.attempts + 1 >= s.max_attempts AS exhausted,"
"         greatest(least(s.backoff_max, s.backoff_base * power(2, least(o.attempts, 40))),"
"                  f.retry_after * interval '1 millisecond') AS backoff"
"  FROM failed AS f JOIN event_store.outbox AS o ON o.id = f.id"
"  CROSS JOIN LATERAL event_store.outbox_topic_settings(o.topic) AS s"
"), exhausted AS ("
"  DELETE FROM event_store.outbox AS o USING policy AS p"
"  WHERE o.id = p.id AND p.exhausted"
"  RETURNING o.id, o.topic, o.key, o.payload, o.headers, o.attempts, o.created_at, p.error"
"), buried AS ("
"  INSERT INTO event_store.outbox_dead_letters"
"    (id, topic, key, payload, headers, attempts, created_at, last_error, died_at)"
"  SELECT id, topic, key, payload, headers, attempts + 1, created_at, error, $3"
"  FROM exhausted RETURNING 1"
"), retried AS ("
"  UPDATE event_store.outbox AS o"
"  SET attempts = o.attempts + 1, available_at = $3 + p.backoff, last_error = p.error"
"  FROM policy AS p WHERE o.id = p.id AND NOT p.exhausted"
"  RETURNING o.available_at"
") SELECT (SELECT count(*) FROM buried) + (SELECT count(*) FROM retried),"
"    (SELECT min(r.available_at) FROM retried AS r)";

static const char *const routes_sql =
"SELECT topic, sink FROM event_store.relay_routes WHERE NOT paused ORDER BY topic";

static const char *const parked_cleanup_sql =
"DELETE FROM event_store.relay_parked WHERE parked_at < $1";

/* When the next delayed or backed-off message of a routed topic comes due. */
static const char *const next_due_sql =
"SELECT min(o.available_at) FROM event_store.outbox AS o"
" JOIN event_store.relay_routes AS r ON r.topic = o.topic AND NOT r.paused"
" WHERE o.available_at > $1";

/* A new instance of the extension: forget what the last one had. */
static void
reset_instance(EsRelayDatabase *db, Oid extension_oid)
{
	db->extension_oid = extension_oid;
	db->announced_known = false;
	db->announced_head = 0;
	db->has_routes = true;
	db->routed_topics.all = true;
	db->has_subscriptions = true;
	db->last_batch_at = 0;
	db->last_batch_size = 0;
	db->messages_relayed = 0;
	db->messages_failed = 0;
	db->batches = 0;
	db->feed_notifications = 0;
	db->last_error_at = 0;
	db->last_error[0] = '\0';
	/* A new instance has nothing to scavenge yet: one interval from now. */
	db->scavenged_at = GetCurrentTimestamp();
}

static void
relay_worker_exit(int code, Datum arg)
{
	if (my_worker == NULL)
		return;
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	if (my_db != NULL && my_db->dboid == my_dboid && my_db->worker == my_index)
	{
		my_db->worker = -1;
		my_db->exited_at = GetCurrentTimestamp();
		my_db->failed = (code != 0);
		my_db->state = code != 0 ? ES_RELAY_FAILED : ES_RELAY_STOPPED;
	}
	my_worker->pid = 0;
	my_worker->procno = -1;
	my_worker->exited = true;
	LWLockRelease(es_shared->relay_lock);
	/* The launcher frees the slot and starts whatever waits. */
	es_wake_launcher();
}

/* Leave on purpose, quietly or with a LOG line naming the database. */
static void
leave(const char *why, bool log)
{
	if (log)
		ereport(LOG,
				(errmsg("event_store relay worker for database \"%s\" exiting: %s",
						my_database_name ? my_database_name : "?", why)));
	else
		ereport(DEBUG1,
				(errmsg("event_store relay worker for database \"%s\" exiting: %s",
						my_database_name ? my_database_name : "?", why)));
	proc_exit(0);
}

/* The database is being dropped, renamed, moved or copied. */
bool
es_relay_stop_requested(void)
{
	bool		stop;

	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	stop = (my_db == NULL || my_db->stop_requested || my_db->dboid != my_dboid ||
			my_db->worker != my_index);
	LWLockRelease(es_shared->relay_lock);
	return stop;
}

/* The extension was dropped: its entry goes with it, and the worker. */
static void
leave_without_extension(void)
{
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	if (my_db != NULL && my_db->dboid == my_dboid && my_db->worker == my_index)
	{
		my_db->dboid = InvalidOid;
		my_db->worker = -1;
	}
	my_db = NULL;
	my_worker->no_extension = true;
	LWLockRelease(es_shared->relay_lock);
	leave("extension event_store is not installed", false);
}

/*
 * Start a transaction of the worker: the extension's lock first, then a
 * snapshot, SPI and the relay role.  Returns false (transaction ended)
 * when the extension is gone or is another instance than the one served.
 */
static bool
begin_step(const char *activity)
{
	Oid			extoid;
	Oid			role;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, activity);

	extoid = get_extension_oid(ES_EXTENSION_NAME, true);
	if (OidIsValid(extoid))
	{
		/* Wait here, holding nothing, if DROP or ALTER EXTENSION runs. */
		LockDatabaseObject(ExtensionRelationId, extoid, 0, AccessShareLock);
		/* Dropped meanwhile (InvalidOid), or dropped and created again. */
		extoid = get_extension_oid(ES_EXTENSION_NAME, true);
	}
	if (!OidIsValid(extoid) || extoid != my_extension_oid)
	{
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
		my_extension_oid = extoid;
		return false;
	}

	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	role = get_role_oid(es_relay_role, true);
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("event_store.relay_role \"%s\" does not exist", es_relay_role)));
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(role, saved_context | SECURITY_LOCAL_USERID_CHANGE);
	return true;
}

static void
end_step(void)
{
	SetUserIdAndSecContext(saved_user, saved_context);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * A step failed: roll it back, log it (the same error at most once a
 * minute) and record it.  what names the step (a topic, the feed).
 */
static void
step_failed(MemoryContext context, const char *what)
{
	ErrorData  *edata;
	char		message[256];

	MemoryContextSwitchTo(context);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	pgstat_report_activity(STATE_IDLE, NULL);

	snprintf(message, sizeof(message), "%s: %s", what, edata->message);
	if (strcmp(last_error_logged, message) != 0 ||
		TimestampDifferenceExceeds(last_error_logged_at, GetCurrentTimestamp(), 60000))
	{
		ereport(LOG,
				(errmsg("event_store relay worker for database \"%s\" failed at %s: %s",
						my_database_name, what, edata->message)));
		strlcpy(last_error_logged, message, sizeof(last_error_logged));
		last_error_logged_at = GetCurrentTimestamp();
	}
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	if (my_db != NULL)
	{
		strlcpy(my_db->last_error, message, sizeof(my_db->last_error));
		my_db->last_error_at = GetCurrentTimestamp();
		my_db->state = ES_RELAY_ERROR;
	}
	LWLockRelease(es_shared->relay_lock);
	FreeErrorData(edata);
}

/* A datum as JSON text, or NULL. */
static const char *
jsonb_text(Datum value, Size size)
{
	Jsonb	   *jsonb = DatumGetJsonbP(value);

	return JsonbToCString(NULL, &jsonb->root, size);
}

/*
 * Relay one batch of a topic to its sink.  Returns how many messages left
 * the outbox (published, or dead); *full when more may be waiting;
 * *failed counts the failures.
 */
static int
relay_topic(const char *topic, const char *uri, TimestampTz now,
			bool *full, int *failed)
{
	static SPIPlanPtr select_plan = NULL;
	static SPIPlanPtr delete_plan = NULL;
	static SPIPlanPtr fail_plan = NULL;
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, INT4OID};
	Datum		values[3];
	const EsSinkMethods *sink;
	const char *target;
	SPITupleTable *tuptable;
	uint64		nrows;
	EsSinkMessage *messages;
	int			count = 0;
	Size		budget = ES_RELAY_BATCH_BYTES;
	void	   *state;
	Datum	   *done_ids;
	Datum	   *failed_ids;
	Datum	   *failed_errors;
	Datum	   *failed_retry_after;
	Datum	   *failed_rejected;
	int			ndone = 0;
	int			nfailed = 0;
	int			left = 0;

	*full = false;
	*failed = 0;
	sink = es_sink_lookup(uri, &target);
	if (sink == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("no sink for route \"%s\"", uri)));

	values[0] = CStringGetTextDatum(topic);
	values[1] = TimestampTzGetDatum(now);
	values[2] = Int32GetDatum(es_relay_batch_size);
	es_spi_execute(es_prepared_plan(&select_plan, select_sql, 3, argtypes),
				   values, false, SPI_OK_SELECT, "relay batch");
	tuptable = SPI_tuptable;
	nrows = SPI_processed;
	if (nrows == 0)
		return 0;
	{
		bool		isnull;

		*full = DatumGetInt64(SPI_getbinval(tuptable->vals[0], tuptable->tupdesc,
											6, &isnull)) >= es_relay_batch_size;
	}

	/*
	 * Load the messages' text within the budget; a message over it ends the
	 * batch there (the rest wait for the next one, in order).
	 */
	messages = palloc0(sizeof(EsSinkMessage) * nrows);
	for (uint64 i = 0; i < nrows; i++)
	{
		HeapTuple	tuple = tuptable->vals[i];
		TupleDesc	desc = tuptable->tupdesc;
		EsSinkMessage *m = &messages[count];
		bool		isnull;
		bool		headers_null;
		Datum		payload;
		Datum		headers;
		Size		size;

		payload = SPI_getbinval(tuple, desc, 3, &isnull);
		headers = SPI_getbinval(tuple, desc, 4, &headers_null);
		size = toast_raw_datum_size(payload) +
			(headers_null ? 0 : toast_raw_datum_size(headers));
		if (size <= sink->max_inline_bytes)
		{
			if (size > budget)
			{
				*full = true;
				break;
			}
			budget -= size;
			m->payload = jsonb_text(payload, size);
			m->headers = headers_null ? NULL : jsonb_text(headers, size);
		}
		m->id = DatumGetInt64(SPI_getbinval(tuple, desc, 1, &isnull));
		m->key = SPI_getvalue(tuple, desc, 2);
		m->topic = topic;
		m->size = size;
		m->created_at = DatumGetTimestampTz(SPI_getbinval(tuple, desc, 5, &isnull));
		m->status = ES_SINK_PENDING;
		count++;
	}

	state = sink->open(target);
	sink->publish(state, messages, count);
	sink->confirm(state, messages, count, SINK_CONFIRM_TIMEOUT_MS);
	sink->close(state);

	/*
	 * Messages left pending behind a failed one of their key may be eligible
	 * now (it went to the dead letters): look again at once.
	 */
	for (int i = 0; i < count; i++)
	{
		if (messages[i].status == ES_SINK_PENDING && count > 1)
			*full = true;
	}

	done_ids = palloc(sizeof(Datum) * count);
	failed_ids = palloc(sizeof(Datum) * count);
	failed_errors = palloc(sizeof(Datum) * count);
	failed_retry_after = palloc(sizeof(Datum) * count);
	failed_rejected = palloc(sizeof(Datum) * count);
	for (int i = 0; i < count; i++)
	{
		if (messages[i].status == ES_SINK_CONFIRMED)
			done_ids[ndone++] = Int64GetDatum(messages[i].id);
		else if (messages[i].status == ES_SINK_FAILED ||
				 messages[i].status == ES_SINK_REJECTED)
		{
			failed_ids[nfailed] = Int64GetDatum(messages[i].id);
			failed_errors[nfailed] = CStringGetTextDatum(messages[i].error ?
														 messages[i].error :
														 "the sink failed");
			failed_retry_after[nfailed] = Int64GetDatum(Max(messages[i].retry_after_ms, 0));
			failed_rejected[nfailed] = BoolGetDatum(messages[i].status == ES_SINK_REJECTED);
			nfailed++;
		}
	}
	if (ndone > 0)
	{
		Oid			types[1] = {INT8ARRAYOID};
		Datum		args[1];

		args[0] = PointerGetDatum(construct_array(done_ids, ndone, INT8OID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		es_spi_execute(es_prepared_plan(&delete_plan, delete_sql, 1, types),
					   args, false, SPI_OK_DELETE, "relay acknowledgement");
		left += (int) SPI_processed;
	}
	if (nfailed > 0)
	{
		Oid			types[5] = {INT8ARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID,
		INT8ARRAYOID, BOOLARRAYOID};
		Datum		args[5];

		args[0] = PointerGetDatum(construct_array(failed_ids, nfailed, INT8OID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[1] = PointerGetDatum(construct_array(failed_errors, nfailed, TEXTOID, -1,
												  false, TYPALIGN_INT));
		args[2] = TimestampTzGetDatum(now);
		args[3] = PointerGetDatum(construct_array(failed_retry_after, nfailed, INT8OID, 8,
												  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[4] = PointerGetDatum(construct_array(failed_rejected, nfailed, BOOLOID, 1,
												  true, TYPALIGN_CHAR));
		es_spi_execute(es_prepared_plan(&fail_plan, fail_sql, 5, types),
					   args, false, SPI_OK_SELECT, "relay failure");
		{
			bool		isnull;
			Datum		first = SPI_getbinval(SPI_tuptable->vals[0],
											  SPI_tuptable->tupdesc, 2, &isnull);

			if (!isnull && (retry_at == 0 || DatumGetTimestampTz(first) < retry_at))
				retry_at = DatumGetTimestampTz(first);
		}
		*failed = nfailed;
		LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
		for (int i = 0; i < count; i++)
		{
			if (messages[i].status == ES_SINK_FAILED ||
				messages[i].status == ES_SINK_REJECTED)
			{
				snprintf(my_db->last_error, sizeof(my_db->last_error),
						 "message " INT64_FORMAT " of topic \"%s\": %s",
						 messages[i].id, topic, messages[i].error);
				break;
			}
		}
		my_db->last_error_at = GetCurrentTimestamp();
		LWLockRelease(es_shared->relay_lock);
	}
	return left;
}

static void
cleanup_parked(TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1];

	es_prepared_plan(&plan, parked_cleanup_sql, 1, argtypes);
	values[0] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(now,
																-(int64) es_relay_reference_ttl * 1000));
	es_spi_execute(plan, values, false, SPI_OK_DELETE, "relay cleanup");
}

typedef struct RelayRoute
{
	char	   *topic;
	char	   *sink;
} RelayRoute;

/*
 * Remember the routed topics in the database's entry, for committing
 * senders (wakeup.c); caller holds relay_lock exclusively.
 */
static void
remember_routed_topics(List *routes)
{
	ListCell   *lc;

	my_db->routed_topics.count = 0;
	my_db->routed_topics.all = false;
	foreach(lc, routes)
	{
		RelayRoute *route = lfirst(lc);

		es_topic_set_add(&my_db->routed_topics,
						 es_topic_hash(route->topic, strlen(route->topic)));
	}
}

/*
 * One cycle.  Returns whether it did anything; *more when a batch was full
 * (more may be waiting).
 */
static bool
relay_cycle(MemoryContext cycle_context, bool *more)
{
	static SPIPlanPtr routes_plan = NULL;
	List	   *routes = NIL;
	ListCell   *lc;
	uint32		generation;
	/* What the steps found: set inside PG_TRY, read after it. */
	volatile int moved = 0;
	volatile int failed = 0;
	volatile int notified = 0;
	volatile bool has_subscriptions = true;
	volatile bool feed_done = false;
	volatile int64 new_head = 0;
	TimestampTz now = GetCurrentTimestamp();
	volatile bool routes_read = false;

	*more = false;

	/* Retries due by now are this cycle's; it notes the next ones. */
	if (retry_at != 0 && retry_at <= GetCurrentTimestamp())
		retry_at = 0;

	/* Commits from now on set it again: none is missed. */
	pg_atomic_write_u32(&my_db->pending, 0);
	pg_memory_barrier();
	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	generation = my_db->config_generation;
	LWLockRelease(es_shared->relay_lock);

	/* The routes. */
	PG_TRY();
	{
		if (begin_step("event_store relay: routes"))
		{
			now = GetCurrentTimestamp();
			es_spi_execute(es_prepared_plan(&routes_plan, routes_sql, 0, NULL),
						   NULL, true, SPI_OK_SELECT, "relay routes");
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				RelayRoute *route;
				MemoryContext old = MemoryContextSwitchTo(cycle_context);

				route = palloc(sizeof(RelayRoute));
				route->topic = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
				route->sink = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
				routes = lappend(routes, route);
				MemoryContextSwitchTo(old);
			}
			if (TimestampDifferenceExceeds(last_parked_cleanup, now,
										   PARKED_CLEANUP_INTERVAL_MS))
			{
				cleanup_parked(now);
				last_parked_cleanup = now;
			}
			end_step();
			routes_read = true;
		}
	}
	PG_CATCH();
	{
		step_failed(cycle_context, "relay routes");
	}
	PG_END_TRY();
	if (!routes_read)
		return false;

	/* Each topic in its own transaction: a failure stops nothing else. */
	foreach(lc, routes)
	{
		RelayRoute *route = lfirst(lc);

		if (es_relay_stop_requested())
			return false;
		PG_TRY();
		{
			bool		full;
			int			n = 0;
			int			nfailed = 0;

			if (begin_step("event_store relay: publishing"))
			{
				n = relay_topic(route->topic, route->sink, GetCurrentTimestamp(),
								&full, &nfailed);
				end_step();
				if (full)
					*more = true;
			}
			moved += n;
			failed += nfailed;
		}
		PG_CATCH();
		{
			step_failed(cycle_context, psprintf("topic \"%s\"", route->topic));
		}
		PG_END_TRY();
	}

	/* The feed. */
	PG_TRY();
	{
		if (begin_step("event_store relay: feed"))
		{
			bool		subscriptions = true;
			int64		head = 0;
			bool		known;
			int64		announced;

			LWLockAcquire(es_shared->relay_lock, LW_SHARED);
			known = my_db->announced_known;
			announced = my_db->announced_head;
			LWLockRelease(es_shared->relay_lock);
			notified = es_announce_feed(known, announced, &subscriptions, &head);
			has_subscriptions = subscriptions;
			new_head = head;
			end_step();
			feed_done = true;
		}
	}
	PG_CATCH();
	{
		step_failed(cycle_context, "feed notifications");
	}
	PG_END_TRY();

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	if (moved > 0)
	{
		my_db->last_batch_at = now;
		my_db->last_batch_size = moved;
		my_db->messages_relayed += moved;
		my_db->batches++;
	}
	my_db->messages_failed += failed;
	my_db->feed_notifications += notified;
	if (feed_done && (!my_db->announced_known || new_head > my_db->announced_head))
	{
		my_db->announced_head = new_head;
		my_db->announced_known = true;
	}
	/* What this cycle saw, unless routes or subscriptions changed since. */
	if (my_db->config_generation == generation)
	{
		my_db->has_routes = (routes != NIL);
		my_db->has_subscriptions = has_subscriptions;
		remember_routed_topics(routes);
	}
	if (my_db->state != ES_RELAY_ERROR || moved > 0 || notified > 0)
		my_db->state = ES_RELAY_RUNNING;
	LWLockRelease(es_shared->relay_lock);

	return moved > 0 || failed > 0 || notified > 0;
}

/*
 * When the database is to be scavenged next, or 0 for never.
 */
static TimestampTz
scavenge_due(void)
{
	TimestampTz done;

	if (es_scavenge_interval <= 0)
		return 0;
	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	done = my_db->scavenged_at;
	LWLockRelease(es_shared->relay_lock);
	return TimestampTzPlusMilliseconds(done, (int64) es_scavenge_interval * 1000);
}

/*
 * Scavenge the database when it is due: event_store.scavenge() of at most
 * event_store.scavenge_batch events per transaction, until one removes
 * less.  Relaying goes first: a commit that asks for the worker ends the
 * scavenge, which goes on at the next cycle.  The scavenge runs as the
 * superuser the worker connected as, not as the relay role, which may only
 * relay.
 */
static void
scavenge_if_due(void)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext outer = CurrentMemoryContext;
	TimestampTz due = scavenge_due();

	while (due != 0 && due <= GetCurrentTimestamp())
	{
		volatile int64 removed = -1;

		CHECK_FOR_INTERRUPTS();
		if (pg_atomic_read_u32(&my_db->pending) != 0 || es_relay_stop_requested())
			return;
		PG_TRY();
		{
			if (begin_step("event_store relay: scavenge"))
			{
				Oid			argtypes[1] = {INT8OID};
				Datum		values[1];
				bool		isnull;

				SetUserIdAndSecContext(saved_user, saved_context);
				values[0] = Int64GetDatum(es_scavenge_batch);
				if (SPI_execute_plan(es_prepared_plan(&plan,
													  "SELECT event_store.scavenge($1)",
													  1, argtypes),
									 values, NULL, false, 0) != SPI_OK_SELECT)
					elog(ERROR, "scavenge failed");
				removed = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc,
													  1, &isnull));
				end_step();
			}
		}
		PG_CATCH();
		{
			step_failed(outer, "scavenge");
		}
		PG_END_TRY();

		if (removed >= es_scavenge_batch)
			continue;
		/* Done, failed, or the extension is gone: not again before due. */
		LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
		my_db->scavenged_at = GetCurrentTimestamp();
		LWLockRelease(es_shared->relay_lock);
		return;
	}
}

/*
 * When the next delayed message of a routed topic comes due, or 0.
 */
static TimestampTz
next_due(void)
{
	static SPIPlanPtr plan = NULL;
	MemoryContext outer = CurrentMemoryContext;
	volatile TimestampTz due = 0;
	volatile bool ok = false;

	PG_TRY();
	{
		if (begin_step("event_store relay: next due"))
		{
			Oid			argtypes[1] = {TIMESTAMPTZOID};
			Datum		values[1];
			bool		isnull;
			Datum		value;

			values[0] = TimestampTzGetDatum(GetCurrentTimestamp());
			es_spi_execute(es_prepared_plan(&plan, next_due_sql, 1, argtypes),
						   values, true, SPI_OK_SELECT, "relay next due");
			value = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			if (!isnull)
				due = DatumGetTimestampTz(value);
			end_step();
			ok = true;
		}
	}
	PG_CATCH();
	{
		/* Not the error's context: the abort of the step frees that one. */
		step_failed(outer, "next due message");
	}
	PG_END_TRY();
	/* Could not tell: look again after the naptime. */
	if (!ok)
		due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), es_relay_naptime);
	return due;
}

/*
 * Leave the database if no commit asked for the worker since its last
 * cycle (under the lock committers read the worker under: a commit either
 * sees the worker still here and sets its latch, or sees none and wakes
 * the launcher).  Returns only if it stays.
 */
static void
leave_if_idle(const char *why)
{
	TimestampTz due = 0;
	bool		has_routes;

	TimestampTz scavenge = scavenge_due();

	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	has_routes = my_db->has_routes;
	LWLockRelease(es_shared->relay_lock);
	if (has_routes)
		due = next_due();
	/* Come back for the scavenger too. */
	if (scavenge != 0 && (due == 0 || scavenge < due))
		due = scavenge;

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	if (pg_atomic_read_u32(&my_db->pending) != 0 && !my_db->stop_requested)
	{
		LWLockRelease(es_shared->relay_lock);
		return;
	}
	my_db->worker = -1;
	my_db->next_due = due;
	my_db->exited_at = GetCurrentTimestamp();
	my_db->failed = false;
	my_db->state = ES_RELAY_IDLE;
	my_db = NULL;
	LWLockRelease(es_shared->relay_lock);
	leave(why, false);
}

/*
 * Attach to the database's entry after connecting: make it when the
 * launcher discovered the database, start afresh for a new instance of the
 * extension.  Leaves when the database is not to be served.
 */
static void
attach(void)
{
	Oid			extoid;

	StartTransactionCommand();
	my_database_name = MemoryContextStrdup(TopMemoryContext,
										   get_database_name(MyDatabaseId));
	extoid = get_extension_oid(ES_EXTENSION_NAME, true);
	CommitTransactionCommand();

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	my_db = es_relay_database(my_dboid);
	if (my_db != NULL && my_db->stop_requested)
	{
		my_db = NULL;
		LWLockRelease(es_shared->relay_lock);
		leave("the database is being dropped, renamed or copied", false);
	}
	if (!OidIsValid(extoid))
	{
		if (my_db != NULL && (my_db->worker < 0 || my_db->worker == my_index))
			my_db->dboid = InvalidOid;
		my_db = NULL;
		my_worker->no_extension = true;
		LWLockRelease(es_shared->relay_lock);
		leave("extension event_store is not installed", false);
	}
	if (my_db == NULL)
		my_db = es_relay_database_add(my_dboid);
	if (my_db == NULL)
	{
		LWLockRelease(es_shared->relay_lock);
		ereport(LOG,
				(errmsg("event_store has no room for the relay of database \"%s\"",
						my_database_name),
				 errhint("Raise event_store.max_databases (now %d) and restart the server.",
						 es_shared->max_relay_databases)));
		proc_exit(0);
	}
	if (my_db->worker >= 0 && my_db->worker != my_index)
	{
		my_db = NULL;
		LWLockRelease(es_shared->relay_lock);
		leave("another worker serves the database", false);
	}
	my_db->worker = my_index;
	my_db->started_at = GetCurrentTimestamp();
	my_db->waiting_since = 0;
	my_db->next_due = 0;
	if (my_db->extension_oid != extoid)
		reset_instance(my_db, extoid);
	my_db->state = ES_RELAY_RUNNING;
	my_extension_oid = extoid;
	LWLockRelease(es_shared->relay_lock);
}

/* Every message the worker logs names its database. */
static void
relay_error_context(void *arg)
{
	if (my_database_name != NULL)
		errcontext("event_store relay worker for database \"%s\"", my_database_name);
}

void
es_relay_main(Datum main_arg)
{
	ErrorContextCallback context;

	uint32		generation;
	MemoryContext cycle_context;
	TimestampTz attached_at;
	TimestampTz last_work;

	my_index = DatumGetInt32(main_arg);
	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	my_worker = &es_relay_workers[my_index];
	if (my_worker->generation != generation || my_worker->dboid == InvalidOid ||
		my_worker->pid != 0 || my_worker->exited)
	{
		/* A late start of a worker the launcher gave up on. */
		LWLockRelease(es_shared->relay_lock);
		my_worker = NULL;
		proc_exit(0);
	}
	my_dboid = my_worker->dboid;
	my_db = es_relay_database(my_dboid);
	if (my_db != NULL && my_db->stop_requested)
	{
		/* Do not even connect: the database is being dropped. */
		my_worker->exited = true;
		my_worker = NULL;
		LWLockRelease(es_shared->relay_lock);
		es_wake_launcher();
		proc_exit(0);
	}
	my_worker->pid = MyProcPid;
	my_worker->procno = ES_MY_PROCNO;
	LWLockRelease(es_shared->relay_lock);
	on_shmem_exit(relay_worker_exit, 0);

	/*
	 * Connect as the bootstrap superuser (PostgreSQL 15 lets no background
	 * worker log in as a NOLOGIN role); each step then runs as relay_role.
	 */
	BackgroundWorkerInitializeConnectionByOid(my_dboid, InvalidOid, 0);

	/*
	 * At-least-once: a relay commit lost in a crash only means its batch is
	 * sent again.  Schema-qualified statements, and no user schema before
	 * pg_catalog.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);

	/*
	 * Short statements with one plan each for the worker's lifetime (see
	 * plans.c): no JIT, and no sequential or bitmap scan of a queue whose
	 * statistics say little of the dead rows it is full of (a bitmap scan
	 * would read a whole topic and sort it to relay one batch).
	 */
	SetConfigOption("jit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_seqscan", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("enable_bitmapscan", "off", PGC_SUSET, PGC_S_OVERRIDE);

	attach();
	context.callback = relay_error_context;
	context.arg = NULL;
	context.previous = NULL;
	error_context_stack = &context;

	cycle_context = AllocSetContextCreate(TopMemoryContext, "event_store relay cycle",
										  ALLOCSET_DEFAULT_SIZES);
	pgstat_report_activity(STATE_IDLE, NULL);
	ereport(DEBUG1,
			(errmsg("event_store relay worker for database \"%s\" started",
					my_database_name)));
	attached_at = last_work = GetCurrentTimestamp();

	for (;;)
	{
		bool		more;
		bool		worked;
		TimestampTz now;
		long		timeout;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!es_database_is_listed(my_database_name))
				leave("database no longer listed in event_store.databases", true);
		}
		if (es_relay_stop_requested())
			leave("the database is being dropped, renamed or copied", false);

		MemoryContextSwitchTo(cycle_context);
		worked = relay_cycle(cycle_context, &more);
		if (!more && OidIsValid(my_extension_oid) &&
			my_extension_oid == my_db->extension_oid)
			scavenge_if_due();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(cycle_context);

		if (!OidIsValid(my_extension_oid))
			leave_without_extension();
		if (my_extension_oid != my_db->extension_oid)
		{
			/* DROP and CREATE EXTENSION between two cycles: start afresh. */
			LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
			reset_instance(my_db, my_extension_oid);
			LWLockRelease(es_shared->relay_lock);
			continue;
		}

		now = GetCurrentTimestamp();
		if (worked)
			last_work = now;

		/* Others wait for a worker: give way after a slice, or when idle. */
		if (es_shared->databases_waiting > 0 &&
			(!more || TimestampDifferenceExceeds(attached_at, now, RELAY_SLICE_MS)))
			leave_if_idle("other databases wait for a worker");

		/* A full batch: go on at once, there is more. */
		if (more)
			continue;

		if (TimestampDifferenceExceeds(last_work, now, es_relay_idle_timeout * 1000))
			leave_if_idle("idle");

		timeout = es_relay_naptime;
		if (es_relay_idle_timeout * 1000L < timeout)
			timeout = Max(es_relay_idle_timeout * 1000L, 10);
		if (retry_at != 0)
		{
			/* A failed message comes due: look then. */
			long		secs;
			int			usecs;

			if (retry_at <= now)
			{
				retry_at = 0;
				continue;
			}
			TimestampDifference(now, retry_at, &secs, &usecs);
			timeout = Min(timeout, secs * 1000 + usecs / 1000 + 1);
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

