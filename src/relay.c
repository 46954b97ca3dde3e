/*-------------------------------------------------------------------------
 *
 * relay.c
 *	  The relay worker of one database: it publishes outbox messages to
 *	  their sinks, and tells LISTENers when the feed moves.
 *
 * A cycle is one transaction, run with the privileges of
 * event_store.relay_role:
 *	- for each route (event_store.relay_routes) that is not paused, lock a
 *	  batch of available messages of the topic in id order (SKIP LOCKED, so
 *	  consumers and other claimers are never blocked), keep per-key order
 *	  (a keyed message goes only with every earlier message of its key), and
 *	  delete them while pg_notify'ing each to the route's channel.  NOTIFY is
 *	  delivered at commit, so a crash never half-publishes a batch: it is all
 *	  sent and acknowledged, or neither and sent again later.  A message too
 *	  large for NOTIFY is parked in event_store.relay_parked and announced by
 *	  a reference that relay_fetch() resolves;
 *	- when the safe head of the feed moved, NOTIFY event_store_feed, and
 *	  event_store_sub_<name> for each subscription with new events.
 * Relay transactions commit asynchronously: after a crash, a batch whose
 * commit was not yet flushed is sent again (at-least-once).
 *
 * Committing transactions that sent messages (when the database has relay
 * routes) or appended events (when it has subscriptions) set the worker's
 * latch (es_at_transaction_end), so it runs at once; otherwise it polls
 * every event_store.relay_naptime.  A worker that has nothing to publish is
 * not woken by every commit.  Appending transactions never
 * NOTIFY themselves: NOTIFY serialises committing transactions on a global
 * lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type_d.h"
#include "commands/async.h"
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
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_relay_worker_status);
PG_FUNCTION_INFO_V1(event_store_relay_available);
PG_FUNCTION_INFO_V1(event_store_relay_wake);

/* This transaction asked the relay to look again: wake it at commit. */
static bool wake_relay_at_commit = false;

/* Longest NOTIFY payload, one less than PostgreSQL's limit (it counts the NUL). */
#define NOTIFY_PAYLOAD_LIMIT 7999

/* How often oversized messages past their time to live are removed. */
#define PARKED_CLEANUP_INTERVAL_MS 60000

#define FEED_CHANNEL "event_store_feed"
#define SUBSCRIPTION_CHANNEL_PREFIX "event_store_sub_"

/* This worker's slot in shared memory. */
static EsRelaySlot *my_slot = NULL;

/* This worker's database. */
static char *my_database_name = NULL;

/* Last feed head this worker announced. */
static int64 announced_head = 0;

static TimestampTz last_parked_cleanup = 0;

static TimestampTz last_error_logged_at = 0;

/*
 * Lock a batch of topic $1 ($2 now, $3 batch size), keep the keyed messages
 * whose earlier messages of the same key are all in the batch, delete them,
 * park those too large for NOTIFY ($4 largest payload), and return each
 * with the text to NOTIFY, in id order.  (It scans the (topic, id + 0)
 * index and deletes the locked rows by ctid: see plans.c.)
 */
static const char *const relay_sql =
"WITH locked AS ("
"  SELECT o.ctid AS row_id, o.id, o.key FROM event_store.outbox AS o"
"  WHERE o.topic = $1 AND o.available_at <= $2"
"  ORDER BY o.topic, o.id + 0 LIMIT $3"
"  FOR UPDATE OF o SKIP LOCKED"
"), eligible AS ("
"  SELECT l.row_id FROM locked AS l"
"  WHERE l.key IS NULL OR NOT EXISTS ("
"    SELECT FROM event_store.outbox AS earlier"
"    WHERE earlier.topic = $1 AND earlier.key = l.key AND earlier.id < l.id"
"      AND earlier.id NOT IN (SELECT id FROM locked))"
"), relayed AS ("
"  DELETE FROM event_store.outbox AS o WHERE o.ctid = ANY (ARRAY(SELECT e.row_id FROM eligible AS e))"
"  RETURNING o.id, o.topic, o.key, o.payload, o.headers, o.created_at,"
"    jsonb_build_object('id', o.id, 'topic', o.topic, 'key', o.key,"
"                       'payload', o.payload, 'headers', o.headers)::text AS message"
"), parked AS ("
"  INSERT INTO event_store.relay_parked (id, topic, key, payload, headers, created_at, parked_at)"
"  SELECT id, topic, key, payload, headers, created_at, $2 FROM relayed"
"  WHERE octet_length(message) > $4"
") SELECT CASE WHEN octet_length(message) > $4"
"         THEN jsonb_build_object('id', id, 'topic', topic, 'key', key, 'reference', true)::text"
"         ELSE message END"
"  FROM relayed ORDER BY id";

