--------------------------------------------------------------------------
-- Observability of the event log.  The feed's status is cheap (two index
-- probes and a range scan above the head); streams and categories read the
-- whole table unless filtered by stream (or category): for inspection,
-- not for a tight monitoring loop.
--------------------------------------------------------------------------

-- The feed: its safe head, the last position visible to the caller, how
-- many committed events wait above the head for a transaction that may
-- still commit below them, and where the feed can be read (feed_state):
-- on a standby or a logical replica the head and what depends on it are
-- NULL.
CREATE VIEW event_store.feed_status AS
SELECT h.head,
	   (SELECT max(e.position) FROM event_store.events AS e) AS last_position,
	   CASE WHEN h.head IS NOT NULL THEN
		   (SELECT count(*) FROM event_store.events AS e
			WHERE e.position > h.head) END AS held_back_events,
	   h.state
FROM (SELECT st.state,
			 CASE WHEN st.state = 'primary' THEN event_store.feed_head() END AS head
	  FROM (SELECT event_store.feed_state() AS state) AS st) AS h;

-- One row per stream.
-- A stream is deleted when it ends with the tombstone delete_stream writes
-- (ES_TOMBSTONE_TYPE, src/event_store.h).
CREATE VIEW event_store.streams AS
SELECT e.stream,
	   event_store.category(e.stream) AS category,
	   max(e.version) AS version,
	   count(*) AS events,
	   max(e.position) AS last_position,
	   max(e.recorded_at) AS last_recorded_at,
	   bool_or(e.type = '$stream_deleted') AS deleted
FROM event_store.events AS e
GROUP BY e.stream;

-- One row per category.
CREATE VIEW event_store.categories AS
SELECT event_store.category(e.stream) AS category,
	   count(DISTINCT e.stream) AS streams,
	   count(*) AS events,
	   max(e.position) AS last_position,
	   max(e.recorded_at) AS last_recorded_at
FROM event_store.events AS e
GROUP BY event_store.category(e.stream);

REVOKE ALL ON event_store.feed_status, event_store.streams, event_store.categories
	FROM PUBLIC;
GRANT SELECT ON event_store.feed_status, event_store.streams, event_store.categories
	TO event_store_reader;
