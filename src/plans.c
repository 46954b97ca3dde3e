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
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

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
		SPIPlanPtr	prepared = SPI_prepare(sql, nargs, argtypes);

		if (prepared == NULL)
			elog(ERROR, "could not prepare event_store statement: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(prepared);
		*plan = prepared;
	}
	return *plan;
}
