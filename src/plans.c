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
 * The queue statements (claim, relay) scan a topic in the order of the
 * claim index, (topic, id + 0).  The second column is id + 0 rather than
 * id so that no other index can stand in for it.  Given topic = $1, the
 * primary key's id order would satisfy ORDER BY topic, id; with statistics
 * taken while the queue held one topic, a scan of the whole queue in id
 * order filtered on the topic looks as cheap, and reads every message of
 * the other topics ahead of the first one it claims.  And a queue is
 * mostly empty pages between autovacuums: on such statistics every index
 * lookup looks as costly as reading the whole index, so a lookup by id
 * (ack, nack) could take a full scan of a (topic, id) index and keep that
 * plan while a backlog builds up; with id + 0, the primary key is the only
 * index for ids.  The consumer functions and the relay worker also run
 * with sequential and bitmap scans off (a bitmap scan would read a whole
 * topic and sort it to claim a batch).  The rows a statement has just
 * locked are updated or deleted by ctid (a TID scan): a locked row cannot
 * move before the statement ends.
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
 *
 * It first makes sure the transaction holds the extension's lock (see
 * schema.c), so that the statement never waits for one of the extension's
 * tables behind a DROP or ALTER EXTENSION, and reports an extension dropped
 * meanwhile as such.
 */
SPIPlanPtr
es_prepared_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	(void) es_schema_oid();
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