static const char *const routes_sql =
"SELECT topic, sink FROM event_store.relay_routes WHERE NOT paused ORDER BY topic";

static const char *const subscriptions_sql =
"SELECT s.name FROM event_store.subscriptions AS s"
" WHERE s.category IS NULL OR EXISTS ("
"   SELECT FROM event_store.events AS e"
"   WHERE event_store.category(e.stream) = s.category"
"     AND e.position > $1 AND e.position <= $2)";

static const char *const has_subscriptions_sql =
"SELECT EXISTS (SELECT FROM event_store.subscriptions)";

static const char *const parked_cleanup_sql =
"DELETE FROM event_store.relay_parked WHERE parked_at < $1";

/* Leave the worker on purpose: the launcher may start another at once. */
static void
exit_cleanly(const char *why, bool extension_missing)
{
	ereport(LOG, (errmsg("event_store relay worker exiting: %s", why)));
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	my_slot->clean_exit = true;
	my_slot->extension_missing = extension_missing;
	LWLockRelease(es_shared->relay_lock);
	proc_exit(0);
}

static void
relay_shmem_exit(int code, Datum arg)
{
	if (my_slot == NULL)
		return;
	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	my_slot->pid = 0;
	my_slot->procno = -1;
	my_slot->exited_at = GetCurrentTimestamp();
	if (code != 0)
		my_slot->clean_exit = false;
	strlcpy(my_slot->state, my_slot->clean_exit ? "stopped" : "failed",
			sizeof(my_slot->state));
	LWLockRelease(es_shared->relay_lock);
	/* The launcher decides whether to start another one. */
	es_wake_launcher();
}

/*
 * Relay one batch of a topic to a NOTIFY channel.  Returns how many
 * messages were relayed.
 */
static int
relay_to_notify(const char *topic, const char *channel, TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[4] = {TEXTOID, TIMESTAMPTZOID, INT4OID, INT4OID};
	Datum		values[4];
	int			rc;

	es_prepared_plan(&plan, relay_sql, 4, argtypes);
	values[0] = CStringGetTextDatum(topic);
	values[1] = TimestampTzGetDatum(now);
	values[2] = Int32GetDatum(es_relay_batch_size);
	values[3] = Int32GetDatum(NOTIFY_PAYLOAD_LIMIT);
	rc = SPI_execute_plan(plan, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "relay statement failed: %s", SPI_result_code_string(rc));

	for (uint64 i = 0; i < SPI_processed; i++)
		Async_Notify(channel, SPI_getvalue(SPI_tuptable->vals[i],
										   SPI_tuptable->tupdesc, 1));
	return (int) SPI_processed;
}

/*
 * Announce a new feed head: on the feed's channel, and on the channel of
 * every subscription with events in (announced_head, head].
 */
