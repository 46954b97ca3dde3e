/*-------------------------------------------------------------------------
 *
 * es_listen.c
 *	  A LISTEN client for tests and demos: prints every notification it
 *	  receives on the given channels, one per line, as
 *	  "<channel><TAB><payload>".  It reconnects (and listens again) when
 *	  the server goes away, so it survives crash tests.
 *
 * Usage: es_listen [-d conninfo] [-n count] [-i idle_ms] [-r ready_file]
 *                  channel...
 *	 -n  exit after this many notifications (default: no limit)
 *	 -i  exit after this many milliseconds without one (default 10000)
 *	 -r  create this file once listening (tests wait for it)
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <sys/select.h>
#include <unistd.h>

#include "tools_common.h"

/* Connect and LISTEN on every channel; NULL if the server is not there. */
static PGconn *
connect_and_listen(const char *conninfo, char **channels, int nchannels)
{
	PGconn	   *conn = PQconnectdb(conninfo);

	if (PQstatus(conn) != CONNECTION_OK)
	{
		PQfinish(conn);
		return NULL;
	}
	for (int i = 0; i < nchannels; i++)
	{
		if (listen_on(conn, channels[i], "es_listen") != 0)
			exit(2);
	}
	return conn;
}

int
main(int argc, char **argv)
{
	const char *conninfo = "";
	long		limit = -1;
	long		idle_ms = 10000;
	const char *ready_file = NULL;
	long		received = 0;
	double		last_event;
	PGconn	   *conn = NULL;
	int			opt;

	while ((opt = getopt(argc, argv, "d:n:i:r:")) != -1)
	{
		switch (opt)
		{
			case 'd':
				conninfo = optarg;
				break;
			case 'n':
				limit = atol(optarg);
				break;
			case 'i':
				idle_ms = atol(optarg);
				break;
			case 'r':
				ready_file = optarg;
				break;
			default:
				fprintf(stderr, "usage: es_listen [-d conninfo] [-n count] [-i idle_ms] [-r ready_file] channel...\n");
				return 2;
		}
	}
	if (optind >= argc)
	{
		fprintf(stderr, "es_listen: no channel given\n");
		return 2;
	}

	last_event = now_ms();
	while (limit < 0 || received < limit)
	{
		PGnotify   *notify;
		fd_set		fds;
		struct timeval timeout = {0, 100 * 1000};
		int			sock;

		if (now_ms() - last_event > idle_ms)
			break;

		if (conn == NULL)
		{
			conn = connect_and_listen(conninfo, argv + optind, argc - optind);
			if (conn == NULL)
			{
				usleep(100 * 1000);
				continue;
			}
			if (ready_file != NULL)
			{
				FILE	   *f = fopen(ready_file, "w");

				if (f != NULL)
					fclose(f);
			}
		}

		sock = PQsocket(conn);
		FD_ZERO(&fds);
		FD_SET(sock, &fds);
		if (select(sock + 1, &fds, NULL, NULL, &timeout) < 0 && errno != EINTR)
		{
			perror("es_listen: select");
			return 2;
		}
		if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
		{
			/* The server went away: connect again. */
			PQfinish(conn);
			conn = NULL;
			continue;
		}
		while ((notify = PQnotifies(conn)) != NULL)
		{
			printf("%s\t%s\n", notify->relname, notify->extra);
			fflush(stdout);
			PQfreemem(notify);
			received++;
			last_event = now_ms();
		}
	}
	if (conn != NULL)
		PQfinish(conn);
	return 0;
}
