/*-------------------------------------------------------------------------
 *
 * result_store.c
 *	  Where the read functions put the rows they return.
 *
 * A set-returning function in materialize mode hands the executor a
 * tuplestore, by default built in the query's memory.  For a batch of a
 * thousand events that is a few hundred kilobytes taken from malloc and
 * given back when the statement ends, and for a consumer that reads batch
 * after batch the C library returns that memory to the kernel and maps it
 * again each time: in a profile of a subscription catching up, system
 * calls and page faults for it took about a fifth of the fetch's CPU.
 *
 * The reads put their rows instead into one memory context kept for the
 * session, whose first block (ES_RESULT_KEEPER_SIZE) survives the reset
 * that follows each statement.  A read while the rows of an earlier one are
 * still in use (two reads in one query, an open cursor) builds its
 * tuplestore in the query's memory, as any set-returning function does.
 *
 * The context is in use from the read until the query's memory goes away
 * (the executor has ended the tuplestore by then, or an error abandoned
 * it): a callback on that memory resets the context and frees it for the
 * next read.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "event_store.h"

/*
 * The block kept between statements: a batch of 1,000 events of about a
 * hundred bytes each fits in it.  Larger results take more blocks, given
 * back when the statement ends.
 */
#define ES_RESULT_KEEPER_SIZE	(512 * 1024)

/* The session's result context, and whether a query's rows are in it. */
static MemoryContext result_context = NULL;
static bool result_context_in_use = false;

/* The query's memory is going away: so are the rows in the context. */
static void
release_result_context(void *arg)
{
	MemoryContextReset(result_context);
	result_context_in_use = false;
}

/*
 * Set up the function's result as InitMaterializedSRF(fcinfo,
 * MAT_SRF_USE_EXPECTED_DESC) does, with the tuplestore in the session's
 * result context when that is free.  The rows go to rsinfo->setResult,
 * described by rsinfo->setDesc.
 */
void
es_init_result_store(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext per_query;
	MemoryContext store_context;
	MemoryContext old_context;
	MemoryContextCallback *release;
	bool		random_access;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (!(rsinfo->allowedModes & SFRM_Materialize) ||
		rsinfo->expectedDesc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));

	per_query = rsinfo->econtext->ecxt_per_query_memory;
	store_context = per_query;
	if (!result_context_in_use)
	{
		if (result_context == NULL)
			result_context = AllocSetContextCreate(TopMemoryContext,
												   "event_store results",
												   0,
												   ES_RESULT_KEEPER_SIZE,
												   ALLOCSET_DEFAULT_MAXSIZE);
		/* Allocated before the context is taken: an error leaves it free. */
		release = MemoryContextAllocZero(per_query, sizeof(MemoryContextCallback));
		release->func = release_result_context;
		MemoryContextRegisterResetCallback(per_query, release);
		result_context_in_use = true;
		store_context = result_context;
	}

	old_context = MemoryContextSwitchTo(per_query);
	rsinfo->setDesc = CreateTupleDescCopy(rsinfo->expectedDesc);
	MemoryContextSwitchTo(store_context);
	random_access = (rsinfo->allowedModes & SFRM_Materialize_Random) != 0;
	rsinfo->setResult = tuplestore_begin_heap(random_access, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	MemoryContextSwitchTo(old_context);
}
