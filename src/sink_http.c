/*-------------------------------------------------------------------------
 *
 * sink_http.c
 *	  The HTTP(S) webhook driver of named sinks: each message is a POST of
 *	  its payload to the sink's url, signed the Standard Webhooks way, with
 *	  libcurl's multi interface.
 *
 * A request carries the message's payload as its body (application/json),
 * the message's headers and the sink's "headers" option as HTTP headers,
 * and webhook-id (the outbox id), webhook-timestamp (Unix seconds) and,
 * when the sink has a "secret", webhook-signature: "v1," and the base64 of
 * HMAC-SHA256(secret, "<id>.<timestamp>.<body>").  A secret written as
 * "whsec_<base64>" (the Standard Webhooks form) is that base64 decoded;
 * any other secret is used as its bytes.
 *
 * The verdicts: a 2xx response confirms the message; 408, 429, 5xx, a
 * timeout or a connection error fail it (the relay retries it with the
 * topic's backoff, at least as late as a Retry-After of the response);
 * any other status rejects it (it goes to the dead letters at once), the
 * error being the status and the start of the response body.
 *
 * One multi handle per sink lives as long as the worker's connection to
 * the sink (sink_config.c keeps it across batches), so keep-alive
 * connections are reused from batch to batch; so are the easy handles,
 * whose options that never change are set once.  At most max_in_flight
 * requests run at once, and at most one per key: a keyed message is
 * started only once every earlier message of its key in the batch is
 * confirmed, so a failed one leaves the later ones pending, and per-key
 * order holds through retries.  confirm() drives the transfers until every
 * started request has its verdict, or batch_wait_ms (or the relay's
 * timeout) passes, or none of them finished for a while (see STALL_MIN_MS);
 * messages never started stay pending.  The waits are
 * short polls that answer interrupts: a worker told to stop does not wait
 * for a slow endpoint.
 *
 * A slow endpoint does not hold up the other topics of the database (the
 * relay serves them in turn, in one worker): a batch waits at most
 * batch_wait_ms, or less without progress, and the requests still running then are left running,
 * their messages pending (not an attempt).  Each request owns a copy of
 * its body and remembers its message's topic and id: the next batch of the
 * topic, which holds the message again (it is still the first of its key),
 * takes the request over, with its verdict if it finished meanwhile,
 * instead of sending it twice.  A request that no batch takes over is
 * dropped when its slot is needed, or when the next batch of its topic
 * does not hold its message.
 *
 * Options (all optional): secret (string), headers (object of strings),
 * timeout_ms (total time of a request, default 10000), connect_timeout_ms
 * (default 5000), max_in_flight (default 16), batch_wait_ms (default
 * 1000), tls_verify (default true), ca_file (a CA bundle for the server's
 * certificate).  The secret never appears in errors or logs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#include <time.h>

#include "common/base64.h"
#include "common/cryptohash.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "event_store.h"
#include "sink.h"
#include "sink_named.h"

/* Bytes of a response body kept for the error of a rejected message. */
#define RESPONSE_KEEP 200

/* How long one wait for the transfers lasts at most, between interrupt checks. */
#define POLL_MS 50

/*
 * A batch whose requests have all been running for a while without one of
 * them finishing ends (those requests go on, their messages pending): the
 * relay acknowledges what was delivered, retries what failed, and serves
 * the other topics, rather than waiting for the slowest request.  "A
 * while" is four times the sink's usual response time (a moving average,
 * starting at STALL_INITIAL_MS / 4), at least STALL_MIN_MS: an endpoint
 * that is always slow gets the whole batch_wait_ms, and the worker does
 * not go round its batches in vain.
 */
#define STALL_MIN_MS 10
#define STALL_INITIAL_MS 100

#define WEBHOOK_SECRET_PREFIX "whsec_"

typedef struct HttpRequest
{
	CURL	   *easy;
	bool		busy;			/* running, or holding a verdict not handed
								 * over yet; false: slot free */
	bool		running;		/* in the multi handle */
	int			message;		/* index in the current batch; -1: none (a
								 * batch left it running) */
	int64		id;				/* its message's outbox id and topic */
	char		topic[ES_MAX_TOPIC_BYTES + 1];
	CURLcode	result;			/* once finished */
	long		status;			/* HTTP status, once finished */
	TimestampTz started_at;
	struct curl_slist *headers;
	char		response[RESPONSE_KEEP + 1];
	size_t		response_len;
	int64		retry_after_ms; /* from Retry-After; 0: none */
	char		errbuf[CURL_ERROR_SIZE];
} HttpRequest;

