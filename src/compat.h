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

#include "access/genam.h"
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

/* 18 gave index scans an instrumentation argument (NULL: none). */
#if PG_VERSION_NUM >= 180000
#define es_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define es_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * 16 has an update tell which indexes need new entries (all, only the
 * summarizing ones, none: TU_UpdateIndexes) where 15 said all or none, and
 * ExecInsertIndexTuples take the answer.  EsUpdateIndexes is what
 * table_tuple_update fills in; zero means none.
 */
#if PG_VERSION_NUM >= 160000
typedef TU_UpdateIndexes EsUpdateIndexes;
#define es_insert_index_tuples_after_update(rri, slot, estate, how) \
	ExecInsertIndexTuples((rri), (slot), (estate), true, false, NULL, NIL, \
						  (how) == TU_Summarizing)
#else
typedef bool EsUpdateIndexes;
#define es_insert_index_tuples_after_update(rri, slot, estate, how) \
	ExecInsertIndexTuples((rri), (slot), (estate), true, false, NULL, NIL)
#endif

#endif							/* ES_COMPAT_H */
