/*-------------------------------------------------------------------------
 *
 * sink_amqp.c
 *	  The AMQP 0-9-1 (RabbitMQ) driver of named sinks: one connection and
 *	  channel per sink, in confirm mode, kept across batches.
 *
 * A message is published persistent (delivery mode 2), mandatory, with
 * message_id = the outbox id, content type application/json, its headers
 * as the headers table (plus topic and created_at), to the route's
 * destination "exchange/routing_key": the exchange defaults to '' (the
 * default exchange), the routing key to the message key, else the topic.
 * It is confirmed by the broker's basic.ack; a basic.nack, or a
 * basic.return (unroutable: the broker acks a returned message too), is a
 * failure with the broker's reason.
 *
 * Connect, login and every wait are bounded; waits poll in short slices
 * and answer interrupts.  Connecting and logging in cannot be interrupted,
 * so their bound (connect_timeout_ms) is a second by default: the worker
 * answers SIGTERM within it.  A connection that failed in any way is closed
 * and made again at the next batch; messages not acknowledged by then are
 * reported failed and published again (at-least-once).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "sink_named.h"

#define AMQP_CHANNEL 1
#define AMQP_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define AMQP_POLL_SLICE_MS 50

typedef struct AmqpConn
{
	amqp_connection_state_t state;
	char		name[NAMEDATALEN];
	bool		broken;
	uint64		next_tag;		/* delivery tag of the next publish */
	int			in_flight;
	int			heartbeat;		/* seconds; 0: none */
	TimestampTz last_used;		/* end of the last batch */
} AmqpConn;

static int
option_int(const char *options_json, const char *key, int dflt)
{
	Jsonb	   *options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
															 CStringGetDatum(options_json)));
	JsonbValue *v = getKeyJsonValueFromContainer(&options->root, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvNumeric)
		return dflt;
	return DatumGetInt32(DirectFunctionCall1(numeric_int4, NumericGetDatum(v->val.numeric)));
}

static char *
reply_error(amqp_rpc_reply_t r)
{
	switch (r.reply_type)
	{
		case AMQP_RESPONSE_NORMAL:
			return NULL;
		case AMQP_RESPONSE_NONE:
			return pstrdup("missing reply");
		case AMQP_RESPONSE_LIBRARY_EXCEPTION:
			return pstrdup(amqp_error_string2(r.library_error));
		case AMQP_RESPONSE_SERVER_EXCEPTION:
			if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD)
			{
				amqp_connection_close_t *m = r.reply.decoded;

				return psprintf("connection closed by the broker: %d %.*s", m->reply_code,
								(int) m->reply_text.len, (char *) m->reply_text.bytes);
			}
			if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD)
			{
				amqp_channel_close_t *m = r.reply.decoded;

				return psprintf("channel closed by the broker: %d %.*s", m->reply_code,
								(int) m->reply_text.len, (char *) m->reply_text.bytes);
			}
			return psprintf("broker error (method 0x%08X)", r.reply.id);
	}
	return pstrdup("unknown error");
}

static void
amqp_disconnect_conn(void *conn)
{
	AmqpConn   *ac = conn;

	/* No orderly close: it could wait on a dead broker. */
	amqp_destroy_connection(ac->state);
	free(ac);
}

