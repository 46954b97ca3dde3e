/*-------------------------------------------------------------------------
 *
 * event_store.h
 *	  Declarations shared by the C files of the event_store extension.
 *
 * Each .c file owns one concern; this header lists what they offer each
 * other.  Nothing here is part of the SQL API.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_H
#define EVENT_STORE_H

#include "postgres.h"

#include "access/genam.h"
#include "access/htup.h"
#include "access/sdir.h"
#include "fmgr.h"
#include "nodes/execnodes.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/jsonb.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"
#include "datatype/timestamp.h"
#include "utils/tuplestore.h"
#include "utils/uuid.h"

/* The extension, and the version of its SQL objects this library needs. */
#define ES_EXTENSION_NAME "event_store"
#define ES_EXTENSION_VERSION "0.2"

/* Schema of every object the extension creates. */
#define ES_SCHEMA "event_store"

/* Limits, documented in README.md ("Limits"). */
#define ES_MAX_STREAM_NAME_BYTES	1024
#define ES_MAX_TYPE_NAME_BYTES		1024
#define ES_MAX_TOPIC_BYTES			255
#define ES_MAX_KEY_BYTES			1024
#define ES_MAX_ERROR_BYTES			8192
#define ES_MAX_FILTER_TYPES			100

/* Expected-version sentinels of append (see SPEC.md). */
#define ES_EXPECT_NO_STREAM		(-1)
#define ES_EXPECT_STREAM_EXISTS	(-2)

/*
 * The channel the feed announcer NOTIFYs (feed_announce.c); those of the
 * subscriptions come from event_store.subscription_channel().
 */
#define ES_FEED_CHANNEL "event_store_feed"

/*
 * Type of the tombstone event written by delete_stream (the streams view,
 * sql/install/70_views.sql, spells it too).
 */
#define ES_TOMBSTONE_TYPE "$stream_deleted"

/*
 * SQLSTATEs of class EV, the extension's own error class.
 */
#define ERRCODE_ES_WRONG_EXPECTED_VERSION	MAKE_SQLSTATE('E','V','0','0','1')
#define ERRCODE_ES_EVENT_ID_CONFLICT		MAKE_SQLSTATE('E','V','0','0','2')
#define ERRCODE_ES_STREAM_DELETED			MAKE_SQLSTATE('E','V','0','0','3')

/*
 * Columns of event_store.events, 1-based as in the catalog: those of the
 * composite type event_store.event, in its order.
 */
enum
{
	Anum_events_position = 1,
	Anum_events_stream,
	Anum_events_version,
	Anum_events_type,
	Anum_events_data,
	Anum_events_metadata,
	Anum_events_id,
	Anum_events_recorded_at,
	Natts_events = Anum_events_recorded_at
};

/*
 * Classes of the extension's heavyweight lock tags (advisory lock method,
 * fourth field; SQL advisory locks use 1 and 2, so these never collide).
 */
#define ES_LOCK_CLASS_STREAM	0x4553	/* one stream's appenders */
#define ES_LOCK_CLASS_FEED		0x4554	/* fallback position allocation */
#define ES_LOCK_CLASS_IN_FLIGHT	0x4555	/* fallback: a running appender */
#define ES_LOCK_CLASS_HIGH_WATER 0x4556	/* the feed's durable high-water mark */

/* args.c: checks of SQL arguments shared by several functions */
extern void es_require_arg(FunctionCallInfo fcinfo, int argno, const char *name);
extern int32 es_checked_max_count(FunctionCallInfo fcinfo, int argno);
extern Jsonb *es_checked_json_object(Jsonb *value, const char *what);
extern int	es_interval_sign(Interval *interval);
extern char *es_clipped(const char *name, int len, int limit);

/* result_store.c: the tuplestore a read function returns its rows in */
extern void es_init_result_store(FunctionCallInfo fcinfo);

/* Whether two text values are the same bytes (names: topics, types). */
static inline bool
es_text_equal(const text *a, const text *b)
{
	return VARSIZE_ANY_EXHDR(a) == VARSIZE_ANY_EXHDR(b) &&
		memcmp(VARDATA_ANY(a), VARDATA_ANY(b), VARSIZE_ANY_EXHDR(a)) == 0;
}

/* plans.c: prepared SPI statements */
extern struct _SPI_plan *es_prepared_plan(struct _SPI_plan **plan, const char *sql,
										  int nargs, Oid *argtypes);
extern void es_spi_execute(struct _SPI_plan *plan, Datum *values,
						   bool read_only, int expected, const char *statement);

