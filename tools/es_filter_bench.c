/*-------------------------------------------------------------------------
 *
 * es_filter_bench.c
 *	  Reads the events of one type out of the whole feed, two ways, and
 *	  prints how long each took: a filtered subscription (the server
 *	  skips the other types), and read_all of everything, filtered by the
 *	  client.  For bench/filtered_feed.sh.
 *
 * Usage: es_filter_bench CONNINFO TYPE
 *
 *-------------------------------------------------------------------------
 */
#include "tools_common.h"

#define TOOL "es_filter_bench"

static PGresult *
run(PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	PGresult   *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK &&
		PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "%s: %s", TOOL, PQerrorMessage(conn));
		exit(1);
	}
	return res;
}

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	PGresult   *res;
	const char *type;
	const char *params[2];
	char		position[32];
	double		start;
	double		subscription_ms;
	double		client_ms;
	long		selected = 0;
	long		received = 0;
	long		found = 0;

	if (argc != 3)
	{
		fprintf(stderr, "usage: %s CONNINFO TYPE\n", TOOL);
		return 2;
	}
	type = argv[2];
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "%s: %s", TOOL, PQerrorMessage(conn));
		return 1;
	}

	/* A subscription that selects the type: fetch and ack until drained. */
	params[0] = type;
	PQclear(run(conn, "SELECT event_store.subscription_drop(name) FROM event_store.subscriptions WHERE name = 'filter_bench'", 0, NULL));
	PQclear(run(conn, "SELECT event_store.subscription_create('filter_bench', event_types => ARRAY[$1])", 1, params));
	start = now_ms();
	for (;;)
	{
		int			n;

		PQclear(run(conn, "BEGIN", 0, NULL));
		res = run(conn, "SELECT * FROM event_store.subscription_fetch('filter_bench', 1000)", 0, NULL);
		n = PQntuples(res);
		if (n > 0)
		{
			snprintf(position, sizeof(position), "%s", PQgetvalue(res, n - 1, 0));
			params[0] = position;
			PQclear(run(conn, "SELECT event_store.subscription_ack('filter_bench', $1::bigint)", 1, params));
		}
		PQclear(res);
		PQclear(run(conn, "COMMIT", 0, NULL));
		selected += n;
		if (n == 0)
			break;
	}
	subscription_ms = now_ms() - start;

	/* Everything, in pages of 1000, filtered here. */
	start = now_ms();
	snprintf(position, sizeof(position), "0");
	for (;;)
	{
		int			n;

		params[0] = position;
		res = run(conn, "SELECT * FROM event_store.read_all($1::bigint, 1000)", 1, params);
		n = PQntuples(res);
		for (int i = 0; i < n; i++)
			if (strcmp(PQgetvalue(res, i, 3), type) == 0)
				found++;
		received += n;
		if (n > 0)
			snprintf(position, sizeof(position), "%lld",
					 atoll(PQgetvalue(res, n - 1, 0)) + 1);
		PQclear(res);
		if (n == 0)
			break;
	}
	client_ms = now_ms() - start;

	printf("filtered subscription: %ld events selected in %.0f ms\n", selected, subscription_ms);
	printf("read_all + client filter: %ld events received, %ld selected in %.0f ms\n",
		   received, found, client_ms);
	printf("ratio: %.1fx\n", client_ms / subscription_ms);
	PQfinish(conn);
	return selected == found ? 0 : 1;
}
