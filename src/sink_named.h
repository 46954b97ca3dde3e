/*-------------------------------------------------------------------------
 *
 * sink_named.h
 *	  Drivers of the named sinks (relay_sink_create): one per URL scheme.
 *
 * A named sink keeps its connection across batches (sink_config.c caches
 * it per worker, by name, and reconnects when the sink's url or options
 * change).  For each batch, sink_config.c resolves the route's destination
 * and calls the driver's publish and confirm, with the semantics of
 * sink.h; connect and every wait are bounded and answer interrupts.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EVENT_STORE_SINK_NAMED_H
#define EVENT_STORE_SINK_NAMED_H

#include "sink.h"

typedef struct EsSinkDriver
{
	const char *scheme;
	const char *label;			/* in errors: "<label> sink \"name\": ..." */

	/*
	 * A new connection (malloc'd: it outlives transactions), or NULL with
	 * *error set (palloc'd, without secrets).  options_json is a JSON
	 * object.
	 */
	void	   *(*connect) (const char *name, const char *url,
							const char *options_json, char **error);
	/* destination as given to relay_route, or NULL */
	void		(*publish) (void *conn, const char *destination,
							EsSinkMessage *messages, int count);
	void		(*confirm) (void *conn, EsSinkMessage *messages, int count,
							int timeout_ms);
	/* false once the connection is broken: it is made again */
	bool		(*usable) (void *conn);
	int			(*in_flight) (void *conn);
	void		(*disconnect) (void *conn);
} EsSinkDriver;

/* The sink of routes that name a sink (es_sink_lookup). */
extern const EsSinkMethods es_sink_named;

extern const EsSinkDriver es_sink_driver_kafka;
extern const EsSinkDriver es_sink_driver_amqp;
extern const EsSinkDriver es_sink_driver_http;
extern const EsSinkDriver es_sink_driver_https;

/* Header values of a message's JSON headers, for the drivers. */
typedef struct EsSinkHeader
{
	char	   *name;
	char	   *value;			/* strings as they are, other values as JSON */
} EsSinkHeader;

extern int	es_sink_headers(const char *headers_json, EsSinkHeader **headers);

#endif							/* EVENT_STORE_SINK_NAMED_H */
