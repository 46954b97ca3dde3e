/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The extension's configuration parameters (event_store.*).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "event_store.h"
#include "guc.h"

/* Largest data + metadata of one event, in kB. */
int			es_max_event_size = 8192;

/* Most events one append may write. */
int			es_max_append_events = 10000;

/* Largest payload + headers of one outbox message, in kB. */
int			es_max_message_size = 8192;

/* Databases that get a relay worker: '' means every one with the extension. */
char	   *es_databases = NULL;

/* Most messages one relay transaction moves. */
int			es_relay_batch_size = 1000;

/* How often a relay worker looks for work without being woken, in ms. */
int			es_relay_naptime = 1000;

/* Role whose privileges the relay workers use. */
char	   *es_relay_role = NULL;

/* Relay workers (databases served at once); needs a restart. */
int			es_max_relay_workers = 8;

/* Seconds before a relay worker that failed is started again. */
int			es_restart_time = 5;

/* Seconds an oversized relayed message stays available to listeners. */
int			es_relay_reference_ttl = 3600;

/* Seconds a relay worker with nothing to do stays before it exits. */
int			es_relay_idle_timeout = 10;

/* Databases whose feed counters shared memory has room for. */
int			es_max_databases = 64;

void
es_define_gucs(void)
{
	DefineCustomIntVariable("event_store.max_event_size",
							"Sets the largest size of one event's data plus metadata.",
							"Appends with a larger event fail with SQLSTATE 54000.",
							&es_max_event_size,
							8192, 1, 256 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.max_append_events",
							"Sets the largest number of events in one append.",
							"Appends with more events fail with SQLSTATE 54000.",
							&es_max_append_events,
							10000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.max_message_size",
							"Sets the largest size of one outbox message's payload plus headers.",
							"Sends of a larger message fail with SQLSTATE 54000.",
							&es_max_message_size,
							8192, 1, 256 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("event_store.databases",
							   "Sets the databases that get a relay worker, comma-separated.",
							   "When empty, every database where the extension is installed gets one.",
							   &es_databases,
							   "",
							   PGC_SIGHUP, GUC_LIST_INPUT,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.relay_batch_size",
							"Sets the largest number of outbox messages one relay transaction moves.",
							NULL,
							&es_relay_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.relay_naptime",
							"Sets how long a relay worker sleeps when nothing wakes it.",
							"Commits that send messages or append events wake it at once; this is the polling fallback.",
							&es_relay_naptime,
							1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("event_store.relay_role",
							   "Sets the role whose privileges the relay workers use.",
							   "It must be a member of event_store_relay.",
							   &es_relay_role,
							   "event_store_relay",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.restart_time",
							"Sets the delay before a relay worker that failed is started again.",
							NULL,
							&es_restart_time,
							5, 0, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.relay_reference_ttl",
							"Sets how long an oversized relayed message stays available to relay_fetch.",
							NULL,
							&es_relay_reference_ttl,
							3600, 1, 30 * 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.relay_idle_timeout",
							"Sets how long a relay worker with nothing to do stays before it exits.",
							"A commit that sends a message or appends an event for a subscription starts a worker again.",
							&es_relay_idle_timeout,
							10, 0, 24 * 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * Settings of shared memory can only exist when the library is preloaded
	 * (defining them later is an error); unpreloaded, they keep defaults.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomIntVariable("event_store.max_databases",
								"Sets the number of databases with the extension whose feed and relay state fits in shared memory.",
								NULL,
								&es_max_databases,
								64, 1, 10000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
		DefineCustomIntVariable("event_store.max_relay_workers",
								"Sets the largest number of relay workers running at once.",
								"Workers start on demand for databases with work and exit when idle.  Each is a background worker, so max_worker_processes must leave room for them and the launcher.",
								&es_max_relay_workers,
								8, 1, 1000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
	}

	MarkGUCPrefixReserved("event_store");
}
