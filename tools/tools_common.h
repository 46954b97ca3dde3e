/*-------------------------------------------------------------------------
 *
 * tools_common.h
 *	  Pieces shared by the libpq tools of this folder.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TOOLS_COMMON_H
#define TOOLS_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libpq-fe.h"

/* Milliseconds on a monotonic clock. */
static inline double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

/*
 * LISTEN on a channel, quoted as an identifier so that any name works.
 * Returns 0, or -1 with the error printed.
 */
static inline int
listen_on(PGconn *conn, const char *channel, const char *tool)
{
	char	   *quoted = PQescapeIdentifier(conn, channel, strlen(channel));
	char	   *sql;
	PGresult   *res;
	int			ok;

	if (quoted == NULL)
	{
		fprintf(stderr, "%s: %s", tool, PQerrorMessage(conn));
		return -1;
	}
	sql = malloc(strlen(quoted) + 8);
	sprintf(sql, "LISTEN %s", quoted);
	res = PQexec(conn, sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		fprintf(stderr, "%s: %s", tool, PQerrorMessage(conn));
	PQclear(res);
	PQfreemem(quoted);
	free(sql);
	return ok ? 0 : -1;
}

#endif							/* TOOLS_COMMON_H */
