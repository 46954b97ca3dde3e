-- Durable subscriptions: create, fetch after the checkpoint, acknowledge,
-- competing members, lag, reset, drop.
SELECT reset_event_store();

SELECT event_store.append_event('order-' || s, 'Placed', to_jsonb(s)) FROM generate_series(1, 6) AS s;
SELECT event_store.append_event('user-1', 'Joined', '0');

-- A subscription to the whole feed, from the start.
SELECT event_store.subscription_create('audit');
SELECT position, stream FROM event_store.subscription_fetch('audit', 3);
-- Fetching does not move the checkpoint; acknowledging does.
SELECT position FROM event_store.subscription_fetch('audit', 3);
SELECT event_store.subscription_ack('audit', 3);
SELECT position FROM event_store.subscription_fetch('audit', 3);
-- A late or repeated ack does not move it back.
SELECT event_store.subscription_ack('audit', 2);
SELECT event_store.subscription_ack('audit', 7);
SELECT count(*) FROM event_store.subscription_fetch('audit');

-- A category subscription split between two competing members.
SELECT event_store.subscription_create('shipping', 'order', 2);
SELECT m AS member, array_agg(e.stream ORDER BY e.position) AS streams
FROM generate_series(0, 1) AS m, LATERAL event_store.subscription_fetch('shipping', 100, m) AS e
GROUP BY m ORDER BY m;
SELECT bool_and(e.stream IS NOT NULL) AS all_orders,
	   count(*) = 6 AS each_once
FROM generate_series(0, 1) AS m, LATERAL event_store.subscription_fetch('shipping', 100, m) AS e;
-- Members acknowledge independently.
SELECT event_store.subscription_ack('shipping', max(e.position), 0)
FROM event_store.subscription_fetch('shipping', 100, 0) AS e;
SELECT count(*) FROM event_store.subscription_fetch('shipping', 100, 0);
SELECT count(*) > 0 FROM event_store.subscription_fetch('shipping', 100, 1);

-- Lag: per member, what is pending up to the feed head.
SELECT subscription, category, member, group_size, checkpoint, head, pending_events,
	   oldest_pending_age IS NOT NULL AS has_pending, channel
FROM event_store.subscription_lag ORDER BY subscription, member;

-- Starting at the head (from_position NULL) or at a position.
SELECT event_store.append_event('order-7', 'Placed', '7');
SELECT event_store.subscription_create('live', NULL, 1, NULL);
SELECT count(*) FROM event_store.subscription_fetch('live');
SELECT event_store.append_event('order-8', 'Placed', '8');
SELECT stream FROM event_store.subscription_fetch('live');
SELECT event_store.subscription_create('late', 'order', 1, 5);
SELECT min(position) FROM event_store.subscription_fetch('late');
-- A start more than one above the head would skip events not yet written.
SELECT event_store.feed_head() AS head \gset
SELECT try(format($$SELECT event_store.subscription_create('ahead', NULL, 1, %s)$$, :head + 2));
SELECT try(format($$SELECT event_store.subscription_create('ahead', NULL, 1, %s)$$, :head + 5));
SELECT event_store.subscription_create('next', NULL, 1, :head + 1);
SELECT event_store.append_event('order-9', 'Placed', '9');
SELECT stream FROM event_store.subscription_fetch('next');
SELECT try(format($$SELECT event_store.subscription_reset('next', %s)$$, :head + 3));
SELECT event_store.subscription_reset('next', :head + 2);
SELECT checkpoint FROM event_store.subscription_lag WHERE subscription = 'next';
SELECT event_store.subscription_drop('next');

-- Reset replays from a position.
SELECT event_store.subscription_reset('audit', 2);
SELECT min(position) FROM event_store.subscription_fetch('audit');
SELECT checkpoint FROM event_store.subscription_lag WHERE subscription = 'audit';

-- Drop.
SELECT event_store.subscription_drop('late');
SELECT try($$SELECT * FROM event_store.subscription_fetch('late')$$);
SELECT subscription FROM event_store.subscription_lag GROUP BY subscription ORDER BY 1;

