-- read_category(category, from_position, max_count, consumer_group_member,
-- consumer_group_size): the feed of one category, split among the members
-- of a consumer group by stream.
SELECT reset_event_store();

-- Twelve order streams of three events, interleaved, and some noise.
SELECT event_store.append_event('order-' || s, 'Step', to_jsonb(n))
FROM generate_series(1, 3) AS n, generate_series(1, 12) AS s
ORDER BY n, s;
SELECT event_store.append_event('orders-1', 'Other', '0');
SELECT event_store.append_event('order', 'Other', '0');
SELECT event_store.append_event('user-1', 'Other', '0');

-- The category is the part before the first '-': "order-1" and "order" are
-- both in category "order"; "orders-1" is not.
SELECT count(*), min(position), max(position) FROM event_store.read_category('order');
SELECT DISTINCT stream FROM event_store.read_category('order') WHERE stream NOT LIKE 'order-%';
SELECT count(*) FROM event_store.read_category('orders');
SELECT count(*) FROM event_store.read_category('ORDER');
SELECT count(*) FROM event_store.read_category('ord');

-- from_position inclusive, max_count.
SELECT position, stream FROM event_store.read_category('order', 13, 3);

-- A consumer group of three: every event to exactly one member, each
-- stream to one member only, and each member's events in position order.
CREATE TEMP TABLE members AS
SELECT m AS member, e.*
FROM generate_series(0, 2) AS m,
	 LATERAL event_store.read_category('order', 0, 1000, m, 3) AS e;
SELECT count(*) AS delivered, count(DISTINCT position) AS distinct_events,
	   (SELECT count(*) FROM event_store.read_category('order')) AS in_category
FROM members;
SELECT count(*) AS streams_on_two_members
FROM (SELECT stream FROM members GROUP BY stream HAVING count(DISTINCT member) > 1) AS s;
SELECT bool_and(member = event_store.consumer_group_member(stream, 3)) AS stable_assignment
FROM members;
SELECT member, count(*) > 0 AS has_events FROM members GROUP BY member ORDER BY member;
-- A group of one is the whole category.
SELECT count(*) FROM event_store.read_category('order', 0, 1000, 0, 1);

-- The assignment is a stable function of the stream name.
SELECT event_store.stream_hash('order-1'), event_store.consumer_group_member('order-1', 3),
	   event_store.consumer_group_member('order-1', 1000);

-- The views of streams and categories (this test starts from an empty
-- store, so they count exactly the events above).
SELECT category, streams, events, last_position FROM event_store.categories ORDER BY category;
SELECT stream, category, version, events, last_position, deleted
FROM event_store.streams WHERE category = 'order' ORDER BY last_position DESC LIMIT 3;
SELECT count(*) AS order_streams FROM event_store.streams WHERE category = 'order';
SELECT head, last_position, held_back_events FROM event_store.feed_status;

-- Bad input.
SELECT try($$SELECT * FROM event_store.read_category(NULL)$$);
SELECT try($$SELECT * FROM event_store.read_category(repeat('c', 1025))$$);
-- A category no stream can be in: empty, or with a '-'.
SELECT try($$SELECT * FROM event_store.read_category('')$$);
SELECT try($$SELECT * FROM event_store.read_category('order-1')$$);
SELECT try($$SELECT * FROM event_store.read_category('-')$$);
SELECT try($$SELECT * FROM event_store.read_category('order', -1)$$);
SELECT try($$SELECT * FROM event_store.read_category('order', 0, -1)$$);
SELECT try($$SELECT * FROM event_store.read_category('order', 0, 10, 0, 0)$$);
SELECT try($$SELECT * FROM event_store.read_category('order', 0, 10, 0, -2)$$);
SELECT try($$SELECT * FROM event_store.read_category('order', 0, 10, 3, 3)$$);
SELECT try($$SELECT * FROM event_store.read_category('order', 0, 10, -1, 3)$$);
SELECT try($$SELECT * FROM event_store.read_category('order', 0, 10, 1, NULL)$$);
SELECT try($$SELECT * FROM event_store.read_category('order', 0, 10, NULL, 3)$$);
SELECT try($$SELECT event_store.consumer_group_member('order-1', 0)$$);
