/*-------------------------------------------------------------------------
 *
 * event_store.c
 *	  Entry point of the event_store library, and its one transaction
 *	  callback.
 *
 * Loaded from shared_preload_libraries, the library sets up shared memory
 * (feed counters and reservations, relay state), registers the launcher of
 * the relay workers, and hooks utility commands that need a database to
 * themselves.  Loaded on demand by the first call of
 * one of its functions, it still serves the whole SQL API, with the
 * fallbacks each feature documents.
 *
 * The modules that act at the end of a transaction do so from here, in
 * this order: the feed releases the transaction's reservation of positions
 * (feed.c), the outbox says whether messages were sent (outbox_xact.c), then the
 * relay of the database is woken (wakeup.c).  The order matters: a relay
 * woken before the reservation is released could announce a head that
 * stops short of this transaction's events and not look again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"

#include "event_store.h"
#include "guc.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

static void
es_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			es_feed_at_prepare();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
			{
				bool		appended = es_feed_at_xact_end();
				EsTopicSet sent;
				bool		any_sent = es_outbox_take_sent(&sent);

				es_wakeup_at_xact_end(event == XACT_EVENT_COMMIT, appended,
									  any_sent ? &sent : NULL);
			}
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			(void) es_feed_at_xact_end();
			break;
		default:
			break;
	}
}

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
	RegisterXactCallback(es_xact_callback, NULL);
	es_route_init();
}