static int
notify_feed(bool *has_subscriptions)
{
	static SPIPlanPtr plan = NULL;
	static SPIPlanPtr exists_plan = NULL;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2];
	Relation	events;
	int64		head;
	char		payload[32];
	int			notified = 0;
	bool		isnull;

	if (SPI_execute_plan(es_prepared_plan(&exists_plan, has_subscriptions_sql, 0, NULL),
						 NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "subscription statement failed");
	*has_subscriptions = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &isnull));

	events = es_open_relation("events", AccessShareLock);
	head = es_feed_safe_head(events);
	table_close(events, AccessShareLock);
	if (head <= announced_head)
		return 0;

	snprintf(payload, sizeof(payload), INT64_FORMAT, head);
	Async_Notify(FEED_CHANNEL, payload);
	notified++;

	es_prepared_plan(&plan, subscriptions_sql, 2, argtypes);
	values[0] = Int64GetDatum(announced_head);
	values[1] = Int64GetDatum(head);
	if (SPI_execute_plan(plan, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "subscription statement failed");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char		channel[NAMEDATALEN];

		snprintf(channel, sizeof(channel), "%s%s", SUBSCRIPTION_CHANNEL_PREFIX,
				 SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		Async_Notify(channel, payload);
		notified++;
	}
	announced_head = head;
	return notified;
}

static void
cleanup_parked(TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1];

	if (!TimestampDifferenceExceeds(last_parked_cleanup, now, PARKED_CLEANUP_INTERVAL_MS))
		return;
	es_prepared_plan(&plan, parked_cleanup_sql, 1, argtypes);
	values[0] = TimestampTzGetDatum(TimestampTzPlusMilliseconds(now,
																-(int64) es_relay_reference_ttl * 1000));
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "relay cleanup failed");
	last_parked_cleanup = now;
}

/*
 * One cycle.  Returns true when a batch was full (more may be waiting).
 */
static bool
relay_cycle(void)
{
	static SPIPlanPtr routes_plan = NULL;
	Oid			role;
	Oid			saved_user;
	int			saved_context;
	TimestampTz now;
	int			moved = 0;
	int			notified;
	bool		full = false;
	bool		has_subscriptions;
	SPITupleTable *routes;
	uint64		nroutes;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "event_store relay cycle");

	if (!OidIsValid(get_extension_oid("event_store", true)))
	{
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		exit_cleanly("extension event_store is not installed in this database", true);
	}

	role = get_role_oid(es_relay_role, true);
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("event_store.relay_role \"%s\" does not exist", es_relay_role)));
	GetUserIdAndSecContext(&saved_user, &saved_context);
	SetUserIdAndSecContext(role, saved_context | SECURITY_LOCAL_USERID_CHANGE);

	now = GetCurrentTimestamp();

	es_prepared_plan(&routes_plan, routes_sql, 0, NULL);
	if (SPI_execute_plan(routes_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "relay routes statement failed");
	routes = SPI_tuptable;
	nroutes = SPI_processed;
	for (uint64 i = 0; i < nroutes; i++)
	{
		char	   *topic = SPI_getvalue(routes->vals[i], routes->tupdesc, 1);
		char	   *sink = SPI_getvalue(routes->vals[i], routes->tupdesc, 2);
		int			n;

		/* relay_route accepts only notify: sinks for now. */
		if (strncmp(sink, "notify:", 7) != 0)
			continue;
		n = relay_to_notify(topic, sink + 7, now);
		moved += n;
		if (n >= es_relay_batch_size)
			full = true;
	}

	notified = notify_feed(&has_subscriptions);
	cleanup_parked(now);

	SetUserIdAndSecContext(saved_user, saved_context);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	if (moved > 0)
	{
		my_slot->last_batch_at = now;
		my_slot->last_batch_size = moved;
		my_slot->messages_relayed += moved;
		my_slot->batches++;
	}
	my_slot->feed_notifications += notified;
	my_slot->has_routes = (nroutes > 0);
	my_slot->has_subscriptions = has_subscriptions;
	strlcpy(my_slot->state, "idle", sizeof(my_slot->state));
	LWLockRelease(es_shared->relay_lock);
	return full;
}

/*
 * Run a cycle; an error is logged, recorded in the slot and rolled back,
 * and the worker carries on.
 */