/* schema.c: the extension's namespace, version check, relation lookups */
extern Oid	es_schema_oid(void);
extern Oid	es_relation_oid(const char *relname);
extern Relation es_open_relation(const char *relname, LOCKMODE lockmode);
extern Datum es_invalidate_trigger_table(FunctionCallInfo fcinfo,
										const char *function_name);

/* stream.c: stream names, categories and the per-stream lock */
extern text *es_checked_stream_arg(FunctionCallInfo fcinfo, int argno);
extern void es_check_category(const char *category, int len);
extern text *es_category_of(const char *stream, int len);
extern void es_lock_stream(const char *stream, int len);
extern int32 es_consumer_group_member(const char *stream, int len, int32 size);
extern void es_check_consumer_group_size(int32 size);

/* ids.c: event ids and outbox receipts */
extern void es_generate_uuid(pg_uuid_t *uuid);
extern int64 es_receipt_message_id(const pg_uuid_t *receipt);

/* writer.c: inserting rows through the executor's simple-insert path */
typedef struct EsTableWriter
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *slot;
} EsTableWriter;

extern void es_check_writable(const char *function_name);
extern Snapshot es_snapshot_after_concurrent_update(Snapshot snapshot, bool *fresh);
extern EsTableWriter *es_writer_open(const char *relname);
extern void es_writer_insert(EsTableWriter *writer, Datum *values, bool *nulls);
extern void es_writer_close(EsTableWriter *writer);

/* feed.c: global positions, the gap-safe head of the feed */
typedef enum EsFeedRow
{
	ES_ROW_SKIP,				/* never part of the feed (aborted, deleted) */
	ES_ROW_STOP					/* may still become visible: stop before it */
} EsFeedRow;

extern void es_feed_at_prepare(void);
extern bool es_feed_at_xact_end(void);
extern int64 es_feed_reserve_positions(Relation events, int count);
extern void es_feed_reservation_done(void);
extern int64 es_feed_safe_head(Relation events);
extern EsFeedRow es_feed_classify_invisible_row(TupleTableSlot *slot,
												Snapshot snapshot);

/* replica.c: the feed on a hot standby and on a logical replica */
extern void es_check_feed_readable(Relation events);
extern bool es_feed_readable(Relation events);
extern void es_check_appendable(Relation events);

/* read.c: scans of one stream, stream heads, shared read helpers */
typedef struct EsStreamScan
{
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanDirection direction;
	ScanKeyData keys[2];
} EsStreamScan;

typedef struct EsStreamHead
{
	bool		exists;			/* stream has (or had) at least one event */
	bool		deleted;		/* last event is a tombstone */
	bool		soft_deleted;	/* soft-deleted, not written since */
	bool		has_last_id;	/* last event still in the log */
	int64		version;		/* version of the last event, or -1 */
	pg_uuid_t	last_id;		/* id of the last event, when has_last_id */
} EsStreamHead;

/* lifecycle.c: a stream's row of event_store.streams */
typedef struct EsStreamMeta
{
	bool		found;
	bool		has_max_count;
	int64		max_count;
	bool		has_max_age;
	Interval	max_age;
	bool		has_truncate_before;
	int64		truncate_before;
	int64		deleted_before; /* soft delete: versions below it; 0: none */
	int64		removed_through;	/* last version the scavenger removed, or
									 * -1 */
} EsStreamMeta;

extern void es_read_stream_meta(text *stream, Snapshot snapshot,
								EsStreamMeta *meta);
extern int64 es_stream_retention_cut(const EsStreamMeta *meta, int64 head_version);

extern EsStreamScan *es_stream_scan_begin(Relation events,
										  Relation stream_index, text *stream,
										  bool has_bound, int64 bound,
										  bool backward, Snapshot snapshot);
extern TupleTableSlot *es_stream_scan_next(EsStreamScan *ss);
extern void es_stream_scan_end(EsStreamScan *ss);
extern EsStreamHead es_read_stream_head(Relation events, Relation stream_index,
										text *stream, Snapshot snapshot);
struct EsStreamMeta;
extern EsStreamHead es_read_stream_head_meta(Relation events,
											 Relation stream_index,
											 text *stream, Snapshot snapshot,
											 struct EsStreamMeta *meta);
extern Datum es_getattr(TupleTableSlot *slot, int attnum);
extern void es_report_stream_deleted(text *stream) pg_attribute_noreturn();
extern bool es_rows_are_events(Relation events, TupleDesc tupdesc);
extern void es_put_event(Tuplestorestate *tupstore, TupleDesc tupdesc,
						 TupleTableSlot *slot, bool as_is);

