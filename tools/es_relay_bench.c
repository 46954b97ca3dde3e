/*-------------------------------------------------------------------------
 *
 * es_relay_bench.c
 *	  Latency of the relay: from the commit of outbox_send to the receipt of
 *	  its NOTIFY by a listening client.
 *
 * A producer thread sends one message per transaction at a fixed rate and
 * records when each commit returned; a listener thread, on its own
 * connection, LISTENs on the routed channel and records when each message
 * arrived.  Both use the same monotonic clock.  Prints one line:
 *
 *   sent=N received=N p50_ms=... p95_ms=... p99_ms=... max_ms=...
 *
 * Usage: es_relay_bench -d conninfo -t topic -c channel -r rate -s seconds
 * The topic must be routed to notify:<channel> (relay_route).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <pthread.h>
#include <sys/select.h>
#include <unistd.h>

#include "tools_common.h"

static const char *conninfo = "";
static const char *topic = "bench_relay";
static const char *channel = "bench_relay";
static int	rate = 1000;
static int	seconds = 10;

static long total;				/* messages the producer will send */
static double *committed_at;	/* per message: commit returned (ms) */
static double *received_at;		/* per message: NOTIFY received (ms), 0 if not */
static volatile int producer_done = 0;
static volatile int listener_ready = 0;

static PGconn *
connect_or_die(void)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "es_relay_bench: %s", PQerrorMessage(conn));
		exit(2);
	}
	return conn;
}

static void *
listener_main(void *arg)
{
	PGconn	   *conn = connect_or_die();
	double		done_at = 0;

	if (listen_on(conn, channel, "es_relay_bench") != 0)
		exit(2);
	listener_ready = 1;

	for (;;)
	{
		PGnotify   *notify;
		fd_set		fds;
		struct timeval timeout = {0, 10 * 1000};
		int			sock = PQsocket(conn);

		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (select(sock + 1, &fds, NULL, NULL, &timeout) < 0 && errno != EINTR)
			break;
		PQconsumeInput(conn);
		while ((notify = PQnotifies(conn)) != NULL)
		{
			double		t = now_ms();
			const char *seq = strstr(notify->extra, "\"seq\": ");

			if (seq != NULL)
			{
				long		i = atol(seq + 7);

				if (i >= 0 && i < total && received_at[i] == 0)
					received_at[i] = t;
			}
			PQfreemem(notify);
		}
		/* After the producer is done, wait up to 5 s for stragglers. */
		if (producer_done)
		{
			if (done_at == 0)
				done_at = now_ms();
			else if (now_ms() - done_at > 5000)
				break;
		}
	}
	PQfinish(conn);
	return NULL;
}

static int
compare_doubles(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	pthread_t	listener;
	PGconn	   *conn;
	double		start;
	double	   *latencies;
	long		received = 0;
	int			opt;

	while ((opt = getopt(argc, argv, "d:t:c:r:s:")) != -1)
	{
		switch (opt)
		{
			case 'd':
				conninfo = optarg;
				break;
			case 't':
				topic = optarg;
				break;
			case 'c':
				channel = optarg;
				break;
			case 'r':
				rate = atoi(optarg);
				break;
			case 's':
				seconds = atoi(optarg);
				break;
			default:
				fprintf(stderr, "usage: es_relay_bench -d conninfo -t topic -c channel -r rate -s seconds\n");
				return 2;
		}
	}
	if (rate <= 0 || seconds <= 0)
	{
		fprintf(stderr, "es_relay_bench: rate and seconds must be positive\n");
		return 2;
	}

	total = (long) rate * seconds;
	committed_at = calloc(total, sizeof(double));
	received_at = calloc(total, sizeof(double));
	pthread_create(&listener, NULL, listener_main, NULL);
	while (!listener_ready)
		usleep(1000);

	conn = connect_or_die();
	start = now_ms();
	for (long i = 0; i < total; i++)
	{
		char		payload[64];
		const char *params[2] = {topic, payload};
		PGresult   *res;
		double		due = start + i * 1000.0 / rate;
		double		wait = due - now_ms();

		if (wait > 0)
			usleep((useconds_t) (wait * 1000));
		snprintf(payload, sizeof(payload), "{\"seq\": %ld}", i);
		res = PQexecParams(conn, "SELECT event_store.outbox_send($1, $2::jsonb)",
						   2, NULL, params, NULL, NULL, 0);
		committed_at[i] = now_ms();
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			fprintf(stderr, "es_relay_bench: %s", PQerrorMessage(conn));
			exit(2);
		}
		PQclear(res);
	}
	producer_done = 1;
	pthread_join(listener, NULL);
	PQfinish(conn);

	/*
	 * A notification can arrive before the producer saw its commit return:
	 * that latency counts as 0.
	 */
	latencies = malloc(sizeof(double) * total);
	for (long i = 0; i < total; i++)
	{
		if (received_at[i] == 0)
			continue;
		latencies[received++] = received_at[i] > committed_at[i] ?
			received_at[i] - committed_at[i] : 0;
	}
	if (received == 0)
	{
		printf("sent=%ld received=0\n", total);
		return 1;
	}
	qsort(latencies, received, sizeof(double), compare_doubles);
	printf("sent=%ld received=%ld p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
		   total, received,
		   latencies[(long) (received * 0.50)],
		   latencies[(long) (received * 0.95)],
		   latencies[(long) (received * 0.99) < received ? (long) (received * 0.99) : received - 1],
		   latencies[received - 1]);
	return received == total ? 0 : 1;
}
