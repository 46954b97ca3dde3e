/*-------------------------------------------------------------------------
 *
 * feed_announce.c
 *	  The feed announcer: tells LISTENers that the feed moved.
 *
 * The relay worker of a database (relay.c) calls it once per cycle.  When
 * the safe head of the feed moved past the last head announced, it sends
 * NOTIFY event_store_feed with the new head, and NOTIFY
 * event_store_sub_<name> for each subscription with new events (for a
 * consumer group, the payload names the members that have them).  The
 * head is computed first and the subscriptions are looked up with a
 * snapshot taken after it, so no event at or below an announced head is
 * left without its wake-up.  Appending transactions never NOTIFY
 * themselves: NOTIFY serialises committing transactions on a global lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/pg_type_d.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "event_store.h"

/*
 * Above this many new positions, every subscription (every member) is
 * woken rather than looking up which have events: bounded work per cycle.
 */
#define MAX_WAKE_LOOKUP_RANGE 10000

static const char *const has_subscriptions_sql =
"SELECT EXISTS (SELECT FROM event_store.subscriptions)";

static const char *const all_subscriptions_sql =
"SELECT event_store.subscription_channel(s.name), 1, NULL::text"
" FROM event_store.subscriptions AS s";

/*
 * Channels of the subscriptions with events in ($1, $2], and for consumer
 * groups the members whose streams they are.
 */
static const char *const subscriptions_sql =
"SELECT event_store.subscription_channel(s.name), s.group_size,"
"  CASE WHEN s.group_size > 1 THEN ("
"    SELECT string_agg(g.m::text, ',' ORDER BY g.m) FROM ("
"      SELECT DISTINCT event_store.consumer_group_member(e.stream, s.group_size) AS m"
"      FROM event_store.events AS e"
"      WHERE e.position > $1 AND e.position <= $2"
"        AND (s.category IS NULL OR event_store.category(e.stream) = s.category)) AS g)"
"  END"
" FROM event_store.subscriptions AS s"
" WHERE s.category IS NULL OR EXISTS ("
"   SELECT FROM event_store.events AS e"
"   WHERE event_store.category(e.stream) = s.category"
"     AND e.position > $1 AND e.position <= $2)";

/*
 * Announce a new feed head: on the feed's channel, and on the channel of
 * every subscription with events in (announced, head].  known: announced
 * is the last head announced for this instance of the extension (else
 * every subscription is woken).  Returns how many notifications were sent;
 * *new_head is what to remember once this transaction has committed.  Runs
 * inside a transaction of the relay worker, connected to SPI.
 */
int
es_announce_feed(bool known, int64 announced, bool *has_subscriptions,
				 int64 *new_head)
{
	static SPIPlanPtr exists_plan = NULL;
	static SPIPlanPtr subscriptions_plan = NULL;
	static SPIPlanPtr all_plan = NULL;
	Oid			argtypes[2] = {INT8OID, INT8OID};
	Datum		values[2];
	Relation	events;
	int64		head;
	char		payload[32];
	int			notified = 0;
	bool		isnull;

	es_spi_execute(es_prepared_plan(&exists_plan, has_subscriptions_sql, 0, NULL),
				   NULL, true, SPI_OK_SELECT, "subscription");
	*has_subscriptions = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
													SPI_tuptable->tupdesc, 1, &isnull));

	/*
	 * The head first; the subscriptions below are read with a snapshot taken
	 * after it, which sees every event at or below it.
	 */
	events = es_open_relation("events", AccessShareLock);
	head = es_feed_safe_head(events);
	table_close(events, AccessShareLock);
	*new_head = head;
	if (known && head <= announced)
		return 0;
	if (!known && head == 0)
		return 0;

	snprintf(payload, sizeof(payload), INT64_FORMAT, head);
	Async_Notify(ES_FEED_CHANNEL, payload);
	notified++;
	if (!*has_subscriptions)
		return notified;

	values[0] = Int64GetDatum(known ? announced : 0);
	values[1] = Int64GetDatum(head);
	if (!known || head - announced > MAX_WAKE_LOOKUP_RANGE)
	{
		/* Every subscription, every member: bounded work. */
		es_spi_execute(es_prepared_plan(&all_plan, all_subscriptions_sql, 0, NULL),
					   NULL, false, SPI_OK_SELECT, "subscription");
	}
	else
		es_spi_execute(es_prepared_plan(&subscriptions_plan, subscriptions_sql, 2, argtypes),
					   values, false, SPI_OK_SELECT, "subscription");

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tuple = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *channel = SPI_getvalue(tuple, desc, 1);
		int32		group_size = DatumGetInt32(SPI_getbinval(tuple, desc, 2, &isnull));
		char	   *members = SPI_getvalue(tuple, desc, 3);

		if (group_size > 1)
		{
			if (members == NULL)
				continue;		/* only events of other categories, or none */
			Async_Notify(channel, psprintf("%s %s", payload, members));
		}
		else
			Async_Notify(channel, payload);
		notified++;
	}
	return notified;
}

