/*-------------------------------------------------------------------------
 *
 * es_wal_messages.c
 *	  A logical replication client for tests and demos: streams a slot with
 *	  the pgoutput plugin and its "messages" option on, and prints every
 *	  logical decoding message it receives, one per line, as
 *	  "<transactional 0|1><TAB><prefix><TAB><content>".  Messages of a
 *	  transaction come between its BEGIN and COMMIT, so the order of the
 *	  lines is the commit order.
 *
 * Usage: es_wal_messages -d conninfo -S slot -P publication -E endpos
 *	 -d  a connection string (replication=database is added)
 *	 -S  a logical replication slot made with the pgoutput plugin
 *	 -P  the publication to stream (pgoutput needs one; it may be empty)
 *	 -E  stop once the stream reaches this LSN (as pg_recvlogical --endpos)
 *
 *-------------------------------------------------------------------------
 */
#include <inttypes.h>
#include <stdint.h>
#include <sys/time.h>
#include <unistd.h>

#include "tools_common.h"

/* Microseconds since 2000-01-01, PostgreSQL's epoch. */
static int64_t
pg_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return ((int64_t) tv.tv_sec - 946684800) * 1000000 + tv.tv_usec;
}

static uint64_t
get64(const char *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char) p[i];
	return v;
}

static uint32_t
get32(const char *p)
{
	uint32_t	v = 0;

	for (int i = 0; i < 4; i++)
		v = (v << 8) | (unsigned char) p[i];
	return v;
}

static void
put64(char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
	{
		p[i] = (char) (v & 0xff);
		v >>= 8;
	}
}

/* Tell the server how far we got (it asked, or it is a good time to). */
static int
send_feedback(PGconn *conn, uint64_t lsn)
{
	char		buf[1 + 8 + 8 + 8 + 8 + 1];

	buf[0] = 'r';
	put64(buf + 1, lsn);		/* written */
	put64(buf + 9, lsn);		/* flushed */
	put64(buf + 17, 0);			/* applied */
	put64(buf + 25, (uint64_t) pg_now());
	buf[33] = 0;
	if (PQputCopyData(conn, buf, sizeof(buf)) <= 0 || PQflush(conn) != 0)
		return -1;
	return 0;
}

static void
die(PGconn *conn, const char *what)
{
	fprintf(stderr, "es_wal_messages: %s: %s", what, conn ? PQerrorMessage(conn) : "\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *conninfo = NULL;
	const char *slot = NULL;
	const char *publication = NULL;
	uint64_t	endpos = 0;
	int			opt;
	char	   *full_conninfo;
	char	   *command;
	char	   *quoted_pub;
	PGconn	   *conn;
	PGresult   *res;
	uint64_t	received = 0;

	while ((opt = getopt(argc, argv, "d:S:P:E:")) != -1)
	{
		switch (opt)
		{
			case 'd':
				conninfo = optarg;
				break;
			case 'S':
				slot = optarg;
				break;
			case 'P':
				publication = optarg;
				break;
			case 'E':
				{
					unsigned int hi,
								lo;

					if (sscanf(optarg, "%X/%X", &hi, &lo) != 2)
						die(NULL, "bad endpos");
					endpos = ((uint64_t) hi << 32) | lo;
				}
				break;
			default:
				fprintf(stderr, "usage: es_wal_messages -d conninfo -S slot -P publication -E endpos\n");
				return 2;
		}
	}
	if (!conninfo || !slot || !publication || endpos == 0)
	{
		fprintf(stderr, "usage: es_wal_messages -d conninfo -S slot -P publication -E endpos\n");
		return 2;
	}

	full_conninfo = malloc(strlen(conninfo) + 32);
	sprintf(full_conninfo, "%s replication=database", conninfo);
	conn = PQconnectdb(full_conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
		die(conn, "connection failed");

	/* Slot and publication names are identifiers; quote them. */
	quoted_pub = PQescapeLiteral(conn, publication, strlen(publication));
	command = malloc(strlen(slot) + strlen(quoted_pub) + 200);
	sprintf(command,
			"START_REPLICATION SLOT \"%s\" LOGICAL 0/0 "
			"(proto_version '1', publication_names %s, messages 'true')",
			slot, quoted_pub);
	res = PQexec(conn, command);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
		die(conn, "START_REPLICATION failed");
	PQclear(res);

	for (;;)
	{
		char	   *buf = NULL;
		int			len = PQgetCopyData(conn, &buf, 0);

		if (len == -1)
			break;				/* the server ended the stream */
		if (len == -2)
			die(conn, "could not read the stream");
		if (buf[0] == 'k' && len >= 18)
		{
			uint64_t	wal_end = get64(buf + 1);

			if (buf[17] && send_feedback(conn, received) != 0)
				die(conn, "could not send feedback");
			if (wal_end >= endpos)
			{
				PQfreemem(buf);
				break;
			}
		}
		else if (buf[0] == 'w' && len >= 25)
		{
			uint64_t	start = get64(buf + 1);
			const char *msg = buf + 25;
			int			msglen = len - 25;

			if (start >= endpos && start != 0)
			{
				PQfreemem(buf);
				break;
			}
			if (start > received)
				received = start;
			/* 'M': flags, lsn, prefix (NUL-terminated), length, content */
			if (msglen > 0 && msg[0] == 'M')
			{
				int			transactional = msg[1] & 1;
				const char *prefix = msg + 10;
				size_t		prefix_len = strlen(prefix);
				uint32_t	content_len = get32(prefix + prefix_len + 1);
				const char *content = prefix + prefix_len + 5;

				printf("%d\t%s\t%.*s\n", transactional, prefix,
					   (int) content_len, content);
				fflush(stdout);
			}
		}
		PQfreemem(buf);
	}
	send_feedback(conn, received);
	PQputCopyEnd(conn, NULL);
	PQfinish(conn);
	return 0;
}
