/*-------------------------------------------------------------------------
 *
 * replica.c
 *	  Where the feed can be read and where events can be appended: the
 *	  primary, a hot standby, a logical replica of the events table.
 *
 * The safe head of the feed (feed.c) is computed from the reservations of
 * the running appenders of this server.  Two kinds of copy of a store have
 * events whose positions were reserved elsewhere:
 *
 *	- A hot standby replays the primary's WAL.  The primary reserves a
 *	  position in shared memory before it inserts (and TOASTs) the row, so
 *	  the row reaches the WAL some time after the reservation; a later
 *	  position can be replayed first.  Nothing in the WAL tells the standby
 *	  which positions are reserved, so it cannot know its safe head: feed
 *	  reads are refused there.  read_stream stays allowed: a stream's
 *	  versions are written under the stream's lock and have no gaps.
 *	- A logical replica (the events table is the target of a subscription)
 *	  receives rows from the apply worker in the publisher's commit order,
 *	  not in position order, so a later position can be applied first as
 *	  well.  Feed reads are refused there too, and so are local appends:
 *	  their positions would collide with the replicated ones and stop the
 *	  apply worker.
 *
 * Whether the events table is a subscription's target is read from the
 * pg_subscription_rel cache once per backend and kept until that catalog
 * changes (a syscache callback), so appends and reads pay a comparison.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/xlog.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_subscription_rel.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/inval.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "event_store.h"

typedef enum EsFeedState
{
	ES_FEED_PRIMARY,			/* appends and feed reads work */
	ES_FEED_STANDBY,			/* hot standby: feed reads refused */
	ES_FEED_LOGICAL_REPLICA		/* events replicated in: both refused */
} EsFeedState;

PG_FUNCTION_INFO_V1(event_store_feed_state);

/* What the last lookup found for the events table cached_relid. */
static bool cache_valid = false;
static bool callback_registered = false;
static Oid	cached_relid = InvalidOid;
static Oid	cached_subscription = InvalidOid;

static void
subscription_rel_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	cache_valid = false;
}

/*
 * The subscription whose apply worker writes into events, or InvalidOid
 * when the table is not the target of logical replication.
 */
static Oid
replicating_subscription(Relation events)
{
	Oid			relid = RelationGetRelid(events);
	CatCList   *list;
	Oid			subscription = InvalidOid;

	if (!callback_registered)
	{
		CacheRegisterSyscacheCallback(SUBSCRIPTIONRELMAP,
									  subscription_rel_changed, (Datum) 0);
		callback_registered = true;
	}
	if (cache_valid && cached_relid == relid)
		return cached_subscription;

	/*
	 * Marked valid before the lookup: an invalidation that arrives during it
	 * makes the next call look again.
	 */
	cache_valid = true;
	list = SearchSysCacheList1(SUBSCRIPTIONRELMAP, ObjectIdGetDatum(relid));
	if (list->n_members > 0)
	{
		HeapTuple	tuple = &list->members[0]->tuple;

		subscription = ((Form_pg_subscription_rel) GETSTRUCT(tuple))->srsubid;
	}
	ReleaseSysCacheList(list);
	cached_relid = relid;
	cached_subscription = subscription;
	return subscription;
}

/* What feed_state() reports. */
static EsFeedState
es_feed_state(Relation events)
{
	if (RecoveryInProgress())
		return ES_FEED_STANDBY;
	if (OidIsValid(replicating_subscription(events)))
		return ES_FEED_LOGICAL_REPLICA;
	return ES_FEED_PRIMARY;
}

static char *
subscription_name(Relation events)
{
	char	   *name = get_subscription_name(replicating_subscription(events), true);

	return name != NULL ? name : pstrdup("?");
}

/*
 * Whether the feed can be read here (es_check_feed_readable would pass).
 */
bool
es_feed_readable(Relation events)
{
	return es_feed_state(events) == ES_FEED_PRIMARY;
}

/*
 * Refuse to read the feed (or its head) where its safe head is unknown.
 */
void
es_check_feed_readable(Relation events)
{
	switch (es_feed_state(events))
	{
		case ES_FEED_PRIMARY:
			break;
		case ES_FEED_STANDBY:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the feed cannot be read on a hot standby"),
					 errdetail("A standby cannot know which positions the primary has reserved for rows not yet replayed, so a reader could skip events."),
					 errhint("Read the feed and subscriptions on the primary; read_stream works on a standby.")));
			break;
		case ES_FEED_LOGICAL_REPLICA:
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the feed cannot be read on a logical replica"),
					 errdetail("Table \"events\" is replicated by subscription \"%s\", which applies transactions in commit order, not in position order, so a reader could skip events.",
							   subscription_name(events)),
					 errhint("Read the feed and subscriptions on the publisher; read_stream works on a replica.")));
			break;
	}
}

/*
 * Refuse to append where the events table receives rows by logical
 * replication.  (A hot standby refuses every write already.)
 */
void
es_check_appendable(Relation events)
{
	if (OidIsValid(replicating_subscription(events)))
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot append events on a logical replica"),
				 errdetail("Table \"events\" is replicated by subscription \"%s\"; positions are assigned by the publisher.",
						   subscription_name(events)),
				 errhint("Append on the publisher.")));
}

/*
 * feed_state(): 'primary' where the feed is read and written, 'standby' on
 * a hot standby, 'logical replica' where the events table is the target of
 * a logical replication subscription.
 */
Datum
event_store_feed_state(PG_FUNCTION_ARGS)
{
	Relation	events = es_open_relation("events", AccessShareLock);
	EsFeedState state = es_feed_state(events);
	const char *name = "primary";

	table_close(events, AccessShareLock);
	if (state == ES_FEED_STANDBY)
		name = "standby";
	else if (state == ES_FEED_LOGICAL_REPLICA)
		name = "logical replica";
	PG_RETURN_TEXT_P(cstring_to_text(name));
}
