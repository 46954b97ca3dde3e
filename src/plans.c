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
 * The statements name the extension's objects "event_store.<name>"; that
 * prefix is replaced by the quoted name of the namespace pg_extension
 * records for the extension (schema.c) before a statement is prepared, and
 * every plan is prepared again if that namespace changes or is renamed.
 * The plan cache resolves names again from the text whenever it replans,
 * and these statements run as the extension's owner: they must never reach
 * a schema "event_store" that someone else created after a rename.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_namespace.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "event_store.h"

#define ES_SCHEMA_PREFIX	"event_store."

/* Every plan kept (the addresses of their callers' variables). */
static List *kept_plans = NIL;

/* The namespace, and its name, that the kept plans were prepared for. */
static Oid	plans_namespace = InvalidOid;
static NameData plans_namespace_name;

/*
 * Forget every kept plan if the extension's namespace is not the one they
 * were prepared for, or has another name now.
 */
static void
check_plans_namespace(void)
{
	Oid			namespace = es_schema_oid();
	HeapTuple	tuple;
	const char *name;

	tuple = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(namespace));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for namespace %u", namespace);
	name = NameStr(((Form_pg_namespace) GETSTRUCT(tuple))->nspname);
	if (namespace != plans_namespace ||
		strcmp(name, NameStr(plans_namespace_name)) != 0)
	{
		ListCell   *lc;

		foreach(lc, kept_plans)
		{
			SPIPlanPtr *plan = (SPIPlanPtr *) lfirst(lc);

			if (*plan != NULL)
				SPI_freeplan(*plan);
			*plan = NULL;
		}
		list_free(kept_plans);
		kept_plans = NIL;
		plans_namespace = namespace;
		namestrcpy(&plans_namespace_name, name);
	}
	ReleaseSysCache(tuple);
}

/*
 * The statement's text with every "event_store." prefix (one that does not
 * continue an identifier) replaced by the quoted name of the extension's
 * namespace.
 */
static char *
qualified_sql(const char *sql)
{
	const char *schema = quote_identifier(NameStr(plans_namespace_name));
	size_t		prefix_len = strlen(ES_SCHEMA_PREFIX);
	StringInfoData buf;
	const char *p = sql;
	const char *found;

	initStringInfo(&buf);
	while ((found = strstr(p, ES_SCHEMA_PREFIX)) != NULL)
	{
		bool		continues = found > sql &&
			(IS_HIGHBIT_SET(found[-1]) || isalnum((unsigned char) found[-1]) ||
			 found[-1] == '_' || found[-1] == '$' || found[-1] == '"');

		appendBinaryStringInfo(&buf, p, found - p);
		if (continues)
			appendStringInfoString(&buf, ES_SCHEMA_PREFIX);
		else
			appendStringInfo(&buf, "%s.", schema);
		p = found + prefix_len;
	}
	appendStringInfoString(&buf, p);
	return buf.data;
}

/*
 * The plan of a statement, prepared on first use.  Call inside
 * SPI_connect/SPI_finish.  plan is the caller's static variable.
 *
 * It first makes sure the transaction holds the extension's lock (through
 * es_schema_oid, see schema.c), so that the statement never waits for one
 * of the extension's tables behind a DROP or ALTER EXTENSION, and reports
 * an extension dropped meanwhile as such.
 */
SPIPlanPtr
es_prepared_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *argtypes)
{
	check_plans_namespace();
	if (*plan == NULL)
	{
		char	   *text = qualified_sql(sql);
		SPIPlanPtr	prepared = SPI_prepare_cursor(text, nargs, argtypes,
												  CURSOR_OPT_GENERIC_PLAN);
		MemoryContext oldcontext;

		if (prepared == NULL)
			elog(ERROR, "SPI_prepare_cursor returned %s for an event_store statement",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(prepared);
		pfree(text);
		oldcontext = MemoryContextSwitchTo(TopMemoryContext);
		kept_plans = lappend(kept_plans, plan);
		MemoryContextSwitchTo(oldcontext);
		*plan = prepared;
	}
	return *plan;
}

/*
 * Run a prepared statement.  Any result but the expected one is an
 * internal error naming the statement and SPI's result code.
 */
void
es_spi_execute(SPIPlanPtr plan, Datum *values, bool read_only, int expected,
			   const char *statement)
{
	int			rc = SPI_execute_plan(plan, values, NULL, read_only, 0);

	if (rc != expected)
		elog(ERROR, "event_store %s statement returned %s",
			 statement, SPI_result_code_string(rc));
}
