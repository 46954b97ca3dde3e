/*-------------------------------------------------------------------------
 *
 * sink_kafka.c
 *	  The Kafka driver of named sinks: an idempotent librdkafka producer
 *	  (acks=all) per sink, kept across batches.
 *
 * Each message goes to the route's destination (default: its outbox
 * topic) with the message key as the Kafka key (so a key's messages share
 * a partition, in order), the payload as the value, and as headers the
 * message's headers plus event_store_id (the outbox id), topic and
 * created_at.  A message is confirmed only by its delivery report.
 *
 * librdkafka works in threads of its own, which touch none of PostgreSQL's
 * state: its callbacks run only inside rd_kafka_poll(), called here.  The
 * waits poll in short slices and answer interrupts.
 *
 * Order and loss: one request at a time per broker connection
 * (max.in.flight.requests.per.connection = 1).  With several in flight, a
 * request that failed (not written) followed by one that succeeded makes
 * librdkafka report the first one's messages delivered too ("implicitly
 * acked": a broker that checks the producer's sequence numbers would have
 * refused the second); a broker, or librdkafka's own mock cluster, that does
 * not check them would lose those messages.  One request in flight also
 * means that what a broker has of a batch is, per partition, a prefix of
 * what was published, so a key's message is never written after an earlier
 * one of its key that failed.  For the same reason librdkafka never times
 * messages out by itself (its message.timeout.ms is 0: its own timeout
 * could fail one message while a later one of its partition still goes
 * out): the relay waits
 * up to the sink's message.timeout.ms (default 10 s), then purges what is
 * not reported, reports it failed (it may still arrive: at-least-once),
 * and makes the producer again: the purge leaves a gap in the producer's
 * sequence numbers, and reports of a purged batch must not reach a later
 * one.  Gapless delivery is asked for: a gap in a partition is a fatal
 * error, after which the producer is made again too.
 *
 * Each delivery report carries the number of its batch: a report of a
 * batch whose transaction failed between publish and confirm never
 * settles a message of a later batch.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "sink_named.h"

#define KAFKA_DEFAULT_MESSAGE_TIMEOUT_MS 10000
#define KAFKA_POLL_SLICE_MS 50

typedef struct KafkaConn
{
	rd_kafka_t *rk;
	char		name[NAMEDATALEN];
	int			message_timeout_ms;
	bool		fatal;			/* the producer must be made again */
	bool		brokers_down;	/* all brokers were down at last report */
	int			outstanding;	/* delivery reports not yet seen */
	uint32		batch;			/* number of the batch being published */
} KafkaConn;

/*
 * A message's opaque: its index in the batch in the low bits (a batch has
 * at most 100,000 messages, event_store.relay_batch_size), the batch's
 * number in the others (as many of its low bits as a pointer has room for).
 */
#define KAFKA_INDEX_BITS 17
#define KAFKA_BATCH_MASK (UINTPTR_MAX >> KAFKA_INDEX_BITS)
#define KAFKA_OPAQUE(batch, index) \
	((void *) ((((uintptr_t) (batch) & KAFKA_BATCH_MASK) << KAFKA_INDEX_BITS) | \
			   (uintptr_t) (index)))
#define KAFKA_OPAQUE_BATCH(opaque) (((uintptr_t) (opaque)) >> KAFKA_INDEX_BITS)
#define KAFKA_OPAQUE_INDEX(opaque) \
	((int) (((uintptr_t) (opaque)) & ((((uintptr_t) 1) << KAFKA_INDEX_BITS) - 1)))

/* The batch whose delivery reports are being collected. */
static EsSinkMessage *current_messages = NULL;
static int	current_count = 0;

static void
delivery_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	KafkaConn  *kc = opaque;
	int			index = KAFKA_OPAQUE_INDEX(msg->_private);

	kc->outstanding--;
	if (current_messages == NULL ||
		KAFKA_OPAQUE_BATCH(msg->_private) != ((uintptr_t) kc->batch & KAFKA_BATCH_MASK) ||
		index < 0 || index >= current_count)
		return;					/* a report of an earlier batch */
	if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		current_messages[index].status = ES_SINK_CONFIRMED;
		kc->brokers_down = false;
	}
	else
	{
		current_messages[index].status = ES_SINK_FAILED;
		current_messages[index].error = psprintf("Kafka sink \"%s\": %s",
												 kc->name, rd_kafka_err2str(msg->err));
	}
}

static void
error_callback(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	KafkaConn  *kc = opaque;

	if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
		kc->brokers_down = true;
	if (err == RD_KAFKA_RESP_ERR__FATAL)
		kc->fatal = true;
}

