/*-------------------------------------------------------------------------
 *
 * event_store.c
 *	  Entry point of the event_store library.
 *
 * Loaded from shared_preload_libraries, the library sets up shared memory
 * (feed counters and reservations, relay state), registers the launcher of
 * the relay workers, and hooks utility commands that need a database to
 * themselves.  Loaded on demand by the first call of
 * one of its functions, it still serves the whole SQL API, with the
 * fallbacks each feature documents.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "event_store.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	es_define_gucs();
	if (process_shared_preload_libraries_in_progress)
	{
		es_shmem_init_hooks();
		es_launcher_register();
		es_utility_hook_init();
	}
	es_feed_init();
	es_route_init();
}
