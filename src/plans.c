/*-------------------------------------------------------------------------
 *
 * plans.c
 *	  The extension's SQL statements kept as prepared plans.
 *
 * Statements run through SPI are prepared once per backend and kept for
 * its lifetime; the plan cache replans them when the objects they use
 * change, from their text, so they stay right across ALTER and DROP/CREATE
 * EXTENSION.
 *
 * They always use a generic plan.  Left to choose, the plan cache keeps
 * planning a statement with LIMIT $n again on every call (a generic plan
 * cannot know the limit and looks costlier than the custom ones), which
 * costs more than running it.  The statements are written so that their
 * generic plan is the right one (ORDER BY the index they scan).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "nodes/parsenodes.h"

#include "event_store.h"

/*
 * The plan of a statement, prepared on first use.  Call inside
 * SPI_connect/SPI_finish.
 */
SPIPlanPtr
es_prepared_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	if (*plan == NULL)
	{
		SPIPlanPtr	prepared = SPI_prepare_cursor(sql, nargs, argtypes,
												  CURSOR_OPT_GENERIC_PLAN);

		if (prepared == NULL)
			elog(ERROR, "could not prepare event_store statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(prepared);
		*plan = prepared;
	}
	return *plan;
}