/* read_feed.c: reads of the global feed and of a category */
typedef struct EsFeedQuery
{
	text	   *category;		/* NULL: the whole feed */
	int64		from_position;	/* inclusive */
	int32		max_count;
	int32		group_member;	/* consumer group, when group_size > 0 */
	int32		group_size;
	int			ntypes;			/* event type filter: 0 for none */
	text	  **types;
	text	   *stream_prefix;	/* NULL: any stream */
	int64	   *covered;		/* out, optional: every event of the query
								 * at or below this position was returned
								 * or can never be */
} EsFeedQuery;

extern int64 es_read_feed(const EsFeedQuery *query, Tuplestorestate *tupstore,
						  TupleDesc tupdesc);
extern void es_feed_query_set_filter(EsFeedQuery *query,
									 struct ArrayType *types,
									 text *stream_prefix);

/* outbox.c: sending to the outbox */
extern int64 es_outbox_enqueue(EsTableWriter *writer, text *topic, text *key,
							   Jsonb *payload, Jsonb *headers,
							   TimestampTz available_at, TimestampTz now);
extern int64 es_outbox_deliver(EsTableWriter **writer, text *topic, text *key,
							   Jsonb *payload, Jsonb *headers,
							   TimestampTz available_at, TimestampTz now);
/* outbox_xact.c */

/*
 * A few topics, as es_topic_hash gives them (those a transaction sent
 * messages to, those a database's relay routes), for the wake-ups at
 * commit; all topics when more than fit, or when they are not known.
 */
#define ES_TOPIC_SET_SIZE 32
typedef struct EsTopicSet
{
	int			count;
	bool		all;
	uint32		hashes[ES_TOPIC_SET_SIZE];
} EsTopicSet;

extern uint32 es_topic_hash(const char *topic, int len);
extern void es_topic_set_add(EsTopicSet *set, uint32 hash);
extern bool es_topic_set_has(const EsTopicSet *set, uint32 hash);
extern bool es_outbox_take_sent(EsTopicSet *sent);

/* route.c: routes from the event log to the outbox */
typedef struct EsRoutedEvent
{
	text	   *stream;
	text	   *type;
	Jsonb	   *data;
	Jsonb	   *metadata;		/* NULL when none */
	pg_uuid_t  *id;
	int64		version;
	int64		position;
	TimestampTz recorded_at;
} EsRoutedEvent;

extern void es_route_init(void);
extern void es_route_events(text *stream, EsRoutedEvent *events, int count);

/* shmem.c: state shared by all backends (only when preloaded) */
typedef struct EsFeedDatabase
{
	Oid			dboid;			/* InvalidOid: free entry */
	Oid			events_relid;	/* events table the counter belongs to */
	int64		next_position;	/* next position to hand out */
	int64		limit;			/* positions up to this one are covered by
								 * the durable high-water mark (feed.c) */
} EsFeedDatabase;

typedef struct EsBackendSlot
{
	Oid			dboid;			/* database of the reservation */
	int64		min_position;	/* first position reserved by the running
								 * transaction, 0 when none */
	/* A blocking outbox_claim (outbox_xact.c); read and written without a lock */
	Oid			claim_wait_dboid;	/* database it waits in */
	uint32		claim_wait_topic;	/* hash of its topic, 0 when not waiting */
	/* Outbox rows the running transaction inserts (outbox_xact.c) */
	Oid			outbox_dboid;	/* database of outbox_first_id */
	pg_atomic_uint64 outbox_first_id;	/* no lower id, 0 when none */
} EsBackendSlot;

/*
 * What the relay of a database is doing; relay_state.c names each state
 * for the relay_workers view.  Zero is the state of a new entry.
 */
typedef enum EsRelayState
{
	ES_RELAY_NO_WORKER = 0,		/* never served since the entry was made */
	ES_RELAY_WAITING,			/* work pending, no worker free */
	ES_RELAY_STARTING,			/* worker registered, not attached yet */
	ES_RELAY_RUNNING,
	ES_RELAY_ERROR,				/* the last step failed */
	ES_RELAY_IDLE,				/* the worker left, nothing to do */
	ES_RELAY_STOPPED,			/* the worker exited on purpose */
	ES_RELAY_FAILED				/* the worker died */
} EsRelayState;

/*
 * A database the relay serves: one that has the extension (databases
 * without it have no entry: the launcher remembers them in its own memory).
 * Everything here belongs to one instance of the extension (extension_oid):
 * DROP and CREATE EXTENSION start it afresh.  Protected by relay_lock,
 * except "pending", which committing transactions set without the lock.
 */