typedef struct HttpSink
{
	char		name[NAMEDATALEN];
	char	   *url;
	uint8	   *secret;			/* NULL: requests are not signed */
	int			secret_len;
	char	  **sink_headers;	/* "Name: value", from the headers option */
	int			nsink_headers;
	long		timeout_ms;
	long		connect_timeout_ms;
	int			max_in_flight;
	long		batch_wait_ms;
	bool		tls_verify;
	char	   *ca_file;
	CURLM	   *multi;
	int64		response_us;	/* moving average of response times */
	HttpRequest *requests;		/* max_in_flight of them */
	int			in_flight;		/* busy requests */

	/* The batch being published (valid between publish and confirm). */
	EsSinkMessage *batch;
	int			count;
	int		   *previous_of_key;	/* index of the previous message of its
									 * key in the batch, or -1 */
	bool	   *started;
	int			first_unstarted;
} HttpSink;

/* The last message of a key seen so far in a batch. */
typedef struct KeyEntry
{
	char		key[ES_MAX_KEY_BYTES + 1];
	int			last;
} KeyEntry;

static bool curl_ready = false;

static void setup_handle(HttpSink *sink, HttpRequest *r);

/* malloc that fails with an error rather than NULL. */
static void *
checked_malloc(size_t size)
{
	void	   *p = calloc(1, size);

	if (p == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	return p;
}

static char *
checked_strdup(const char *s)
{
	char	   *p = checked_malloc(strlen(s) + 1);

	strcpy(p, s);
	return p;
}

/* A header name is an HTTP token. */
static bool
is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
	{
		if (!(isalnum((unsigned char) *s) || strchr("!#$%&'*+-.^_`|~", *s)))
			return false;
	}
	return true;
}

/* Headers the sink sets itself, which no message or option may set. */
static bool
is_reserved_header(const char *name)
{
	static const char *const reserved[] = {
		"content-type", "content-length", "host", "transfer-encoding",
		"expect", "connection", "webhook-id", "webhook-timestamp",
		"webhook-signature"
	};

	for (size_t i = 0; i < lengthof(reserved); i++)
	{
		if (pg_strcasecmp(name, reserved[i]) == 0)
			return true;
	}
	return false;
}

/* "Name: value", with line breaks of the value made spaces; NULL if unusable. */
static char *
header_line(const char *name, const char *value)
{
	StringInfoData buf;

	if (value == NULL || !is_token(name) || is_reserved_header(name))
		return NULL;
	initStringInfo(&buf);
	appendStringInfo(&buf, "%s: ", name);
	for (const char *p = value; *p; p++)
		appendStringInfoChar(&buf, (*p == '\r' || *p == '\n') ? ' ' : *p);
	return buf.data;
}

static JsonbValue *
option(Jsonb *options, const char *key)
{
	JsonbValue	k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&options->root, JB_FOBJECT, &k);
}

/* An integer option in [min, max], or its default; false if invalid. */
static bool
int_option(Jsonb *options, const char *key, long min, long max, long *value)
{
	JsonbValue *v = option(options, key);
	int64		n;

	if (v == NULL)
		return true;
	if (v->type != jbvNumeric)
		return false;
	n = DatumGetInt64(DirectFunctionCall1(numeric_int8,
										  NumericGetDatum(v->val.numeric)));
	if (n < min || n > max)
		return false;
	*value = (long) n;
	return true;
}

static void
http_disconnect(void *conn)
{
	HttpSink   *sink = conn;

	if (sink == NULL)
		return;
	if (sink->requests)
	{
		for (int i = 0; i < sink->max_in_flight; i++)
		{
			HttpRequest *r = &sink->requests[i];

			if (r->easy)
			{
				if (r->running && sink->multi)
					curl_multi_remove_handle(sink->multi, r->easy);
				curl_easy_cleanup(r->easy);
			}
			if (r->headers)
				curl_slist_free_all(r->headers);
		}
		free(sink->requests);
	}
	if (sink->multi)
		curl_multi_cleanup(sink->multi);
	for (int i = 0; i < sink->nsink_headers; i++)
		free(sink->sink_headers[i]);
	free(sink->sink_headers);
	if (sink->secret)
	{
		explicit_bzero(sink->secret, sink->secret_len);
		free(sink->secret);
	}
	free(sink->url);
	free(sink->ca_file);
	free(sink);
}