-- Acknowledgements are fenced by the fetch they follow: after a reset, a
-- late ack of what was fetched before it changes nothing, and says so
-- (a warning, and a checkpoint below the position acknowledged).
SELECT event_store.subscription_create('fenced');
SELECT max(position) AS fetched FROM event_store.subscription_fetch('fenced', 5) \gset
SELECT event_store.subscription_reset('fenced', 1);
SELECT event_store.subscription_ack('fenced', :fetched) AS stale_ack;
SELECT checkpoint FROM event_store.subscription_lag WHERE subscription = 'fenced';
-- A fetch after the reset acknowledges normally.
SELECT count(*) FROM event_store.subscription_fetch('fenced', 5);
SELECT event_store.subscription_ack('fenced', :fetched) = :fetched AS applied;
-- Dropped and created again (as a group resize does): the old incarnation's
-- late ack does not reach the new one.
SELECT max(position) AS fetched FROM event_store.subscription_fetch('fenced', 100) \gset
SELECT event_store.subscription_drop('fenced');
SELECT event_store.subscription_create('fenced');
SELECT event_store.subscription_ack('fenced', :fetched) AS stale_ack;
SELECT count(*) FROM event_store.subscription_fetch('fenced', 100);
SELECT event_store.subscription_ack('fenced', :fetched) = :fetched AS applied;
-- A session that never fetched from a member acknowledges unfenced.
SELECT event_store.subscription_create('unfenced');
SELECT event_store.subscription_ack('unfenced', 2);
-- Dropped: every caller gets 42704.
SELECT event_store.subscription_drop('fenced');
SELECT try($$SELECT event_store.subscription_ack('fenced', 1)$$);
SELECT try($$SELECT event_store.subscription_reset('fenced')$$);
SELECT try($$SELECT event_store.subscription_drop('fenced')$$);

-- Create if it does not exist yet; the same definition is skipped, another
-- one is an error.
SELECT event_store.subscription_create('twice', 'order', 2, if_not_exists => true);
SELECT event_store.subscription_create('twice', 'order', 2, if_not_exists => true);
SELECT try($$SELECT event_store.subscription_create('twice', 'order', 3, if_not_exists => true)$$);
SELECT try($$SELECT event_store.subscription_create('twice', NULL, 2, if_not_exists => true)$$);
SELECT try($$SELECT event_store.subscription_create('twice', 'order', 2, if_not_exists => true, stream_prefix => 'order-1')$$);
SELECT try($$SELECT event_store.subscription_create('twice', 'order', 2)$$);
SELECT try($$SELECT event_store.subscription_create('x', if_not_exists => NULL)$$);
SELECT count(*) FROM event_store.subscription_lag WHERE subscription = 'twice';

-- The feed's state on a primary.
SELECT event_store.feed_state();
SELECT head IS NOT NULL AS head_known, held_back_events, state FROM event_store.feed_status;

