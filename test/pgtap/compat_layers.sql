-- Shape of the compatibility layers: the signatures and types that Message
-- DB 1.3's and pgmq 1.x's clients call, and who may call them.
BEGIN;
CREATE EXTENSION event_store_message_db;
CREATE EXTENSION event_store_pgmq;
SELECT plan(46);

-- Message DB
SELECT has_type('message_store', 'message', 'composite type message_store.message');
SELECT columns_are('message_store', 'message',
	ARRAY['id', 'stream_name', 'type', 'position', 'global_position', 'data', 'metadata', 'time']);
SELECT col_type_is('message_store', 'message', 'time', 'timestamp without time zone', 'message.time is a timestamp');
SELECT has_function('message_store', 'write_message', ARRAY['character varying', 'character varying', 'character varying', 'jsonb', 'jsonb', 'bigint']);
SELECT function_returns('message_store', 'write_message', ARRAY['character varying', 'character varying', 'character varying', 'jsonb', 'jsonb', 'bigint'], 'bigint');
SELECT has_function('message_store', 'get_stream_messages', ARRAY['character varying', 'bigint', 'bigint', 'character varying']);
SELECT function_returns('message_store', 'get_stream_messages', ARRAY['character varying', 'bigint', 'bigint', 'character varying'], 'setof message_store.message');
SELECT has_function('message_store', 'get_category_messages', ARRAY['character varying', 'bigint', 'bigint', 'character varying', 'bigint', 'bigint', 'character varying']);
SELECT has_function('message_store', 'get_last_stream_message', ARRAY['character varying', 'character varying']);
SELECT has_function('message_store', 'stream_version', ARRAY['character varying']);
SELECT has_function('message_store', 'id', ARRAY['character varying']);
SELECT has_function('message_store', 'cardinal_id', ARRAY['character varying']);
SELECT has_function('message_store', 'category', ARRAY['character varying']);
SELECT has_function('message_store', 'is_category', ARRAY['character varying']);
SELECT has_function('message_store', 'hash_64', ARRAY['character varying']);
SELECT has_function('message_store', 'acquire_lock', ARRAY['character varying']);
SELECT has_function('message_store', 'message_store_version', ARRAY[]::name[]);
SELECT has_view('message_store', 'messages', 'view message_store.messages');
SELECT function_privs_are('message_store', 'write_message', ARRAY['character varying', 'character varying', 'character varying', 'jsonb', 'jsonb', 'bigint'],
	'event_store_reader', ARRAY[]::text[], 'readers do not write messages');
SELECT function_privs_are('message_store', 'write_message', ARRAY['character varying', 'character varying', 'character varying', 'jsonb', 'jsonb', 'bigint'],
	'event_store_writer', ARRAY['EXECUTE'], 'writers write messages');
SELECT function_privs_are('message_store', 'get_category_messages', ARRAY['character varying', 'bigint', 'bigint', 'character varying', 'bigint', 'bigint', 'character varying'],
	'event_store_reader', ARRAY['EXECUTE'], 'readers read categories');
SELECT table_privs_are('message_store', 'messages', 'event_store_reader', ARRAY['SELECT'], 'readers read the messages view');

-- pgmq
SELECT has_type('pgmq', 'message_record', 'composite type pgmq.message_record');
SELECT columns_are('pgmq', 'message_record', ARRAY['msg_id', 'read_ct', 'enqueued_at', 'vt', 'message', 'headers']);
SELECT has_type('pgmq', 'queue_record', 'composite type pgmq.queue_record');
SELECT has_type('pgmq', 'metrics_result', 'composite type pgmq.metrics_result');
SELECT columns_are('pgmq', 'metrics_result', ARRAY['queue_name', 'queue_length', 'newest_msg_age_sec',
	'oldest_msg_age_sec', 'total_messages', 'scrape_time', 'queue_visible_length']);
SELECT has_table('pgmq', 'meta', 'table pgmq.meta');
SELECT has_function('pgmq', 'create', ARRAY['text']);
SELECT has_function('pgmq', 'drop_queue', ARRAY['text']);
SELECT has_function('pgmq', 'list_queues', ARRAY[]::name[]);
SELECT has_function('pgmq', 'purge_queue', ARRAY['text']);
SELECT has_function('pgmq', 'send', ARRAY['text', 'jsonb', 'integer']);
SELECT has_function('pgmq', 'send', ARRAY['text', 'jsonb', 'jsonb', 'timestamp with time zone']);
SELECT has_function('pgmq', 'send_batch', ARRAY['text', 'jsonb[]', 'integer']);
SELECT has_function('pgmq', 'read', ARRAY['text', 'integer', 'integer', 'jsonb']);
SELECT function_returns('pgmq', 'read', ARRAY['text', 'integer', 'integer', 'jsonb'], 'setof pgmq.message_record');
SELECT has_function('pgmq', 'read_with_poll', ARRAY['text', 'integer', 'integer', 'integer', 'integer', 'jsonb']);
SELECT has_function('pgmq', 'pop', ARRAY['text']);
SELECT function_returns('pgmq', 'delete', ARRAY['text', 'bigint'], 'boolean');
SELECT function_returns('pgmq', 'delete', ARRAY['text', 'bigint[]'], 'setof bigint');
SELECT function_returns('pgmq', 'archive', ARRAY['text', 'bigint[]'], 'setof bigint');
SELECT has_function('pgmq', 'set_vt', ARRAY['text', 'bigint', 'integer']);
SELECT function_returns('pgmq', 'metrics', ARRAY['text'], 'pgmq.metrics_result');
SELECT function_privs_are('pgmq', 'purge_queue', ARRAY['text'], 'event_store_writer', ARRAY[]::text[],
	'writers do not purge queues');
SELECT function_privs_are('pgmq', 'purge_queue', ARRAY['text'], 'event_store_admin', ARRAY['EXECUTE'],
	'admins purge queues');

SELECT * FROM finish();
ROLLBACK;
