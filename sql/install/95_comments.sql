--------------------------------------------------------------------------
-- Comments: every object of the extension says what it is.  Internal
-- helpers say "Internal:" and are never granted (test/pgtap/privileges.sql
-- checks both).
--------------------------------------------------------------------------

-- The event log and the feed.
COMMENT ON TYPE event_store.event IS
	'An event as read_stream, read_all, read_category and subscription_fetch return it.';
COMMENT ON TABLE event_store.events IS
	'The event log: one row per event, in global position order.';
COMMENT ON SEQUENCE event_store.position_high_water IS
	'Durable high-water mark of the feed''s positions: no position at or below it is handed out again after a crash.';
COMMENT ON FUNCTION event_store.append(text, jsonb, bigint) IS
	'Appends one event or an array of events to a stream, optionally at an expected version; returns the stream''s new version.';
COMMENT ON FUNCTION event_store.append_event(text, text, jsonb, jsonb, bigint, uuid) IS
	'Appends one event given by its type, data, metadata and id; returns the stream''s new version.';
COMMENT ON FUNCTION event_store.read_stream(text, bigint, integer, boolean) IS
	'Reads the events of one stream, forward or backward from a version.';
COMMENT ON FUNCTION event_store.stream_version(text) IS
	'Returns the version of the last event of a stream, or -1 when it has none.';
COMMENT ON FUNCTION event_store.category(text) IS
	'Returns the category of a stream name: the part before its first "-".';
COMMENT ON FUNCTION event_store.stream_hash(text) IS
	'Returns the stable 64-bit hash of a stream name that consumer groups use.';
COMMENT ON FUNCTION event_store.feed_head() IS
	'Returns the gap-safe head of the feed: every event at or below it is visible.';
COMMENT ON FUNCTION event_store.feed_state() IS
	'Returns whether this server is the primary, a hot standby or a logical replica, as the feed sees it.';
COMMENT ON FUNCTION event_store.consumer_group_member(text, integer) IS
	'Returns the member of a consumer group of the given size that a stream belongs to.';
COMMENT ON VIEW event_store.feed_status IS
	'The feed''s head, the last position handed out, and the state of this server.';
COMMENT ON VIEW event_store.streams IS
	'One row per stream: its category, version, event count and whether it is deleted.';
COMMENT ON VIEW event_store.categories IS
	'One row per category: its streams and events.';

-- Subscriptions.
COMMENT ON TABLE event_store.subscriptions IS
	'Subscriptions: a name, an optional category, a consumer group size.';
COMMENT ON TABLE event_store.subscription_checkpoints IS
	'Where each member of each subscription stands in the feed.';
COMMENT ON FUNCTION event_store.subscription_drop(text) IS
	'Drops a subscription and its checkpoints.';
COMMENT ON FUNCTION event_store.subscription_fetch(text, integer, integer) IS
	'Returns the next events after a member''s checkpoint, gap-safe, without moving it.';
COMMENT ON FUNCTION event_store.subscription_ack(text, bigint, integer) IS
	'Moves a member''s checkpoint up to a position; returns the checkpoint.';
COMMENT ON FUNCTION event_store.subscription_reset(text, bigint) IS
	'Moves every member of a subscription to a position, for a replay or a skip.';
COMMENT ON FUNCTION event_store.subscription_channel(text) IS
	'Returns the channel to LISTEN on to be woken when a subscription has new events.';
COMMENT ON VIEW event_store.subscription_lag IS
	'Per subscription and member: its checkpoint, the feed head, the pending events and its channel.';

-- The outbox.
COMMENT ON TYPE event_store.outbox_message IS
	'A message as outbox_claim returns it, with the receipt that acknowledges it.';
COMMENT ON TABLE event_store.outbox IS
	'The outbox: messages waiting to be relayed or claimed.';
COMMENT ON SEQUENCE event_store.outbox_id_seq IS
	'Ids of outbox messages, in send order.';
COMMENT ON TABLE event_store.outbox_dead_letters IS
	'Messages that used up their attempts, with their last error.';
COMMENT ON TABLE event_store.outbox_topics IS
	'Per-topic settings: attempts, backoff and lease; a topic without a row uses the defaults.';
COMMENT ON TABLE event_store.event_routes IS
	'Routes from the event log to the outbox: events of a category and type are sent to a topic.';
COMMENT ON FUNCTION event_store.outbox_ack(uuid[]) IS
	'Acknowledges claimed messages by their receipts; returns how many were deleted.';
COMMENT ON FUNCTION event_store.outbox_ack(text[]) IS
	'Acknowledges claimed messages by their receipts; returns how many were deleted.';
COMMENT ON FUNCTION event_store.outbox_ack(text) IS
	'Acknowledges claimed messages by their receipts, given as an array literal; returns how many were deleted.';
COMMENT ON FUNCTION event_store.outbox_ack_ids(bigint[]) IS
	'Deletes messages by id, whoever claimed them: for operators.';
COMMENT ON FUNCTION event_store.outbox_ack(bigint[]) IS
	'Deletes messages by id, whoever claimed them: for operators (the same as outbox_ack_ids).';
COMMENT ON FUNCTION event_store.outbox_nack(uuid[], interval, text) IS
	'Returns claimed messages to the queue after a delay or the topic''s backoff, or to the dead letters after their last attempt.';
COMMENT ON FUNCTION event_store.outbox_nack(text[], interval, text) IS
	'Returns claimed messages to the queue after a delay or the topic''s backoff, or to the dead letters after their last attempt.';
COMMENT ON FUNCTION event_store.outbox_nack(text, interval, text) IS
	'Returns claimed messages, given as an array literal of receipts, to the queue or to the dead letters.';
