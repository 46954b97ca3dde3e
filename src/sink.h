/*-------------------------------------------------------------------------
 *
 * sink.h
 *	  The interface a relay sink implements.
 *
 * A sink is where the relay publishes the messages of a topic: the route
 * names it as a URI (relay_routes.sink), whose scheme chooses the
 * implementation (es_sink_lookup).  For each batch of a topic, inside the
 * relay's transaction, the relay calls
 *
 *	open(target)			the part of the URI after "<scheme>:";
 *	publish(batch)			hand the messages over, in order; it may return
 *							before the sink has them for good;
 *	confirm(batch, timeout) wait up to timeout_ms for the sink's verdict on
 *							each message: CONFIRMED (the sink has it),
 *							FAILED (with error: it does not, try again
 *							later), REJECTED (with error: it never will,
 *							e.g. an HTTP 4xx: the message goes to the dead
 *							letters at once), or left PENDING (not
 *							published, or still on its way with no verdict
 *							yet: the relay hands it over again later,
 *							without counting an attempt, and a sink that
 *							still has it on its way must not send it twice
 *							but take the earlier send's verdict, as
 *							sink_http.c does);
 *	close()
 *
 * Then the relay deletes the confirmed messages from the outbox, sends the
 * failed ones through their topic's backoff (their dead letter, with the
 * error, after the topic's max_attempts; never retried sooner than a
 * retry_after_ms the sink set, e.g. from an HTTP Retry-After), buries the
 * rejected ones and leaves the pending ones, all in the same transaction.  A sink whose confirm times out with a message
 * it cannot vouch for reports it FAILED: it is published again later
 * (at-least-once).
 *
 * Per-key order: messages of one key come in id order; a sink must never
 * publish a message after an earlier message of its key FAILED in the same
 * batch (it leaves it PENDING instead).
 *
 * Memory: the relay loads a message's payload and headers as JSON text
 * only when their size is at most max_inline_bytes, and at most
 * ES_RELAY_BATCH_BYTES of them per batch; a larger message is handed over
 * with payload NULL, and the sink reads it by id from event_store.outbox
 * (the row is locked by the relay's transaction) or publishes a reference.  Errors a sink raises (ereport) fail the
 * whole batch of the topic, never other topics; a sink isolates a single
 * message's failure by reporting it FAILED.
 *
 * notify: (sink_notify.c) is the first implementation.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_SINK_H
#define EVENT_STORE_SINK_H

#include "postgres.h"

/* Most bytes of message text the relay loads for one batch. */
#define ES_RELAY_BATCH_BYTES (16 * 1024 * 1024)

typedef enum EsSinkStatus
{
	ES_SINK_PENDING = 0,
	ES_SINK_CONFIRMED,
	ES_SINK_FAILED,
	ES_SINK_REJECTED
} EsSinkStatus;

typedef struct EsSinkMessage
{
	int64		id;				/* the outbox id, which every sink carries */
	const char *topic;
	const char *key;			/* NULL: no key */
	const char *payload;		/* JSON text; NULL when not loaded (too
								 * large: read it by id) */
	const char *headers;		/* JSON text, or NULL (none, or not loaded) */
	Size		size;			/* payload plus headers, in bytes */
	TimestampTz created_at;
	EsSinkStatus status;		/* set by the sink */
	char	   *error;			/* set by the sink with ES_SINK_FAILED or
								 * ES_SINK_REJECTED */
	int64		retry_after_ms; /* FAILED: retry no sooner than this (0:
								 * the backoff alone decides) */
} EsSinkMessage;

typedef struct EsSinkMethods
{
	const char *scheme;			/* as in the route's URI, lower case */
	Size		max_inline_bytes;	/* larger messages come with payload NULL */
	void	   *(*open) (const char *target);
	void		(*publish) (void *state, EsSinkMessage *messages, int count);
	void		(*confirm) (void *state, EsSinkMessage *messages, int count,
							int timeout_ms);
	void		(*close) (void *state);
} EsSinkMethods;

/*
 * Whether this relay worker is asked to leave its database (DROP DATABASE,
 * shutdown of the relay, another database's turn): a sink waiting for a
 * broker stops waiting and reports what it could not confirm FAILED.
 */
extern bool es_relay_stop_requested(void);

/*
 * Whether one of the first upto messages of a batch, with the same key,
 * failed: a sink then leaves the later message of that key unpublished, so
 * that per-key order holds through retries.
 */
extern bool es_sink_key_failed(EsSinkMessage *messages, int upto, const char *key);

/* The sink of a route's URI, and the target part of it; NULL if unknown. */
extern const EsSinkMethods *es_sink_lookup(const char *uri, const char **target);

/* The sinks. */
extern const EsSinkMethods es_sink_notify;

#endif							/* EVENT_STORE_SINK_H */