static bool
relay_cycle_guarded(MemoryContext cycle_context)
{
	volatile bool full = false;

	PG_TRY();
	{
		full = relay_cycle();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cycle_context);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);

		/* The same error every naptime: log it once a minute. */
		if (strcmp(my_slot->last_error, edata->message) != 0 ||
			TimestampDifferenceExceeds(last_error_logged_at, GetCurrentTimestamp(), 60000))
		{
			ereport(LOG,
					(errmsg("event_store relay cycle failed: %s", edata->message)));
			last_error_logged_at = GetCurrentTimestamp();
		}
		LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
		strlcpy(my_slot->last_error, edata->message, sizeof(my_slot->last_error));
		my_slot->last_error_at = GetCurrentTimestamp();
		strlcpy(my_slot->state, "error", sizeof(my_slot->state));
		LWLockRelease(es_shared->relay_lock);
		FreeErrorData(edata);
		full = false;
	}
	PG_END_TRY();
	return full;
}

void
es_relay_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	MemoryContext cycle_context;

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/*
	 * Connect as the bootstrap superuser (PostgreSQL 15 lets no background
	 * worker log in as a NOLOGIN role); each cycle then runs as relay_role.
	 */
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	LWLockAcquire(es_shared->relay_lock, LW_EXCLUSIVE);
	for (int i = 0; i < es_shared->max_relay_workers; i++)
	{
		if (es_relay_slots[i].dboid == dboid)
			my_slot = &es_relay_slots[i];
	}
	if (my_slot == NULL || my_slot->pid != 0 || my_slot->stop_requested)
	{
		/* Not wanted, or another worker serves this database already. */
		LWLockRelease(es_shared->relay_lock);
		my_slot = NULL;
		proc_exit(0);
	}
	my_slot->pid = MyProcPid;
#if PG_VERSION_NUM >= 170000
	my_slot->procno = MyProcNumber;
#else
	my_slot->procno = MyProc->pgprocno;
#endif
	my_slot->started_at = GetCurrentTimestamp();
	my_slot->clean_exit = false;
	my_slot->extension_missing = false;
	strlcpy(my_slot->state, "idle", sizeof(my_slot->state));
	LWLockRelease(es_shared->relay_lock);
	on_shmem_exit(relay_shmem_exit, 0);

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

	StartTransactionCommand();
	my_database_name = MemoryContextStrdup(TopMemoryContext,
										   get_database_name(MyDatabaseId));
	CommitTransactionCommand();

	cycle_context = AllocSetContextCreate(TopMemoryContext, "event_store relay cycle",
										  ALLOCSET_DEFAULT_SIZES);
	pgstat_report_activity(STATE_IDLE, NULL);
	ereport(LOG, (errmsg("event_store relay worker started")));

	for (;;)
	{
		bool		more;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			if (!es_database_is_listed(my_database_name))
				exit_cleanly("database no longer listed in event_store.databases", false);
		}

		MemoryContextSwitchTo(cycle_context);
		more = relay_cycle_guarded(cycle_context);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(cycle_context);

		/* A full batch: go on at once, there is more. */
		if (more)
			continue;

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 es_relay_naptime, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Wake the relay worker of a database, if it has something to do: appended
 * events matter when the database has subscriptions, sent messages when it
 * has relay routes.  "always" wakes it regardless (to look at its routes
 * and subscriptions again).
 */
static void
wake_relay(Oid dboid, bool appended, bool sent, bool always)
{
	if (!es_shmem_available())
		return;
	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	for (int i = 0; i < es_shared->max_relay_workers; i++)
	{
		EsRelaySlot *slot = &es_relay_slots[i];

		if (slot->dboid != dboid || slot->procno < 0)
			continue;
		if (always || (appended && slot->has_subscriptions) ||
			(sent && slot->has_routes))
			SetLatch(&GetPGProcByNumber(slot->procno)->procLatch);
	}
	LWLockRelease(es_shared->relay_lock);
}

