--------------------------------------------------------------------------
-- Privileges.  Functions are executable by PUBLIC by default; take that
-- away from everything the extension creates, then grant per role.
--------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA event_store FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
	event_store.read_stream(text, bigint, integer, boolean),
	event_store.stream_version(text),
	event_store.category(text),
	event_store.stream_hash(text),
	event_store.read_all(bigint, integer, text[], text),
	event_store.read_category(text, bigint, integer, integer, integer, text[], text),
	event_store.feed_head(),
	event_store.feed_state(),
	event_store.consumer_group_member(text, integer),
	event_store.subscription_channel(text),
	event_store.subscription_fetch(text, integer, integer),
	event_store.subscription_ack(text, bigint, integer),
	event_store.relay_fetch(bigint),
	event_store.relay_worker_status(),
	event_store.relay_available(),
	event_store.relay_sink_mask_url(text),
	event_store.relay_sink_mask_options(jsonb),
	event_store.stream_metadata(text)
TO event_store_reader;

GRANT EXECUTE ON FUNCTION
	event_store.append(text, jsonb, bigint),
	event_store.append_event(text, text, jsonb, jsonb, bigint, uuid),
	event_store.outbox_send(text, jsonb, text, jsonb, interval, text, interval),
	event_store.outbox_send_batch(text, jsonb[], text[], jsonb[], interval),
	event_store.outbox_claim(text, integer, interval, interval),
	event_store.outbox_consume(text, integer, interval),
	event_store.outbox_extend(uuid[], interval),
	event_store.outbox_extend(text[], interval),
	event_store.outbox_extend(text, interval),
	event_store.outbox_ack(uuid[]),
	event_store.outbox_ack(text[]),
	event_store.outbox_ack(text),
	event_store.outbox_nack(uuid[], interval, text),
	event_store.outbox_nack(text[], interval, text),
	event_store.outbox_nack(text, interval, text)
TO event_store_writer;

GRANT EXECUTE ON FUNCTION
	event_store.delete_stream(text, bigint, boolean),
	event_store.set_stream_metadata(text, bigint, interval, bigint),
	event_store.scavenge(bigint),
	event_store.erase_stream(text),
	event_store.subscription_create(text, text, integer, bigint, boolean, text[], text),
	event_store.subscription_drop(text),
	event_store.subscription_reset(text, bigint),
	event_store.outbox_ack_ids(bigint[]),
	event_store.outbox_ack(bigint[]),
	event_store.outbox_nack_ids(bigint[], interval, text),
	event_store.outbox_nack(bigint[], interval, text),
	event_store.outbox_configure(text, integer, interval, interval, interval, text),
	event_store.outbox_topic_settings(text),
	event_store.outbox_redrive(bigint[]),
	event_store.outbox_redrive_topic(text),
	event_store.outbox_purge_dead_letters(bigint[]),
	event_store.outbox_dedup_purge(interval),
	event_store.route_events(text, text, text),
	event_store.unroute_events(text, text, text),
	event_store.relay_route(text, text, text),
	event_store.relay_sink_create(text, text, jsonb),
	event_store.relay_sink_drop(text),
	event_store.relay_unroute(text),
	event_store.relay_pause(text),
	event_store.relay_resume(text)
TO event_store_admin;

-- The relay wakes consumer group members for their own streams, on the
-- subscriptions' channels, and retries failed messages by their topic's
-- settings.
GRANT EXECUTE ON FUNCTION event_store.consumer_group_member(text, integer),
	event_store.subscription_channel(text),
	event_store.outbox_topic_settings(text)
	TO event_store_relay;

-- The launcher starts this database's relay worker once the extension is
-- committed.
SELECT event_store.relay_start();