/*
 * A sink's client: its options checked, a multi handle and its request
 * slots.  No connection is opened before the first request.
 */
static void *
http_connect(const char *name, const char *url, const char *options_json,
			 char **error)
{
	HttpSink   *sink;
	Jsonb	   *options;
	JsonbValue *v;
	long		max_in_flight = 16;

	if (!curl_ready)
	{
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		{
			*error = psprintf("sink \"%s\": could not initialize libcurl", name);
			return NULL;
		}
		curl_ready = true;
	}

	options = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
												 CStringGetDatum(options_json ? options_json : "{}")));
	sink = checked_malloc(sizeof(HttpSink));
	strlcpy(sink->name, name, NAMEDATALEN);
	sink->url = checked_strdup(url);
	sink->timeout_ms = 10000;
	sink->response_us = STALL_INITIAL_MS * 1000 / 4;
	sink->connect_timeout_ms = 5000;
	sink->batch_wait_ms = 1000;
	sink->tls_verify = true;

	if (!int_option(options, "timeout_ms", 1, 600000, &sink->timeout_ms) ||
		!int_option(options, "connect_timeout_ms", 1, 600000, &sink->connect_timeout_ms) ||
		!int_option(options, "max_in_flight", 1, 1000, &max_in_flight) ||
		!int_option(options, "batch_wait_ms", 1, 600000, &sink->batch_wait_ms))
	{
		*error = psprintf("sink \"%s\": timeout_ms, connect_timeout_ms, max_in_flight and batch_wait_ms must be positive integers",
						  name);
		http_disconnect(sink);
		return NULL;
	}
	sink->max_in_flight = (int) max_in_flight;

	if ((v = option(options, "tls_verify")) != NULL)
		sink->tls_verify = !(v->type == jbvBool && !v->val.boolean);
	if ((v = option(options, "ca_file")) != NULL && v->type == jbvString)
	{
		char	   *path = pnstrdup(v->val.string.val, v->val.string.len);

		sink->ca_file = checked_strdup(path);
		pfree(path);
	}

	if ((v = option(options, "secret")) != NULL && v->type == jbvString &&
		v->val.string.len > 0)
	{
		const char *s = v->val.string.val;
		int			len = v->val.string.len;
		int			prefix = strlen(WEBHOOK_SECRET_PREFIX);

		if (len > prefix && strncmp(s, WEBHOOK_SECRET_PREFIX, prefix) == 0)
		{
			int			max = pg_b64_dec_len(len - prefix);

			sink->secret = checked_malloc(max + 1);
			sink->secret_len = pg_b64_decode(s + prefix, len - prefix,
											 (char *) sink->secret, max);
			if (sink->secret_len <= 0)
			{
				*error = psprintf("sink \"%s\": its secret starts with \"%s\" but the rest is not base64",
								  name, WEBHOOK_SECRET_PREFIX);
				http_disconnect(sink);
				return NULL;
			}
		}
		else
		{
			sink->secret = checked_malloc(len);
			memcpy(sink->secret, s, len);
			sink->secret_len = len;
		}
	}

	if ((v = option(options, "headers")) != NULL && v->type == jbvBinary)
	{
		EsSinkHeader *headers;
		char	   *text = JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		int			n = es_sink_headers(text, &headers);

		sink->sink_headers = checked_malloc(sizeof(char *) * Max(n, 1));
		for (int i = 0; i < n; i++)
		{
			char	   *line = header_line(headers[i].name, headers[i].value);

			if (line == NULL)
			{
				*error = psprintf("sink \"%s\": header \"%s\" cannot be set",
								  name, headers[i].name);
				http_disconnect(sink);
				return NULL;
			}
			sink->sink_headers[sink->nsink_headers++] = checked_strdup(line);
			pfree(line);
		}
	}

	sink->multi = curl_multi_init();
	if (sink->multi == NULL)
	{
		*error = psprintf("sink \"%s\": could not create a libcurl multi handle", name);
		http_disconnect(sink);
		return NULL;
	}
	curl_multi_setopt(sink->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) sink->max_in_flight);
	curl_multi_setopt(sink->multi, CURLMOPT_MAXCONNECTS, (long) sink->max_in_flight);
	sink->requests = checked_malloc(sizeof(HttpRequest) * sink->max_in_flight);
	for (int i = 0; i < sink->max_in_flight; i++)
	{
		sink->requests[i].message = -1;
		sink->requests[i].easy = curl_easy_init();
		if (sink->requests[i].easy == NULL)
		{
			*error = psprintf("sink \"%s\": could not create a libcurl handle", name);
			http_disconnect(sink);
			return NULL;
		}
		setup_handle(sink, &sink->requests[i]);
	}
	return sink;
}

