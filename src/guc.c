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

/* Largest data + metadata of one event, in kB. */
int			es_max_event_size = 8192;

/* Most events one append may write. */
int			es_max_append_events = 10000;

/* Largest payload + headers of one outbox message, in kB. */
int			es_max_message_size = 8192;

/* Databases whose feed counters shared memory has room for. */
int			es_max_databases = 64;

void
es_define_gucs(void)
{
	DefineCustomIntVariable("event_store.max_event_size",
							"Largest size of one event's data plus metadata.",
							"Appends with a larger event fail with SQLSTATE 54000.",
							&es_max_event_size,
							8192, 1, 256 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.max_append_events",
							"Largest number of events in one append.",
							"Appends with more events fail with SQLSTATE 54000.",
							&es_max_append_events,
							10000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("event_store.max_message_size",
							"Largest size of one outbox message's payload plus headers.",
							"Sends of a larger message fail with SQLSTATE 54000.",
							&es_max_message_size,
							8192, 1, 256 * 1024,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	/*
	 * Settings of shared memory can only exist when the library is preloaded
	 * (defining them later is an error); unpreloaded, they keep defaults.
	 */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("event_store.max_databases",
								"Number of databases whose feed state fits in shared memory.",
								NULL,
								&es_max_databases,
								64, 1, 10000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);

	MarkGUCPrefixReserved("event_store");
}