/* librdkafka's own log lines go nowhere: they may name brokers' addresses. */
static void
log_callback(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
}

static bool
set_conf(rd_kafka_conf_t *conf, const char *name, const char *property,
		 const char *value, char **error)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, property, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		/* errstr may quote the value: name the property only. */
		*error = psprintf("invalid Kafka option \"%s\"", property);
		return false;
	}
	return true;
}

static void *
kafka_connect(const char *name, const char *url, const char *options_json, char **error)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	KafkaConn  *kc;
	char		errstr[512];
	const char *brokers = url + strlen("kafka://");
	char	   *servers = pstrdup(brokers);
	Jsonb	   *options;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	char	   *key = NULL;

	if (servers[0] != '\0' && servers[strlen(servers) - 1] == '/')
		servers[strlen(servers) - 1] = '\0';

	kc = calloc(1, sizeof(KafkaConn));
	if (kc == NULL)
	{
		rd_kafka_conf_destroy(conf);
		*error = pstrdup("out of memory");
		return NULL;
	}
	strlcpy(kc->name, name, NAMEDATALEN);
	kc->message_timeout_ms = KAFKA_DEFAULT_MESSAGE_TIMEOUT_MS;

	if (!set_conf(conf, name, "bootstrap.servers", servers, error) ||
		!set_conf(conf, name, "enable.idempotence", "true", error) ||
		!set_conf(conf, name, "acks", "all", error) ||
		!set_conf(conf, name, "enable.gapless.guarantee", "true", error) ||
		!set_conf(conf, name, "socket.connection.setup.timeout.ms", "5000", error) ||
		!set_conf(conf, name, "linger.ms", "0", error) ||
		/* small batches wait for no delayed ACK */
		!set_conf(conf, name, "socket.nagle.disable", "true", error) ||
		!set_conf(conf, name, "client.id", "event_store", error))
		goto fail;

	options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(options_json)));
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && key != NULL)
		{
			char	   *value;

			if (v.type == jbvString)
				value = pnstrdup(v.val.string.val, v.val.string.len);
			else if (v.type == jbvBool)
				value = pstrdup(v.val.boolean ? "true" : "false");
			else if (v.type == jbvNumeric)
				value = DatumGetCString(DirectFunctionCall1(numeric_out,
															NumericGetDatum(v.val.numeric)));
			else
			{
				*error = psprintf("invalid Kafka option \"%s\"", key);
				goto fail;
			}
			/* The relay times messages out itself (see above). */
			if (strcmp(key, "message.timeout.ms") == 0 ||
				strcmp(key, "delivery.timeout.ms") == 0)
			{
				kc->message_timeout_ms = atoi(value);
				if (kc->message_timeout_ms <= 0)
				{
					*error = psprintf("invalid Kafka option \"%s\"", key);
					goto fail;
				}
			}
			else if (!set_conf(conf, name, key, value, error))
				goto fail;
			memset(value, 0, strlen(value));
			key = NULL;
		}
	}

	/* Set last: no option overrides them (see above). */
	if (!set_conf(conf, name, "max.in.flight.requests.per.connection", "1", error) ||
		!set_conf(conf, name, "message.timeout.ms", "0", error))
		goto fail;
	rd_kafka_conf_set_opaque(conf, kc);
	rd_kafka_conf_set_dr_msg_cb(conf, delivery_report);
	rd_kafka_conf_set_error_cb(conf, error_callback);
	rd_kafka_conf_set_log_cb(conf, log_callback);
	kc->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (kc->rk == NULL)
	{
		*error = psprintf("could not create a Kafka producer: %s", errstr);
		free(kc);
		return NULL;
	}
	return kc;

fail:
	rd_kafka_conf_destroy(conf);
	free(kc);
	return NULL;
}

/* Serve delivery reports until none is outstanding or the deadline. */
static void
poll_until(KafkaConn *kc, TimestampTz deadline)
{
	while (kc->outstanding > 0 && GetCurrentTimestamp() < deadline)
	{
		CHECK_FOR_INTERRUPTS();
		if (es_relay_stop_requested())
			break;
		rd_kafka_poll(kc->rk, KAFKA_POLL_SLICE_MS);
	}
}