static void *
amqp_connect_conn(const char *name, const char *url, const char *options_json, char **error)
{
	struct amqp_connection_info info;
	char	   *copy = pstrdup(url);
	AmqpConn   *ac;
	amqp_socket_t *socket;
	struct timeval tv;
	int			timeout_ms = option_int(options_json, "connect_timeout_ms",
										AMQP_DEFAULT_CONNECT_TIMEOUT_MS);
	int			heartbeat = option_int(options_json, "heartbeat", 30);
	int			frame_max = option_int(options_json, "frame_max", 131072);
	amqp_rpc_reply_t r;
	int			rc;

	amqp_default_connection_info(&info);
	if (amqp_parse_url(copy, &info) != AMQP_STATUS_OK)
	{
		*error = pstrdup("invalid AMQP url");
		return NULL;
	}
	ac = calloc(1, sizeof(AmqpConn));
	if (ac == NULL)
	{
		*error = pstrdup("out of memory");
		return NULL;
	}
	strlcpy(ac->name, name, NAMEDATALEN);
	ac->next_tag = 1;
	ac->heartbeat = heartbeat;
	ac->last_used = GetCurrentTimestamp();
	ac->state = amqp_new_connection();
	socket = amqp_tcp_socket_new(ac->state);
	if (socket == NULL)
	{
		*error = pstrdup("could not create a socket");
		goto fail;
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	amqp_set_handshake_timeout(ac->state, &tv);
	amqp_set_rpc_timeout(ac->state, &tv);
	CHECK_FOR_INTERRUPTS();
	rc = amqp_socket_open_noblock(socket, info.host, info.port, &tv);
	if (rc != AMQP_STATUS_OK)
	{
		*error = psprintf("could not connect to %s:%d: %s", info.host, info.port,
						  amqp_error_string2(rc));
		goto fail;
	}
	r = amqp_login(ac->state, info.vhost, 0, frame_max, heartbeat,
				   AMQP_SASL_METHOD_PLAIN, info.user, info.password);
	memset(copy, 0, strlen(url));
	if ((*error = reply_error(r)) != NULL)
	{
		*error = psprintf("could not log in to %s:%d: %s", info.host, info.port, *error);
		goto fail;
	}
	amqp_channel_open(ac->state, AMQP_CHANNEL);
	if ((*error = reply_error(amqp_get_rpc_reply(ac->state))) != NULL)
		goto fail;
	amqp_confirm_select(ac->state, AMQP_CHANNEL);
	if ((*error = reply_error(amqp_get_rpc_reply(ac->state))) != NULL)
		goto fail;
	return ac;

fail:
	memset(copy, 0, strlen(url));
	amqp_disconnect_conn(ac);
	return NULL;
}

/* The batch being published: delivery tags first_tag.. map to messages. */
static uint64 batch_first_tag = 0;
static int *batch_index_of_tag = NULL;	/* tag - first_tag -> message index */
static int	batch_published = 0;

static void
amqp_publish_batch(void *conn, const char *destination, EsSinkMessage *messages, int count)
{
	AmqpConn   *ac = conn;
	char	   *exchange = "";
	char	   *routing_key = NULL;

	if (destination != NULL)
	{
		const char *slash = strchr(destination, '/');

		if (slash == NULL)
			exchange = pstrdup(destination);
		else
		{
			exchange = pnstrdup(destination, slash - destination);
			if (slash[1] != '\0')
				routing_key = pstrdup(slash + 1);
		}
	}
	batch_first_tag = ac->next_tag;
	batch_index_of_tag = palloc(sizeof(int) * count);
	batch_published = 0;
	for (int i = 0; i < count; i++)
	{
		EsSinkMessage *m = &messages[i];
		amqp_basic_properties_t props;
		EsSinkHeader *headers;
		int			nheaders;
		amqp_table_entry_t *entries;
		char		idtext[32];
		const char *rk;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (ac->broken || es_sink_key_failed(messages, i, m->key))
			continue;
		nheaders = es_sink_headers(m->headers, &headers);
		entries = palloc(sizeof(amqp_table_entry_t) * (nheaders + 2));
		entries[0].key = amqp_cstring_bytes("topic");
		entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
		entries[0].value.value.bytes = amqp_cstring_bytes((char *) m->topic);
		entries[1].key = amqp_cstring_bytes("created_at");
		entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
		entries[1].value.value.bytes = amqp_cstring_bytes((char *) timestamptz_to_str(m->created_at));
		for (int h = 0; h < nheaders; h++)
		{
			entries[h + 2].key = amqp_cstring_bytes(headers[h].name);
			if (headers[h].value == NULL)
				entries[h + 2].value.kind = AMQP_FIELD_KIND_VOID;
			else
			{
				entries[h + 2].value.kind = AMQP_FIELD_KIND_UTF8;
				entries[h + 2].value.value.bytes = amqp_cstring_bytes(headers[h].value);
			}
		}
		snprintf(idtext, sizeof(idtext), INT64_FORMAT, m->id);
		memset(&props, 0, sizeof(props));
		props._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
			AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_HEADERS_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
		props.content_type = amqp_cstring_bytes("application/json");
		props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
		props.message_id = amqp_cstring_bytes(idtext);
		props.timestamp = (uint64_t) timestamptz_to_time_t(m->created_at);
		props.headers.num_entries = nheaders + 2;
		props.headers.entries = entries;
		rk = routing_key ? routing_key : (m->key ? m->key : m->topic);
		rc = amqp_basic_publish(ac->state, AMQP_CHANNEL, amqp_cstring_bytes(exchange),
								amqp_cstring_bytes((char *) rk), 1, 0, &props,
								amqp_cstring_bytes((char *) m->payload));
		if (rc != AMQP_STATUS_OK)
		{
			ac->broken = true;
			m->status = ES_SINK_FAILED;
			m->error = psprintf("AMQP sink \"%s\": could not publish: %s", ac->name,
								amqp_error_string2(rc));
			continue;
		}
		batch_index_of_tag[batch_published++] = i;
		ac->next_tag++;
		ac->in_flight++;
		pfree(entries);
	}
}

static void
settle(AmqpConn *ac, EsSinkMessage *messages, uint64 tag, bool multiple, bool ack,
	   const char *error)
{
	uint64		from = multiple ? batch_first_tag : tag;

	for (uint64 t = from; t <= tag; t++)
	{
		int			slot = (int) (t - batch_first_tag);
		EsSinkMessage *m;

		if (t < batch_first_tag || slot >= batch_published)
			continue;
		m = &messages[batch_index_of_tag[slot]];
		if (m->status != ES_SINK_PENDING)
			continue;			/* settled before (returned, or a repeat) */
		ac->in_flight--;
		if (ack)
			m->status = ES_SINK_CONFIRMED;
		else
		{
			m->status = ES_SINK_FAILED;
			m->error = psprintf("AMQP sink \"%s\": %s", ac->name, error);
		}
	}
}

/* A basic.return: the message (found by its message_id) was unroutable. */
static void
returned(AmqpConn *ac, EsSinkMessage *messages, int count, amqp_basic_return_t *ret)
{
	amqp_message_t msg;
	amqp_rpc_reply_t r;
	char	   *reason = psprintf("message returned as unroutable: %d %.*s (exchange \"%.*s\", routing key \"%.*s\")",
								  ret->reply_code,
								  (int) ret->reply_text.len, (char *) ret->reply_text.bytes,
								  (int) ret->exchange.len, (char *) ret->exchange.bytes,
								  (int) ret->routing_key.len, (char *) ret->routing_key.bytes);

	r = amqp_read_message(ac->state, AMQP_CHANNEL, &msg, 0);
	if (r.reply_type != AMQP_RESPONSE_NORMAL)
	{
		ac->broken = true;
		return;
	}
	if (msg.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG)
	{
		char	   *id = pnstrdup(msg.properties.message_id.bytes, msg.properties.message_id.len);

		for (int i = 0; i < count; i++)
		{
			char		idtext[32];

			snprintf(idtext, sizeof(idtext), INT64_FORMAT, messages[i].id);
			if (strcmp(idtext, id) == 0 && messages[i].status == ES_SINK_PENDING)
			{
				messages[i].status = ES_SINK_FAILED;
				messages[i].error = psprintf("AMQP sink \"%s\": %s", ac->name, reason);
				ac->in_flight--;
			}
		}
	}
	amqp_destroy_message(&msg);
}

static void
amqp_confirm_batch(void *conn, EsSinkMessage *messages, int count, int timeout_ms)
{
	AmqpConn   *ac = conn;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   Min(timeout_ms, 10000));
	uint64		last_tag = batch_first_tag + batch_published - 1;
	uint64		settled_upto = batch_first_tag - 1;
	const char *why = "no confirmation from the broker in time";

	while (batch_published > 0 && settled_upto < last_tag && !ac->broken &&
		   GetCurrentTimestamp() < deadline)
	{
		amqp_frame_t frame;
		struct timeval tv = {0, AMQP_POLL_SLICE_MS * 1000};
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (es_relay_stop_requested())
		{
			why = "the relay worker was asked to stop";
			break;
		}
		amqp_maybe_release_buffers(ac->state);
		rc = amqp_simple_wait_frame_noblock(ac->state, &frame, &tv);
		if (rc == AMQP_STATUS_TIMEOUT)
			continue;
		if (rc != AMQP_STATUS_OK)
		{
			ac->broken = true;
			why = psprintf("connection lost: %s", amqp_error_string2(rc));
			break;
		}
		if (frame.frame_type != AMQP_FRAME_METHOD)
			continue;
		switch (frame.payload.method.id)
		{
			case AMQP_BASIC_ACK_METHOD:
				{
					amqp_basic_ack_t *ack = frame.payload.method.decoded;

					settle(ac, messages, ack->delivery_tag, ack->multiple, true, NULL);
					if (ack->delivery_tag > settled_upto)
						settled_upto = ack->delivery_tag;
					break;
				}
			case AMQP_BASIC_NACK_METHOD:
				{
					amqp_basic_nack_t *nack = frame.payload.method.decoded;

					settle(ac, messages, nack->delivery_tag, nack->multiple, false,
						   "the broker refused the message (basic.nack)");
					if (nack->delivery_tag > settled_upto)
						settled_upto = nack->delivery_tag;
					break;
				}
			case AMQP_BASIC_RETURN_METHOD:
				returned(ac, messages, count, frame.payload.method.decoded);
				break;
			case AMQP_CHANNEL_CLOSE_METHOD:
				{
					amqp_channel_close_t *m = frame.payload.method.decoded;

					why = psprintf("channel closed by the broker: %d %.*s", m->reply_code,
								   (int) m->reply_text.len, (char *) m->reply_text.bytes);
					ac->broken = true;
					break;
				}
			case AMQP_CONNECTION_CLOSE_METHOD:
				{
					amqp_connection_close_t *m = frame.payload.method.decoded;

					why = psprintf("connection closed by the broker: %d %.*s", m->reply_code,
								   (int) m->reply_text.len, (char *) m->reply_text.bytes);
					ac->broken = true;
					break;
				}
			default:
				break;
		}
	}
	/* What is not settled now is published again later. */
	for (int slot = 0; slot < batch_published; slot++)
	{
		EsSinkMessage *m = &messages[batch_index_of_tag[slot]];

		if (m->status == ES_SINK_PENDING)
		{
			m->status = ES_SINK_FAILED;
			m->error = psprintf("AMQP sink \"%s\": %s", ac->name, why);
			ac->broken = true;	/* its confirmation may still come */
		}
	}
	batch_published = 0;
	ac->in_flight = 0;
	ac->last_used = GetCurrentTimestamp();
}

/*
 * Heartbeats are served only while a batch reads from the connection: one
 * idle for more than half the heartbeat interval may have been closed by
 * the broker, so it is made again rather than found broken by a batch.
 */
static bool
amqp_usable(void *conn)
{
	AmqpConn   *ac = conn;

	if (ac->broken)
		return false;
	if (ac->heartbeat > 0 &&
		TimestampDifferenceExceeds(ac->last_used, GetCurrentTimestamp(),
								   ac->heartbeat * 500))
		return false;
	return true;
}

static int
amqp_in_flight(void *conn)
{
	return ((AmqpConn *) conn)->in_flight;
}

const EsSinkDriver es_sink_driver_amqp = {
	.scheme = "amqp",
	.label = "AMQP",
	.connect = amqp_connect_conn,
	.publish = amqp_publish_batch,
	.confirm = amqp_confirm_batch,
	.usable = amqp_usable,
	.in_flight = amqp_in_flight,
	.disconnect = amqp_disconnect_conn
};
