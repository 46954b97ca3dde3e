/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  The extension's shared memory: requested when the library is in
 *	  shared_preload_libraries, absent otherwise.
 *
 * What lives here:
 *	- per database, the next global position of the feed;
 *	- per backend, the first position its running transaction reserved,
 *	  which is what makes the feed gap-safe (see feed.c);
 *	- per database that has the extension, its relay state: whether work
 *	  is pending, the worker serving it, counters (relay.c);
 *	- the relay worker processes, at most event_store.max_relay_workers,
 *	  and the launcher's pid and latch (launcher.c);
 *	- where outbox claims start in each topic, and per backend the lowest
 *	  outbox id its running transaction inserts (outbox_claim_start.c,
 *	  outbox_xact.c).
 * Feed and relay state each have their LWLock, held for a few instructions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/twophase.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "compat.h"
#include "event_store.h"
#include "guc.h"

EsShared   *es_shared = NULL;
EsFeedDatabase *es_feed_databases = NULL;
EsBackendSlot *es_backend_slots = NULL;
EsRelayDatabase *es_relay_databases = NULL;
EsRelayWorker *es_relay_workers = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Every PGPROC, so that any process's procno indexes the slot array. */
static int
es_num_backend_slots(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
es_shmem_size(void)
{
	Size		size = MAXALIGN(sizeof(EsShared));

	size = add_size(size, MAXALIGN(mul_size(es_max_databases,
											sizeof(EsFeedDatabase))));
	size = add_size(size, MAXALIGN(mul_size(es_num_backend_slots(),
											sizeof(EsBackendSlot))));
	size = add_size(size, MAXALIGN(mul_size(es_max_databases,
											sizeof(EsRelayDatabase))));
	size = add_size(size, MAXALIGN(mul_size(es_max_relay_workers, sizeof(EsRelayWorker))));
	size = add_size(size, es_outbox_shmem_size());
	return size;
}

static void
es_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(es_shmem_size());
	RequestNamedLWLockTranche("event_store", 2);
}

static void
es_shmem_startup(void)
{
	bool		found;
	char	   *base;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	base = ShmemInitStruct("event_store", es_shmem_size(), &found);
	es_shared = (EsShared *) base;
	es_feed_databases = (EsFeedDatabase *) (base + MAXALIGN(sizeof(EsShared)));
	es_backend_slots = (EsBackendSlot *)
		((char *) es_feed_databases +
		 MAXALIGN(mul_size(es_max_databases, sizeof(EsFeedDatabase))));
	es_relay_databases = (EsRelayDatabase *)
		((char *) es_backend_slots +
		 MAXALIGN(mul_size(es_num_backend_slots(), sizeof(EsBackendSlot))));
	es_relay_workers = (EsRelayWorker *)
		((char *) es_relay_databases +
		 MAXALIGN(mul_size(es_max_databases, sizeof(EsRelayDatabase))));
	if (!found)
	{
		LWLockPadded *locks = GetNamedLWLockTranche("event_store");

		memset(base, 0, es_shmem_size());
		es_shared->feed_lock = &locks[0].lock;
		es_shared->relay_lock = &locks[1].lock;
		es_shared->max_databases = es_max_databases;
		es_shared->num_backend_slots = es_num_backend_slots();
		es_shared->max_relay_workers = es_max_relay_workers;
		es_shared->max_relay_databases = es_max_databases;
		es_shared->launcher_procno = -1;
		for (int i = 0; i < es_max_databases; i++)
		{
			es_relay_databases[i].worker = -1;
			pg_atomic_init_u32(&es_relay_databases[i].pending, 0);
		}
		for (int i = 0; i < es_max_relay_workers; i++)
			es_relay_workers[i].procno = -1;
		for (int i = 0; i < es_num_backend_slots(); i++)
			pg_atomic_init_u64(&es_backend_slots[i].outbox_first_id, 0);
	}
	es_outbox_shmem_init((char *) es_relay_workers +
						 MAXALIGN(mul_size(es_max_relay_workers, sizeof(EsRelayWorker))),
						 found);
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Called from _PG_init while shared_preload_libraries is processed.
 */
void
es_shmem_init_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = es_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = es_shmem_startup;
}

bool
es_shmem_available(void)
{
	return es_shared != NULL;
}

/*
 * The slot of the calling process.
 */
EsBackendSlot *
es_my_backend_slot(void)
{
	int			procno = ES_MY_PROCNO;

	Assert(procno >= 0 && procno < es_shared->num_backend_slots);
	return &es_backend_slots[procno];
}