static size_t
on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *r = arg;
	size_t		len = size * nmemb;
	size_t		room = RESPONSE_KEEP - r->response_len;
	size_t		keep = Min(len, room);

	memcpy(r->response + r->response_len, data, keep);
	r->response_len += keep;
	r->response[r->response_len] = '\0';
	return len;					/* the rest is read and dropped */
}

/* Note a Retry-After header: delay-seconds or an HTTP date. */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	HttpRequest *r = arg;
	size_t		len = size * nmemb;
	static const char name[] = "retry-after:";

	if (len > sizeof(name) - 1 && len < 200 &&
		pg_strncasecmp(data, name, sizeof(name) - 1) == 0)
	{
		char		value[200];
		char	   *p;
		char	   *end;
		long		seconds;

		memcpy(value, data + sizeof(name) - 1, len - (sizeof(name) - 1));
		value[len - (sizeof(name) - 1)] = '\0';
		for (p = value; *p == ' ' || *p == '\t'; p++)
			;
		for (end = p + strlen(p); end > p && isspace((unsigned char) end[-1]); end--)
			*(end - 1) = '\0';
		if (*p >= '0' && *p <= '9')
		{
			seconds = strtol(p, &end, 10);
			if (*end == '\0' && seconds >= 0)
				r->retry_after_ms = (int64) Min(seconds, 86400L) * 1000;
		}
		else
		{
			time_t		when = curl_getdate(p, NULL);

			if (when > 0)
				r->retry_after_ms = Max((int64) (when - time(NULL)), 0) * 1000;
		}
	}
	return len;
}

/*
 * The options of a request that are the same for every request of the
 * sink, set once per handle (libcurl keeps them from transfer to
 * transfer): the body, its size and the headers are set per request.
 */
static void
setup_handle(HttpSink *sink, HttpRequest *r)
{
	CURL	   *easy = r->easy;

	curl_easy_setopt(easy, CURLOPT_URL, sink->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, sink->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, sink->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, sink->tls_verify ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, sink->tls_verify ? 2L : 0L);
	if (sink->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, sink->ca_file);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "event_store");
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, r);
}

/* The base64 of HMAC-SHA256(secret, "<id>.<timestamp>.<body>"). */
static char *
signature(HttpSink *sink, int64 id, long timestamp, const char *body, size_t body_len)
{
	pg_hmac_ctx *ctx = pg_hmac_create(PG_SHA256);
	char		prefix[64];
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *encoded;
	int			len;

	snprintf(prefix, sizeof(prefix), INT64_FORMAT ".%ld.", id, timestamp);
	if (ctx == NULL ||
		pg_hmac_init(ctx, sink->secret, sink->secret_len) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) prefix, strlen(prefix)) < 0 ||
		pg_hmac_update(ctx, (const uint8 *) body, body_len) < 0 ||
		pg_hmac_final(ctx, digest, sizeof(digest)) < 0)
	{
		if (ctx)
			pg_hmac_free(ctx);
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("sink \"%s\": could not compute a webhook signature", sink->name)));
	}
	pg_hmac_free(ctx);
	encoded = palloc(pg_b64_enc_len(sizeof(digest)) + 4);
	len = pg_b64_encode((const char *) digest, sizeof(digest), encoded,
						pg_b64_enc_len(sizeof(digest)) + 1);
	encoded[len] = '\0';
	return encoded;
}