-- Bad input.
SELECT try($$SELECT event_store.subscription_create('x', '')$$);
SELECT try($$SELECT event_store.subscription_create('x', 'order-1')$$);
SELECT try($$SELECT event_store.subscription_create('audit')$$);
SELECT try($$SELECT event_store.subscription_create(NULL)$$);
SELECT try($$SELECT event_store.subscription_create('')$$);
SELECT try($$SELECT event_store.subscription_create('Has Space')$$);
SELECT try($$SELECT event_store.subscription_create('quote''s')$$);
SELECT try($$SELECT event_store.subscription_create(repeat('s', 48))$$);
SELECT try($$SELECT event_store.subscription_create('x', NULL, 0)$$);
SELECT try($$SELECT event_store.subscription_create('x', NULL, NULL)$$);
SELECT try($$SELECT event_store.subscription_create('x', NULL, 1, -1)$$);
SELECT try($$SELECT event_store.subscription_create('x', repeat('c', 1025))$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch('nope')$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch(NULL)$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch('shipping', 10, 2)$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch('shipping', 10, -1)$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch('shipping', -1)$$);
SELECT try($$SELECT event_store.subscription_ack('nope', 1)$$);
SELECT try($$SELECT event_store.subscription_ack('audit', -1)$$);
SELECT try($$SELECT event_store.subscription_ack('audit', NULL)$$);
SELECT try($$SELECT event_store.subscription_ack('audit', 1000)$$);
SELECT try($$SELECT event_store.subscription_ack('shipping', 1, 5)$$);
SELECT try($$SELECT event_store.subscription_drop('nope')$$);
SELECT try($$SELECT event_store.subscription_reset('nope')$$);
SELECT try($$SELECT event_store.subscription_reset('audit', -3)$$);
-- Every check of the fetch and the ack, in the order they run: the name,
-- the subscription's existence, the member, then the other arguments.
SELECT try($$SELECT * FROM event_store.subscription_fetch('Nope', NULL, NULL)$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch('nope', NULL, NULL)$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch('shipping', NULL, NULL)$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch('shipping', NULL, 0)$$);
SELECT try($$SELECT * FROM event_store.subscription_fetch(repeat('é', 24))$$);
SELECT try($$SELECT event_store.subscription_ack('nope', NULL, NULL)$$);
SELECT try($$SELECT event_store.subscription_ack('shipping', NULL, NULL)$$);
SELECT try($$SELECT event_store.subscription_ack('shipping', -1, 2)$$);
SELECT try($$SELECT event_store.subscription_ack('shipping', 1000, -1)$$);
SELECT try($$SELECT event_store.subscription_ack('shipping', 1000, 0)$$);
SELECT try($$SELECT event_store.subscription_ack(repeat('é', 24), 1)$$);

-- A consumer group member with a filter: its own streams of its own types,
-- and its checkpoint moves past what its filter skipped.
SELECT event_store.subscription_create('grouped', 'order', 2, event_types => '{Placed,Placed}');
SELECT m AS member, array_agg(e.stream ORDER BY e.position) AS streams
FROM generate_series(0, 1) AS m, LATERAL event_store.subscription_fetch('grouped', 100, m) AS e
GROUP BY m ORDER BY m;
SELECT event_store.subscription_create('rare', NULL, 2, stream_prefix => 'nobody-');
SELECT count(*) FROM event_store.subscription_fetch('rare', 10, 1);
SELECT member, checkpoint = head AS past_everything FROM event_store.subscription_lag
WHERE subscription = 'rare' ORDER BY member;

-- Acks in one transaction leave every version of the checkpoint on its
-- page until the page is full: the update that moves the row to another
-- page gives the primary key an entry for it, and the next acks find it.
SELECT event_store.subscription_create('busy');
-- A read-only transaction can neither fetch (a fetch locks its member)
-- nor acknowledge.
BEGIN READ ONLY;
SELECT try($$SELECT count(*) FROM event_store.subscription_fetch('busy', 1)$$);
SELECT try($$SELECT event_store.subscription_ack('busy', 1)$$);
COMMIT;
BEGIN;
SELECT count(*) FROM event_store.subscription_fetch('busy', 1);
SELECT count(*) FILTER (WHERE event_store.subscription_ack('busy', 1) = 1) AS applied
FROM generate_series(1, 300);
SELECT pg_stat_get_xact_tuples_updated(c.oid) - pg_stat_get_xact_tuples_hot_updated(c.oid) > 0
	AS moved_to_another_page
FROM pg_class AS c
WHERE c.oid = 'event_store.subscription_checkpoints'::regclass;
COMMIT;
SELECT checkpoint FROM event_store.subscription_lag WHERE subscription = 'busy';
SELECT event_store.subscription_drop('busy');

-- The consumers' hot path is C, running as the extension's owner with a
-- pinned search_path; the other subscription functions stay SQL.
SELECT p.proname, l.lanname, p.prosecdef, p.proconfig, p.provolatile
FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
WHERE p.pronamespace = 'event_store'::regnamespace
  AND p.proname IN ('subscription_fetch', 'subscription_ack')
ORDER BY 1;