typedef struct EsRelayDatabase
{
	Oid			dboid;			/* InvalidOid: free entry */
	Oid			extension_oid;	/* instance the state belongs to, or
								 * InvalidOid before a worker saw it */
	pg_atomic_uint32 pending;	/* work committed since the worker's last
								 * look: 1 */
	int			worker;			/* index of the worker serving it, or -1 */
	bool		stop_requested; /* the database is being dropped, renamed,
								 * moved or copied */
	bool		has_routes;		/* at the last look, the database had relay
								 * routes ... */
	bool		has_subscriptions;	/* ... and subscriptions: only then do
									 * sends and appends wake the relay */
	EsTopicSet	routed_topics;	/* at the last look, the routed topics:
								 * sends to others do not wake the relay
								 * (all: not known) */
	uint32		config_generation;	/* bumped by route and subscription
									 * changes, so that a cycle that read them
									 * before a change does not clear the
									 * flags above */
	bool		announced_known;	/* announced_head is this instance's */
	int64		announced_head; /* last feed head announced */
	bool		failed;			/* the last worker failed: wait restart_time */
	TimestampTz waiting_since;	/* pending with no worker since */
	TimestampTz next_due;		/* a delayed message comes due, or the
								 * scavenger: start a worker then (0: none) */
	TimestampTz scavenged_at;	/* the workers' last complete scavenge of
								 * this instance, or when they first saw it */
	TimestampTz exited_at;
	TimestampTz started_at;
	TimestampTz last_batch_at;
	int			last_batch_size;
	uint64		messages_relayed;
	uint64		messages_failed;
	uint64		batches;
	uint64		feed_notifications;
	TimestampTz last_error_at;
	EsRelayState state;
	char		last_error[256];
} EsRelayDatabase;

/*
 * A relay worker process, started by the launcher for one database.
 * Protected by relay_lock.
 */
typedef struct EsRelayWorker
{
	Oid			dboid;			/* InvalidOid: free */
	uint32		generation;		/* tells a late start of an old worker */
	pid_t		pid;			/* 0 until it runs */
	int			procno;			/* its PGPROC, for the latch; -1 */
	bool		no_extension;	/* it found no extension in the database */
	bool		exited;			/* gone: the launcher frees the slot */
	TimestampTz started_at;
} EsRelayWorker;

typedef struct EsShared
{
	LWLock	   *feed_lock;		/* protects databases and backend slots */
	LWLock	   *relay_lock;		/* protects the relay slots and the launcher */
	int			max_databases;
	int			num_backend_slots;
	int			max_relay_workers;
	int			max_relay_databases;
	int			databases_waiting;	/* with pending work and no worker: busy
									 * workers give way */
	uint32		worker_generation;
	bool		rescan_requested;	/* the launcher reads pg_database again */
	TimestampTz start_failed_at;	/* last time no background worker slot
									 * was free */
	pid_t		launcher_pid;
	int			launcher_procno;
	TimestampTz launcher_started_at;
} EsShared;

extern EsShared *es_shared;
extern EsFeedDatabase *es_feed_databases;
extern EsBackendSlot *es_backend_slots;
extern EsRelayDatabase *es_relay_databases;
extern EsRelayWorker *es_relay_workers;

/* outbox_claim_start.c: where claims start, in shared memory */
extern Size es_outbox_shmem_size(void);
extern void es_outbox_shmem_init(void *base, bool found);

extern bool es_shmem_available(void);
extern void es_shmem_init_hooks(void);
extern EsBackendSlot *es_my_backend_slot(void);

/* How long a registered worker may take to start before its slot is reused. */
#define ES_WORKER_START_TIMEOUT_MS 60000

/* launcher.c: the launcher and worker registration */
extern void es_launcher_register(void);
extern void es_wake_launcher(void);
extern bool es_database_is_listed(const char *datname);
extern PGDLLEXPORT void es_launcher_main(Datum main_arg);

/* utility_hook.c: DROP DATABASE and its kin, ALTER EXTENSION UPDATE */
extern void es_utility_hook_init(void);

/* relay.c: the relay worker of one database */
extern PGDLLEXPORT void es_relay_main(Datum main_arg);

/* relay_state.c: the relay's entries in shared memory, their states */
extern EsRelayDatabase *es_relay_database(Oid dboid);
extern EsRelayDatabase *es_relay_database_add(Oid dboid);
extern bool es_relay_database_room(void);

/* feed_announce.c: NOTIFY when the feed moves */
extern int	es_announce_feed(bool known, int64 announced,
							 bool *has_subscriptions, int64 *new_head);

/* wakeup.c: commit-time wake-ups of the relay */
extern void es_wakeup_at_xact_end(bool committed, bool appended,
								  const EsTopicSet *sent);

#endif							/* EVENT_STORE_H */
