/*-------------------------------------------------------------------------
 *
 * subscription.c
 *	  The session's memory of the subscriptions it fetched from, which
 *	  fences its acknowledgements.
 *
 * Each member's checkpoint row carries a fence, a random value drawn when
 * the subscription is created and again at every reset.  subscription_fetch
 * remembers here, per (subscription, member), the fence it read with the
 * checkpoint; subscription_ack applies only while the row still has that
 * fence.  So an acknowledgement of events fetched before a reset, or from a
 * subscription since dropped and created again under the same name, changes
 * nothing: it can never move a checkpoint past events that the new
 * generation has not delivered yet.  The memory lives for the session (the
 * backend), not the transaction: a consumer may fetch and acknowledge in
 * different transactions of one connection.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_subscription_remember);
PG_FUNCTION_INFO_V1(event_store_subscription_remembered);

/* Subscription names are at most 47 bytes (check_subscription_name). */
#define ES_SUBSCRIPTION_NAME_SIZE 48

typedef struct FetchedKey
{
	char		subscription[ES_SUBSCRIPTION_NAME_SIZE];
	int32		member;
} FetchedKey;

typedef struct FetchedEntry
{
	FetchedKey	key;
	pg_uuid_t	fence;
} FetchedEntry;

static HTAB *fetched = NULL;

/*
 * Fill key from the arguments (subscription, member); false when the name
 * cannot be a subscription's (the SQL callers check names first).
 */
static bool
fetched_key(FunctionCallInfo fcinfo, FetchedKey *key)
{
	text	   *name;
	int			len;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		return false;
	name = PG_GETARG_TEXT_PP(0);
	len = VARSIZE_ANY_EXHDR(name);
	if (len >= ES_SUBSCRIPTION_NAME_SIZE)
		return false;
	memset(key, 0, sizeof(FetchedKey));
	memcpy(key->subscription, VARDATA_ANY(name), len);
	key->member = PG_GETARG_INT32(1);
	return true;
}

/*
 * subscription_remember(subscription, member, fence): this session fetched
 * from the member's checkpoint while it had this fence.
 */
Datum
event_store_subscription_remember(PG_FUNCTION_ARGS)
{
	FetchedKey	key;
	FetchedEntry *entry;

	if (!fetched_key(fcinfo, &key) || PG_ARGISNULL(2))
		PG_RETURN_VOID();
	if (fetched == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(FetchedKey);
		ctl.entrysize = sizeof(FetchedEntry);
		ctl.hcxt = TopMemoryContext;
		fetched = hash_create("event_store fetched subscriptions", 16, &ctl,
							  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(fetched, &key, HASH_ENTER, NULL);
	entry->fence = *PG_GETARG_UUID_P(2);
	PG_RETURN_VOID();
}

/*
 * subscription_remembered(subscription, member): the fence this session
 * last fetched with, or NULL when it never fetched from that member.
 */
Datum
event_store_subscription_remembered(PG_FUNCTION_ARGS)
{
	FetchedKey	key;
	FetchedEntry *entry;
	pg_uuid_t  *fence;

	if (fetched == NULL || !fetched_key(fcinfo, &key))
		PG_RETURN_NULL();
	entry = hash_search(fetched, &key, HASH_FIND, NULL);
	if (entry == NULL)
		PG_RETURN_NULL();
	fence = palloc(sizeof(pg_uuid_t));
	*fence = entry->fence;
	PG_RETURN_UUID_P(fence);
}