static struct curl_slist *
append_header(struct curl_slist *list, const char *line)
{
	struct curl_slist *next = curl_slist_append(list, line);

	if (next == NULL)
	{
		curl_slist_free_all(list);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	return next;
}

/* Start the request of message i in a free slot. */
static void
start_request(HttpSink *sink, HttpRequest *r, int i)
{
	EsSinkMessage *m = &sink->batch[i];
	CURL	   *easy = r->easy;
	long		now = (long) time(NULL);
	size_t		body_len = strlen(m->payload);
	char		line[128];
	struct curl_slist *headers = NULL;

	r->message = i;
	r->id = m->id;
	strlcpy(r->topic, m->topic, sizeof(r->topic));
	r->result = CURLE_OK;
	r->status = 0;
	r->response_len = 0;
	r->response[0] = '\0';
	r->retry_after_ms = 0;
	r->errbuf[0] = '\0';

	headers = append_header(headers, "Content-Type: application/json");
	headers = append_header(headers, "Expect:");
	snprintf(line, sizeof(line), "webhook-id: " INT64_FORMAT, m->id);
	headers = append_header(headers, line);
	snprintf(line, sizeof(line), "webhook-timestamp: %ld", now);
	headers = append_header(headers, line);
	if (sink->secret)
	{
		char	   *sig = signature(sink, m->id, now, m->payload, body_len);
		char	   *l = psprintf("webhook-signature: v1,%s", sig);

		headers = append_header(headers, l);
		pfree(l);
		pfree(sig);
	}
	for (int h = 0; h < sink->nsink_headers; h++)
		headers = append_header(headers, sink->sink_headers[h]);
	if (m->headers)
	{
		EsSinkHeader *mh;
		int			n = es_sink_headers(m->headers, &mh);

		for (int h = 0; h < n; h++)
		{
			char	   *l = header_line(mh[h].name, mh[h].value);

			/* A header HTTP cannot carry is left out, not the message. */
			if (l != NULL)
			{
				headers = append_header(headers, l);
				pfree(l);
			}
		}
	}
	if (r->headers)
		curl_slist_free_all(r->headers);
	r->headers = headers;

	/* A copy of the body: the request may outlive the batch's memory. */
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) body_len);
	if (curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, m->payload) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);

	if (curl_multi_add_handle(sink->multi, easy) != CURLM_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("sink \"%s\": could not start a request", sink->name)));
	r->busy = true;
	r->running = true;
	r->started_at = GetCurrentTimestamp();
	sink->started[i] = true;
	sink->in_flight++;
}

/* Whether message i may start: every earlier message of its key confirmed. */
static bool
may_start(HttpSink *sink, int i)
{
	int			prev = sink->previous_of_key[i];

	return prev < 0 || sink->batch[prev].status == ES_SINK_CONFIRMED;
}

/* Free a request's slot; a running request is given up. */
static void
release_request(HttpSink *sink, HttpRequest *r)
{
	if (r->running)
		curl_multi_remove_handle(sink->multi, r->easy);
	r->running = false;
	r->busy = false;
	r->message = -1;
	sink->in_flight--;
}

/*
 * A free slot, or NULL.  When none is free, the slot of a request no batch
 * took over and that already finished is taken (its message is sent again
 * by a later batch: at-least-once).
 */
static HttpRequest *
free_slot(HttpSink *sink)
{
	for (int s = 0; s < sink->max_in_flight; s++)
	{
		if (!sink->requests[s].busy)
			return &sink->requests[s];
	}
	for (int s = 0; s < sink->max_in_flight; s++)
	{
		HttpRequest *r = &sink->requests[s];

		if (r->message < 0 && !r->running)
		{
			release_request(sink, r);
			return r;
		}
	}
	return NULL;
}

/* Fill the free slots with the next messages that may start; how many. */
static int
start_requests(HttpSink *sink)
{
	int			started = 0;

	while (sink->first_unstarted < sink->count &&
		   sink->started[sink->first_unstarted])
		sink->first_unstarted++;
	for (int i = sink->first_unstarted; i < sink->count; i++)
	{
		EsSinkMessage *m = &sink->batch[i];
		HttpRequest *r;

		if (sink->started[i] || m->status != ES_SINK_PENDING || !may_start(sink, i))
			continue;
		if (m->payload == NULL)
		{
			/* Never loaded: cannot be sent (sink_config.c loads them). */
			m->status = ES_SINK_FAILED;
			m->error = pstrdup("the message could not be loaded");
			sink->started[i] = true;
			continue;
		}
		if ((r = free_slot(sink)) == NULL)
			break;
		start_request(sink, r, i);
		started++;
	}
	return started;
}