void
es_relay_wake(Oid dboid)
{
	wake_relay(dboid, false, false, true);
}

/*
 * End of a transaction (called from feed.c's transaction callback, after
 * the commit is visible and the feed reservation is released): a commit
 * that appended events or sent messages wakes the relay.
 */
void
es_at_transaction_end(bool committed, bool appended)
{
	bool		sent = es_outbox_take_sent_flag();
	bool		asked = wake_relay_at_commit;

	wake_relay_at_commit = false;
	if (committed && (appended || sent || asked))
		wake_relay(MyDatabaseId, appended, sent, asked);
	es_launcher_at_transaction_end(committed);
}

/*
 * relay_wake(): the relay of this database looks at its routes again when
 * this transaction commits (relay_route, relay_resume).
 */
Datum
event_store_relay_wake(PG_FUNCTION_ARGS)
{
	wake_relay_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * relay_available(): whether the relay workers can run here (the library
 * is preloaded).
 */
Datum
event_store_relay_available(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(es_shmem_available());
}

/*
 * relay_worker_status(): the launcher and the relay workers, as the
 * relay_workers view shows them.
 */
Datum
event_store_relay_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	EsRelaySlot *copies;
	int			nslots;
	pid_t		launcher_pid;
	TimestampTz launcher_started_at;

	InitMaterializedSRF(fcinfo, 0);
	if (!es_shmem_available())
		return (Datum) 0;

	nslots = es_shared->max_relay_workers;
	copies = palloc(sizeof(EsRelaySlot) * nslots);
	LWLockAcquire(es_shared->relay_lock, LW_SHARED);
	memcpy(copies, es_relay_slots, sizeof(EsRelaySlot) * nslots);
	launcher_pid = es_shared->launcher_pid;
	launcher_started_at = es_shared->launcher_started_at;
	LWLockRelease(es_shared->relay_lock);

	{
		Datum		values[12];
		bool		nulls[12];

		memset(nulls, true, sizeof(nulls));
		values[0] = CStringGetTextDatum("launcher");
		nulls[0] = false;
		if (launcher_pid != 0)
		{
			values[2] = Int32GetDatum(launcher_pid);
			nulls[2] = false;
			values[4] = TimestampTzGetDatum(launcher_started_at);
			nulls[4] = false;
		}
		values[3] = CStringGetTextDatum(launcher_pid != 0 ? "running" : "stopped");
		nulls[3] = false;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}

	for (int i = 0; i < nslots; i++)
	{
		EsRelaySlot *slot = &copies[i];
		Datum		values[12];
		bool		nulls[12];
		char	   *datname;

		if (slot->dboid == InvalidOid)
			continue;
		memset(nulls, false, sizeof(nulls));
		values[0] = CStringGetTextDatum("relay");
		datname = get_database_name(slot->dboid);
		values[1] = datname ? CStringGetTextDatum(datname) : (Datum) 0;
		nulls[1] = (datname == NULL);
		values[2] = Int32GetDatum(slot->pid);
		nulls[2] = (slot->pid == 0);
		values[3] = CStringGetTextDatum(slot->extension_missing ? "no extension" :
										slot->stop_requested ? "stopping" : slot->state);
		values[4] = TimestampTzGetDatum(slot->started_at);
		nulls[4] = (slot->started_at == 0);
		values[5] = TimestampTzGetDatum(slot->last_batch_at);
		nulls[5] = (slot->last_batch_at == 0);
		values[6] = Int32GetDatum(slot->last_batch_size);
		values[7] = Int64GetDatum((int64) slot->messages_relayed);
		values[8] = Int64GetDatum((int64) slot->batches);
		values[9] = Int64GetDatum((int64) slot->feed_notifications);
		values[10] = CStringGetTextDatum(slot->last_error);
		nulls[10] = (slot->last_error[0] == '\0');
		values[11] = TimestampTzGetDatum(slot->last_error_at);
		nulls[11] = (slot->last_error_at == 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