static void
kafka_publish(void *conn, const char *destination, EsSinkMessage *messages, int count)
{
	KafkaConn  *kc = conn;

	current_messages = messages;
	current_count = count;
	kc->batch++;
	for (int i = 0; i < count; i++)
	{
		EsSinkMessage *m = &messages[i];
		rd_kafka_headers_t *hdrs;
		EsSinkHeader *headers;
		int			nheaders;
		char		idtext[32];
		const char *created;
		rd_kafka_resp_err_t err;

		CHECK_FOR_INTERRUPTS();
		if (es_sink_key_failed(messages, i, m->key))
			continue;			/* stays pending, behind its key */
		nheaders = es_sink_headers(m->headers, &headers);
		hdrs = rd_kafka_headers_new(nheaders + 3);
		snprintf(idtext, sizeof(idtext), INT64_FORMAT, m->id);
		rd_kafka_header_add(hdrs, "event_store_id", -1, idtext, -1);
		rd_kafka_header_add(hdrs, "topic", -1, m->topic, -1);
		created = timestamptz_to_str(m->created_at);
		rd_kafka_header_add(hdrs, "created_at", -1, created, -1);
		for (int h = 0; h < nheaders; h++)
			rd_kafka_header_add(hdrs, headers[h].name, -1, headers[h].value,
								headers[h].value ? -1 : 0);
		for (;;)
		{
			err = rd_kafka_producev(kc->rk,
									RD_KAFKA_V_TOPIC(destination ? destination : m->topic),
									RD_KAFKA_V_KEY(m->key, m->key ? strlen(m->key) : 0),
									RD_KAFKA_V_VALUE((void *) m->payload, strlen(m->payload)),
									RD_KAFKA_V_HEADERS(hdrs),
									RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
									RD_KAFKA_V_OPAQUE(KAFKA_OPAQUE(kc->batch, i)),
									RD_KAFKA_V_END);
			if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
				break;
			/* The local queue is full: serve reports, then try again. */
			CHECK_FOR_INTERRUPTS();
			rd_kafka_poll(kc->rk, KAFKA_POLL_SLICE_MS);
		}
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			rd_kafka_headers_destroy(hdrs);
			m->status = ES_SINK_FAILED;
			m->error = psprintf("Kafka sink \"%s\": %s", kc->name, rd_kafka_err2str(err));
			if (err == RD_KAFKA_RESP_ERR__FATAL)
				kc->fatal = true;
			continue;
		}
		kc->outstanding++;
		rd_kafka_poll(kc->rk, 0);
	}
}

static void
kafka_confirm(void *conn, EsSinkMessage *messages, int count, int timeout_ms)
{
	KafkaConn  *kc = conn;
	int			wait_ms = Min(timeout_ms, kc->message_timeout_ms);
	bool		purged = false;
	TimestampTz deadline;

	/* With every broker down, do not hold the batch for the full timeout. */
	if (kc->brokers_down)
		wait_ms = Min(wait_ms, 1000);
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	poll_until(kc, deadline);
	if (kc->outstanding > 0)
	{
		/*
		 * Unreported messages are dropped from the queue: they are published
		 * again later.  Those already sent may still arrive (at-least-once).
		 */
		rd_kafka_purge(kc->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		poll_until(kc, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 1000));
		purged = true;
	}
	for (int i = 0; i < count; i++)
	{
		EsSinkMessage *m = &messages[i];

		if (m->status == ES_SINK_PENDING && !es_sink_key_failed(messages, i, m->key) &&
			kc->outstanding > 0)
		{
			/* published, never reported */
			m->status = ES_SINK_FAILED;
			m->error = psprintf("Kafka sink \"%s\": no delivery report within %d ms",
								kc->name, wait_ms);
		}
	}
	/* A gap in the sequence numbers, or reports of this batch still to come. */
	if (purged || kc->outstanding > 0)
		kc->fatal = true;
	current_messages = NULL;
	current_count = 0;
	{
		char		errstr[256];

		if (rd_kafka_fatal_error(kc->rk, errstr, sizeof(errstr)) != RD_KAFKA_RESP_ERR_NO_ERROR)
			kc->fatal = true;
	}
}

static bool
kafka_usable(void *conn)
{
	KafkaConn  *kc = conn;

	return !kc->fatal && !kc->brokers_down;
}

static int
kafka_in_flight(void *conn)
{
	KafkaConn  *kc = conn;

	return rd_kafka_outq_len(kc->rk);
}

static void
kafka_disconnect(void *conn)
{
	KafkaConn  *kc = conn;

	/*
	 * Do not wait for the queue: whatever is in it was reported failed and
	 * will be published again.
	 */
	rd_kafka_purge(kc->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
	rd_kafka_destroy_flags(kc->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	free(kc);
}

const EsSinkDriver es_sink_driver_kafka = {
	.scheme = "kafka",
	.label = "Kafka",
	.connect = kafka_connect,
	.publish = kafka_publish,
	.confirm = kafka_confirm,
	.usable = kafka_usable,
	.in_flight = kafka_in_flight,
	.disconnect = kafka_disconnect
};