/* Hand a finished request's verdict to its message, and free the slot. */
static void
hand_over(HttpSink *sink, HttpRequest *r)
{
	EsSinkMessage *m = &sink->batch[r->message];
	long		status = r->status;

	Assert(!r->running && r->message >= 0);
	release_request(sink, r);

	if (r->result != CURLE_OK)
	{
		m->status = ES_SINK_FAILED;
		m->error = psprintf("sink \"%s\": %s", sink->name,
							r->errbuf[0] ? r->errbuf : curl_easy_strerror(r->result));
		return;
	}
	if (status >= 200 && status < 300)
	{
		m->status = ES_SINK_CONFIRMED;
		return;
	}
	/* The body may be anything: keep it printable ASCII, for the error. */
	for (size_t c = 0; c < r->response_len; c++)
	{
		if ((unsigned char) r->response[c] < 0x20 || (unsigned char) r->response[c] >= 0x7f)
			r->response[c] = ' ';
	}
	m->error = psprintf("sink \"%s\": HTTP %ld%s%s", sink->name, status,
						r->response_len > 0 ? ": " : "", r->response);
	if (status == 408 || status == 429 || status >= 500 || status < 400)
	{
		m->status = ES_SINK_FAILED;
		m->retry_after_ms = r->retry_after_ms;
	}
	else
		m->status = ES_SINK_REJECTED;
}

/*
 * A request finished: note its outcome, and hand it to its message when a
 * batch holds it (else the batch that takes it over will).
 */
static void
finish_request(HttpSink *sink, HttpRequest *r, CURLcode result)
{
	curl_multi_remove_handle(sink->multi, r->easy);
	r->running = false;
	r->result = result;
	r->status = 0;
	if (result == CURLE_OK)
	{
		/* An outlier moves the average by a bounded step. */
		int64		us = GetCurrentTimestamp() - r->started_at;

		us = Min(us, 4 * sink->response_us + 1000);
		sink->response_us += (us - sink->response_us) / 8;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
	}
	if (r->message >= 0)
		hand_over(sink, r);
}

/* Give up every request (the HTTP client failed). */
static void
abort_requests(HttpSink *sink, const char *why)
{
	for (int s = 0; s < sink->max_in_flight; s++)
	{
		HttpRequest *r = &sink->requests[s];

		if (!r->busy)
			continue;
		if (r->message >= 0 && sink->batch != NULL)
		{
			EsSinkMessage *m = &sink->batch[r->message];

			m->status = ES_SINK_FAILED;
			m->error = psprintf("sink \"%s\": %s", sink->name, why);
		}
		release_request(sink, r);
	}
}

/* The batch ends: requests still running stay, no longer tied to it. */
static void
detach_requests(HttpSink *sink)
{
	for (int s = 0; s < sink->max_in_flight; s++)
		sink->requests[s].message = -1;
}

/*
 * Drive the transfers, and note the requests that finished.  Returns how
 * many of them were the batch's, or -1 if the HTTP client failed.
 */
static int
drive(HttpSink *sink)
{
	int			running;
	int			queued;
	int			finished = 0;
	CURLMsg    *msg;

	if (curl_multi_perform(sink->multi, &running) != CURLM_OK)
		return -1;
	while ((msg = curl_multi_info_read(sink->multi, &queued)) != NULL)
	{
		HttpRequest *r;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &r);
		if (r->message >= 0)
			finished++;
		finish_request(sink, r, msg->data.result);
	}
	return finished;
}

