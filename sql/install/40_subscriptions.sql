--------------------------------------------------------------------------
-- Durable subscriptions
--------------------------------------------------------------------------

CREATE TABLE event_store.subscriptions (
	name		text COLLATE "C" PRIMARY KEY,
	category	text COLLATE "C",	-- NULL: the whole feed
	group_size	integer NOT NULL CHECK (group_size >= 1),
	created_at	timestamptz NOT NULL DEFAULT now(),
	event_types	text[],				-- NULL: every type
	stream_prefix text COLLATE "C"	-- NULL: every stream
);

-- One checkpoint per member of the subscription's consumer group: the
-- last position the member acknowledged (0: none yet).  The fence is new
-- at creation and at every reset: acknowledgements of what a session
-- fetched under another fence are not applied (src/subscription.c).  No
-- foreign key to subscriptions: a parallel pg_restore loads the two tables
-- in any order (the subscription functions keep them consistent, and the
-- trigger below removes a subscription's checkpoints with it).
CREATE TABLE event_store.subscription_checkpoints (
	subscription text COLLATE "C" NOT NULL,
	member		integer NOT NULL,
	position	bigint NOT NULL CHECK (position >= 0),
	updated_at	timestamptz NOT NULL DEFAULT now(),
	fence		uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid(),
	PRIMARY KEY (subscription, member)
);

-- Internal helper, never granted: the trigger that removes a dropped
-- subscription's checkpoints.
CREATE FUNCTION event_store.subscription_deleted()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	DELETE FROM event_store.subscription_checkpoints AS c
	WHERE c.subscription = OLD.name;
	RETURN NULL;
END
$$;

CREATE TRIGGER subscription_deleted
	AFTER DELETE ON event_store.subscriptions
	FOR EACH ROW EXECUTE FUNCTION event_store.subscription_deleted();

REVOKE ALL ON event_store.subscriptions, event_store.subscription_checkpoints
	FROM PUBLIC;

-- The channel the relay NOTIFYs when a subscription has new events.
CREATE FUNCTION event_store.subscription_channel(subscription text)
RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT 'event_store_sub_' || $1 $$;

-- Internal helper, never granted: raise the contract's error for a bad
-- subscription name.
CREATE FUNCTION event_store.check_subscription_name(subscription text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF subscription IS NULL THEN
		RAISE EXCEPTION 'subscription name must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF octet_length(subscription) > 47 THEN
		RAISE EXCEPTION 'subscription name "%..." is too long', left(subscription, 32)
			USING ERRCODE = 'program_limit_exceeded',
				  DETAIL = format('Subscription names are at most 47 bytes; this one has %s.',
								  octet_length(subscription));
	END IF;
	IF subscription !~ '^[a-z][a-z0-9_]*$' THEN
		RAISE EXCEPTION 'invalid subscription name "%"', subscription
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Use lower-case letters, digits and underscores, starting with a letter.';
	END IF;
END
$$;

-- Internal helper, never granted: the subscription's row, or the
-- contract's error when there is none.
CREATE FUNCTION event_store.find_subscription(subscription text)
RETURNS event_store.subscriptions
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	found_row event_store.subscriptions;
BEGIN
	PERFORM event_store.check_subscription_name(subscription);
	SELECT * INTO found_row FROM event_store.subscriptions AS s
	WHERE s.name = subscription;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" does not exist', subscription
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN found_row;
END
$$;

-- Internal helper, never granted: the error for a member outside the group.
CREATE FUNCTION event_store.check_member(sub event_store.subscriptions, member integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF member IS NULL THEN
		RAISE EXCEPTION 'member must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF member < 0 OR member >= sub.group_size THEN
		RAISE EXCEPTION 'member % is out of range for subscription "%"', member, sub.name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The subscription has a consumer group of size %s: members 0 to %s.',
								  sub.group_size, sub.group_size - 1);
	END IF;
END
$$;

-- Internal helper, never granted: refuse to start a subscription beyond
-- the feed head (one above it is the next event): the events below the
-- start, still to be written, would be skipped.  Where the feed cannot be
-- read (a logical replica) there is no head to compare with.
CREATE FUNCTION event_store.check_start_position(from_position bigint)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	head bigint;
BEGIN
	IF from_position > 1 AND event_store.feed_state() = 'primary' THEN
		head := event_store.feed_head();
		IF from_position > head + 1 THEN
			RAISE EXCEPTION 'from_position % is beyond the feed head %', from_position, head
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = CASE WHEN from_position - 1 = head + 1
							   THEN format('The event at position %s would be skipped when it is written.', head + 1)
							   ELSE format('The events at positions %s to %s would be skipped when they are written.',
										   head + 1, from_position - 1) END,
					  HINT = 'Start at most one above feed_head().';
		END IF;
	END IF;
END
$$;

CREATE FUNCTION event_store.subscription_create(
	subscription text,
	category text DEFAULT NULL,
	group_size integer DEFAULT 1,
	from_position bigint DEFAULT 0,
	if_not_exists boolean DEFAULT false,
	event_types text[] DEFAULT NULL,
	stream_prefix text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	checkpoint bigint;
	existing event_store.subscriptions;
BEGIN
	PERFORM event_store.check_subscription_name(subscription);
	PERFORM event_store.check_category(category);
	IF group_size IS NULL THEN
		RAISE EXCEPTION 'group_size must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF group_size < 1 THEN
		RAISE EXCEPTION 'consumer group size must be at least 1'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF group_size > 1024 THEN
		RAISE EXCEPTION 'consumer group size must be at most 1024'
			USING ERRCODE = 'program_limit_exceeded';
	END IF;
	IF from_position < 0 THEN
		RAISE EXCEPTION 'from_position must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF if_not_exists IS NULL THEN
		RAISE EXCEPTION 'if_not_exists must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- The feed's own checks of the filter (no rows are read).
	PERFORM FROM event_store.read_all(0, 0, event_types, stream_prefix);

	-- NULL: only events after the current head.
	checkpoint := CASE WHEN from_position IS NULL THEN event_store.feed_head()
					   ELSE greatest(from_position - 1, 0) END;
	PERFORM event_store.check_start_position(from_position);

	INSERT INTO event_store.subscriptions AS s
		(name, category, group_size, event_types, stream_prefix)
	VALUES (subscription, category, group_size, event_types, stream_prefix)
	ON CONFLICT (name) DO NOTHING;
	IF NOT FOUND THEN
		-- Waited for a concurrent creator, if any: its row is committed.
		SELECT * INTO existing FROM event_store.subscriptions AS s
		WHERE s.name = subscription;
		IF if_not_exists AND existing.category IS NOT DISTINCT FROM category
				AND existing.group_size = group_size
				AND existing.event_types IS NOT DISTINCT FROM event_types
				AND existing.stream_prefix IS NOT DISTINCT FROM stream_prefix THEN
			RAISE NOTICE 'subscription "%" already exists, skipping', subscription;
			RETURN;
		END IF;
		IF if_not_exists THEN
			RAISE EXCEPTION 'subscription "%" already exists with another definition', subscription
				USING ERRCODE = 'duplicate_object',
					  DETAIL = format('It has category %s, a consumer group of size %s, event types %s and stream prefix %s.',
									  coalesce(quote_literal(existing.category), 'NULL'),
									  existing.group_size,
									  coalesce(quote_literal(existing.event_types::text), 'NULL'),
									  coalesce(quote_literal(existing.stream_prefix), 'NULL'));
		END IF;
		RAISE EXCEPTION 'subscription "%" already exists', subscription
			USING ERRCODE = 'duplicate_object';
	END IF;
	INSERT INTO event_store.subscription_checkpoints (subscription, member, position)
	SELECT subscription_create.subscription, m, checkpoint
	FROM generate_series(0, group_size - 1) AS m;
	IF NOT event_store.relay_available() THEN
		RAISE WARNING 'the relay workers are not running'
			USING DETAIL = format('The event_store library is not in shared_preload_libraries: LISTEN %s will not fire.',
								  event_store.subscription_channel(subscription)),
				  HINT = 'Poll subscription_fetch, or add event_store to shared_preload_libraries and restart the server.';
	END IF;
	-- The relay worker announces subscriptions: let it know there is one.
	PERFORM event_store.relay_wake();
END
$$;
COMMENT ON FUNCTION event_store.subscription_create(text, text, integer, bigint, boolean, text[], text) IS
	'Create a durable subscription to the feed or a category, optionally filtered by event types and stream prefix.';

CREATE FUNCTION event_store.subscription_drop(subscription text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.find_subscription(subscription);
	-- Waits for the members' fetches in progress (they lock their row).
	DELETE FROM event_store.subscriptions AS s WHERE s.name = subscription;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" does not exist', subscription
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

-- The next events after the member's checkpoint, in position order.
-- Reading does not move the checkpoint: subscription_ack does.  The fetch
-- locks the member's checkpoint until the transaction ends, so a second
-- fetcher of the same member waits: a member is processed by one
-- transaction at a time.  In C (src/subscription.c): it reads the feed
-- straight into its result, as read_all does.
CREATE FUNCTION event_store.subscription_fetch(
	subscription text,
	max_count integer DEFAULT 100,
	member integer DEFAULT 0)
RETURNS SETOF event_store.event
AS 'MODULE_PATHNAME', 'event_store_subscription_fetch'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
ROWS 100;

-- Record that the member has processed everything up to up_to_position.
-- A position below the checkpoint changes nothing (a late or repeated ack);
-- one beyond the feed head is refused, since events may still commit
-- below it.  An ack from a session whose last fetch of this member was
-- before a reset (or from a dropped incarnation of the subscription)
-- changes nothing either, with a warning.  Returns the member's checkpoint:
-- less than up_to_position exactly when the ack was not applied.  In C
-- (src/subscription.c).
CREATE FUNCTION event_store.subscription_ack(
	subscription text,
	up_to_position bigint,
	member integer DEFAULT 0)
RETURNS bigint
AS 'MODULE_PATHNAME', 'event_store_subscription_ack'
LANGUAGE C VOLATILE PARALLEL UNSAFE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

-- Move every member's checkpoint so that the next fetch starts at
-- from_position (replay, or skip ahead), under a new fence.  Waits for the
-- members' fetches in progress; takes the members in order.
CREATE FUNCTION event_store.subscription_reset(
	subscription text,
	from_position bigint DEFAULT 0)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sub event_store.subscriptions := event_store.find_subscription(subscription);
BEGIN
	IF from_position IS NULL THEN
		RAISE EXCEPTION 'from_position must not be null'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF from_position < 0 THEN
		RAISE EXCEPTION 'from_position must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	PERFORM event_store.check_start_position(from_position);
	PERFORM FROM event_store.subscription_checkpoints AS c
	WHERE c.subscription = sub.name
	ORDER BY c.member
	FOR NO KEY UPDATE;
	UPDATE event_store.subscription_checkpoints AS c
	SET position = greatest(from_position - 1, 0), updated_at = now(),
		fence = pg_catalog.gen_random_uuid()
	WHERE c.subscription = sub.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'subscription "%" does not exist', subscription
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

-- Where each member of each subscription stands.
CREATE VIEW event_store.subscription_lag AS
SELECT s.name AS subscription,
	   s.category,
	   c.member,
	   s.group_size,
	   c.position AS checkpoint,
	   h.head,
	   pending.events AS pending_events,
	   now() - pending.oldest AS oldest_pending_age,
	   c.updated_at AS acked_at,
	   event_store.subscription_channel(s.name) AS channel
FROM event_store.subscriptions AS s
JOIN event_store.subscription_checkpoints AS c ON c.subscription = s.name
CROSS JOIN (SELECT CASE WHEN event_store.feed_state() = 'primary'
				   THEN event_store.feed_head() END AS head) AS h
CROSS JOIN LATERAL (
	SELECT CASE WHEN h.head IS NOT NULL THEN count(*) END AS events,
		   min(e.recorded_at) AS oldest
	FROM event_store.events AS e
	WHERE e.position > c.position AND e.position <= h.head
	  AND (s.category IS NULL OR event_store.category(e.stream) = s.category)
	  AND (s.group_size = 1 OR
		   event_store.consumer_group_member(e.stream, s.group_size) = c.member)
	  AND (s.event_types IS NULL OR e.type = ANY (s.event_types))
	  AND (s.stream_prefix IS NULL OR starts_with(e.stream, s.stream_prefix))
) AS pending;

REVOKE ALL ON event_store.subscription_lag FROM PUBLIC;
GRANT SELECT ON event_store.subscription_lag TO event_store_reader;
