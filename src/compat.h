/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL major versions the extension
 *	  builds against, in one place.
 *
 * The code is written for PostgreSQL 15; each macro here names what a
 * later version changed, so that porting to a new major version means
 * reading this file against its headers.  No other file tests
 * PG_VERSION_NUM.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_COMPAT_H
#define ES_COMPAT_H

#include "postgres.h"

#include "executor/executor.h"
#include "storage/proc.h"

/* 17 replaced PGPROC's pgprocno with MyProcNumber. */
#if PG_VERSION_NUM >= 170000
#define ES_MY_PROCNO			MyProcNumber
#else
#define ES_MY_PROCNO			(MyProc->pgprocno)
#endif

/* 16 added the permission infos of the range table. */
#if PG_VERSION_NUM >= 160000
#define es_init_range_table(estate, rtable) \
	ExecInitRangeTable((estate), (rtable), NIL)
#else
#define es_init_range_table(estate, rtable) \
	ExecInitRangeTable((estate), (rtable))
#endif

#endif							/* ES_COMPAT_H */