static void
http_publish(void *conn, const char *destination, EsSinkMessage *messages, int count)
{
	HttpSink   *sink = conn;
	HTAB	   *keys;
	HASHCTL		ctl;

	/* Requests of an earlier batch (also one that ended in an error). */
	detach_requests(sink);

	sink->batch = messages;
	sink->count = count;
	sink->first_unstarted = 0;
	sink->started = palloc0(sizeof(bool) * Max(count, 1));
	sink->previous_of_key = palloc(sizeof(int) * Max(count, 1));

	/* The previous message of each message's key, through a hash of keys. */
	ctl.keysize = ES_MAX_KEY_BYTES + 1;
	ctl.entrysize = sizeof(KeyEntry);
	ctl.hcxt = CurrentMemoryContext;
	keys = hash_create("event_store http keys", Max(count, 16), &ctl,
					   HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (int i = 0; i < count; i++)
	{
		sink->previous_of_key[i] = -1;
		if (messages[i].key != NULL)
		{
			bool		found;
			KeyEntry   *entry = hash_search(keys, messages[i].key, HASH_ENTER, &found);

			if (found)
				sink->previous_of_key[i] = entry->last;
			entry->last = i;
		}
	}
	hash_destroy(keys);

	/*
	 * Take over the requests an earlier batch of the topic left running (or
	 * finished since): their messages are in this batch again, in id order.
	 * Those of the topic that are not (gone meanwhile) are given up.
	 */
	if (count > 0 && sink->in_flight > 0)
	{
		for (int s = 0; s < sink->max_in_flight; s++)
		{
			HttpRequest *r = &sink->requests[s];
			int			lo = 0;
			int			hi = count - 1;

			if (!r->busy || strcmp(r->topic, messages[0].topic) != 0)
				continue;
			while (lo < hi)
			{
				int			mid = lo + (hi - lo) / 2;

				if (messages[mid].id < r->id)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (messages[lo].id != r->id)
			{
				release_request(sink, r);
				continue;
			}
			r->message = lo;
			sink->started[lo] = true;
			if (!r->running)
				hand_over(sink, r);
		}
	}
	start_requests(sink);
}

/* Whether a request of the batch is still running. */
static bool
batch_running(HttpSink *sink)
{
	for (int s = 0; s < sink->max_in_flight; s++)
	{
		if (sink->requests[s].message >= 0)
			return true;
	}
	return false;
}

static void
http_confirm(void *conn, EsSinkMessage *messages, int count, int timeout_ms)
{
	HttpSink   *sink = conn;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz deadline;
	TimestampTz progress = now;
	int			stall_ms = (int) Min(Max(4 * sink->response_us / 1000, STALL_MIN_MS),
									 sink->batch_wait_ms);

	deadline = TimestampTzPlusMilliseconds(now, Min((long) timeout_ms, sink->batch_wait_ms));
	for (;;)
	{
		int			finished;

		CHECK_FOR_INTERRUPTS();
		if ((finished = drive(sink)) < 0)
		{
			abort_requests(sink, "the HTTP client failed");
			break;
		}
		now = GetCurrentTimestamp();
		if (finished > 0)
			progress = now;
		/* Requests just started go out at once, not after a poll. */
		if (start_requests(sink) > 0)
		{
			progress = now;
			continue;
		}
		if (!batch_running(sink))
			break;
		/* The rest stay running, their messages pending. */
		if (now >= deadline ||
			TimestampDifferenceExceeds(progress, now, stall_ms) ||
			es_relay_stop_requested())
			break;
		if (curl_multi_poll(sink->multi, NULL, 0, POLL_MS, NULL) != CURLM_OK)
		{
			abort_requests(sink, "the HTTP client failed");
			break;
		}
	}

	/*
	 * Requests left running: come back for them at once (the relay does so
	 * by itself only when more than one message is pending), not after
	 * the relay's naptime.
	 */
	if (batch_running(sink))
		SetLatch(MyLatch);
	detach_requests(sink);
	sink->batch = NULL;
	sink->count = 0;
}

static bool
http_usable(void *conn)
{
	return conn != NULL;
}

static int
http_in_flight(void *conn)
{
	return ((HttpSink *) conn)->in_flight;
}

const EsSinkDriver es_sink_driver_http = {
	.scheme = "http",
	.connect = http_connect,
	.publish = http_publish,
	.confirm = http_confirm,
	.usable = http_usable,
	.in_flight = http_in_flight,
	.disconnect = http_disconnect
};

/* The same driver, for https:// urls. */
const EsSinkDriver es_sink_driver_https = {
	.scheme = "https",
	.connect = http_connect,
	.publish = http_publish,
	.confirm = http_confirm,
	.usable = http_usable,
	.in_flight = http_in_flight,
	.disconnect = http_disconnect
};
