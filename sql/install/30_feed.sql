--------------------------------------------------------------------------
-- Global feed (gap-safe; see src/feed.c)
--------------------------------------------------------------------------

CREATE FUNCTION event_store.read_all(
	from_position bigint DEFAULT 0,
	max_count integer DEFAULT 1000)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_all'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;

CREATE FUNCTION event_store.read_category(
	category text,
	from_position bigint DEFAULT 0,
	max_count integer DEFAULT 1000,
	consumer_group_member integer DEFAULT NULL,
	consumer_group_size integer DEFAULT NULL)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_category'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 1000;

CREATE FUNCTION event_store.feed_head()
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_feed_head'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

-- Where the feed can be read: 'primary', 'standby' (a hot standby) or
-- 'logical replica' (the events table is a subscription's target); feed
-- reads work only on the primary (src/replica.c).
CREATE FUNCTION event_store.feed_state()
RETURNS text
AS 'MODULE_PATHNAME', 'event_store_feed_state'
LANGUAGE C STABLE PARALLEL RESTRICTED;

CREATE FUNCTION event_store.consumer_group_member(stream text, group_size integer)
RETURNS integer
AS 'MODULE_PATHNAME', 'event_store_consumer_group_member'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- Internal helper, never granted: the feed, optionally one category,
-- optionally one member of a consumer group: what subscriptions read.  The
-- subscription functions call it.
CREATE FUNCTION event_store.read_feed(
	category text,
	from_position bigint,
	max_count integer,
	consumer_group_member integer,
	consumer_group_size integer)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_read_feed'
LANGUAGE C VOLATILE PARALLEL RESTRICTED ROWS 100;