COMMENT ON FUNCTION event_store.outbox_nack_ids(bigint[], interval, text) IS
	'Returns messages by id to the queue or to the dead letters, whoever claimed them: for operators.';
COMMENT ON FUNCTION event_store.outbox_nack(bigint[], interval, text) IS
	'Returns messages by id to the queue or to the dead letters, whoever claimed them: for operators (the same as outbox_nack_ids).';
COMMENT ON FUNCTION event_store.outbox_configure(text, integer, interval, interval, interval, text) IS
	'Sets a topic''s attempts, backoff, lease and delivery (table or wal); NULL keeps the current value.';
COMMENT ON FUNCTION event_store.outbox_topic_settings(text) IS
	'Returns the settings in effect for a topic: its own, or the defaults.';
COMMENT ON FUNCTION event_store.outbox_redrive(bigint[]) IS
	'Puts dead letters back in the queue with their attempts reset; returns how many.';
COMMENT ON FUNCTION event_store.outbox_redrive_topic(text) IS
	'Puts every dead letter of a topic back in the queue; returns how many.';
COMMENT ON FUNCTION event_store.outbox_purge_dead_letters(bigint[]) IS
	'Deletes dead letters by id; returns how many.';
COMMENT ON FUNCTION event_store.route_events(text, text, text) IS
	'Routes the events of a category and type (NULL: any) to a topic; returns whether the route is new.';
COMMENT ON FUNCTION event_store.unroute_events(text, text, text) IS
	'Removes a route from the event log to a topic; returns whether it existed.';
COMMENT ON VIEW event_store.outbox_depth IS
	'Per topic: available, blocked, leased, delayed and dead messages, and the age of the oldest.';

-- The relay.
COMMENT ON TABLE event_store.relay_routes IS
	'Routes from outbox topics to sinks, which the relay workers publish to.';
COMMENT ON TABLE event_store.relay_parked IS
	'Copies of relayed messages too large to publish inline, for relay_fetch.';
COMMENT ON FUNCTION event_store.relay_unroute(text) IS
	'Removes the route of a topic; its messages stay in the outbox.';
COMMENT ON FUNCTION event_store.relay_pause(text) IS
	'Pauses the relay of a topic; its messages stay in the outbox.';
COMMENT ON FUNCTION event_store.relay_resume(text) IS
	'Resumes the relay of a paused topic.';
COMMENT ON FUNCTION event_store.relay_fetch(bigint) IS
	'Returns the payload and headers of a message published as a reference.';
COMMENT ON FUNCTION event_store.relay_worker_status() IS
	'Returns the launcher and this database''s relay worker, as relay_workers shows them.';
COMMENT ON FUNCTION event_store.relay_available() IS
	'Returns whether relay workers can run: the library is in shared_preload_libraries.';
COMMENT ON VIEW event_store.relay_workers IS
	'The launcher and this database''s relay worker: state, counters, last error.';

-- Internal helpers.
COMMENT ON FUNCTION event_store.read_feed(text, bigint, integer, integer, integer, text[], text) IS
	'Internal: the gap-safe feed that the subscription functions read.';
COMMENT ON FUNCTION event_store.lock_stream(text) IS
	'Internal: takes the append lock of a stream, for the lifecycle functions.';
COMMENT ON FUNCTION event_store.read_feed_covered() IS
	'Internal: how far the session''s last read_feed covered the feed.';
COMMENT ON FUNCTION event_store.scrub_page(text, bigint) IS
	'Internal: wipes the free space of a page that held erased data.';
COMMENT ON FUNCTION event_store.events_loaded() IS
	'Internal: trigger that resets the feed''s counter when rows enter the log without append.';
COMMENT ON FUNCTION event_store.check_subscription_name(text) IS
	'Internal: raises the error for a bad subscription name.';
COMMENT ON FUNCTION event_store.check_start_position(bigint) IS
	'Internal: raises the error for a subscription start beyond the feed head.';
COMMENT ON FUNCTION event_store.check_stream(text) IS
	'Internal: raises the error for a NULL, empty or too long stream name.';
COMMENT ON FUNCTION event_store.find_subscription(text) IS
	'Internal: the row of a subscription, or the error for one that does not exist.';
COMMENT ON FUNCTION event_store.check_member(event_store.subscriptions, integer) IS
	'Internal: raises the error for a member outside a subscription''s consumer group.';
COMMENT ON FUNCTION event_store.subscription_deleted() IS
	'Internal: trigger that removes the checkpoints of a dropped subscription.';
COMMENT ON FUNCTION event_store.check_topic(text) IS
	'Internal: raises the error for a bad topic.';
COMMENT ON FUNCTION event_store.check_category(text) IS
	'Internal: raises the error for a category no stream can be in; NULL passes.';
COMMENT ON FUNCTION event_store.check_event_type(text) IS
	'Internal: raises the error for a bad event type to match; NULL passes.';
COMMENT ON FUNCTION event_store.outbox_new_receipt(bigint) IS
	'Internal: a fresh claim receipt for a message id.';
COMMENT ON FUNCTION event_store.outbox_reinsert_begin(bigint[]) IS
	'Internal: tells claims that this transaction inserts outbox rows with these earlier ids.';
COMMENT ON FUNCTION event_store.event_routes_changed() IS
	'Internal: trigger that tells every session to reload the event routes.';
COMMENT ON FUNCTION event_store.relay_set_paused(text, boolean) IS
	'Internal: pauses or resumes the relay of a topic.';
COMMENT ON FUNCTION event_store.relay_wake() IS
	'Internal: wakes the relay of this database when the transaction commits.';
COMMENT ON FUNCTION event_store.relay_start() IS
	'Internal: starts the relay of this database when CREATE EXTENSION commits.';
COMMENT ON FUNCTION event_store.relay_check() IS
	'Internal: warns when no relay worker can serve this database.';
