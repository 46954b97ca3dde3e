/*-------------------------------------------------------------------------
 *
 * writer.c
 *	  Inserting rows into the extension's tables without SQL.
 *
 * The hot paths (append, outbox_send) insert through the executor's
 * simple-insert routine, the one logical replication uses to apply rows: it
 * checks constraints, fires triggers and maintains every index of the table,
 * but needs no parse, plan or portal.  Table privileges are not checked
 * here: callers are reached through functions whose EXECUTE privilege is the
 * access control, and the tables themselves are closed to PUBLIC.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "compat.h"
#include "event_store.h"

/*
 * Refuse to write in a read-only transaction or on a hot standby, as the
 * executor would for an INSERT (the writer bypasses that check).
 */
void
es_check_writable(const char *function_name)
{
	PreventCommandIfReadOnly(function_name);
	PreventCommandDuringRecovery(function_name);
}

/*
 * A row that a command updates or deletes was changed by a transaction
 * that committed since the command's snapshot.  Under REPEATABLE READ and
 * above, the serialization failure an UPDATE or DELETE would raise; under
 * READ COMMITTED, a registered snapshot to look at the row's latest
 * version with.  *fresh tells whether snapshot was one of these, which is
 * then unregistered; the caller unregisters the last one it got.
 */
Snapshot
es_snapshot_after_concurrent_update(Snapshot snapshot, bool *fresh)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("could not serialize access due to concurrent update")));
	if (*fresh)
		UnregisterSnapshot(snapshot);
	*fresh = true;
	return RegisterSnapshot(GetLatestSnapshot());
}

EsTableWriter *
es_writer_open(const char *relname)
{
	EsTableWriter *writer = palloc0(sizeof(EsTableWriter));
	RangeTblEntry *rte;
	Oid			relid;

	writer->rel = es_open_relation(relname, RowExclusiveLock);
	relid = RelationGetRelid(writer->rel);
	writer->estate = CreateExecutorState();

	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = writer->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	es_init_range_table(writer->estate, list_make1(rte));

	writer->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(writer->rri, writer->rel, 1, NULL, 0);
	writer->estate->es_opened_result_relations =
		lappend(writer->estate->es_opened_result_relations, writer->rri);
	writer->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(writer->rri, false);

	writer->slot = ExecInitExtraTupleSlot(writer->estate,
										  RelationGetDescr(writer->rel),
										  &TTSOpsVirtual);
	AfterTriggerBeginQuery();
	return writer;
}

/*
 * Insert one row.  values/nulls are in the table's column order.
 */
void
es_writer_insert(EsTableWriter *writer, Datum *values, bool *nulls)
{
	TupleTableSlot *slot = writer->slot;
	int			natts = slot->tts_tupleDescriptor->natts;

	ExecClearTuple(slot);
	memcpy(slot->tts_values, values, natts * sizeof(Datum));
	memcpy(slot->tts_isnull, nulls, natts * sizeof(bool));
	ExecStoreVirtualTuple(slot);

	ResetPerTupleExprContext(writer->estate);
	ExecSimpleRelationInsert(writer->rri, writer->estate, slot);
}

void
es_writer_close(EsTableWriter *writer)
{
	AfterTriggerEndQuery(writer->estate);
	ExecCloseIndices(writer->rri);
	ExecResetTupleTable(writer->estate->es_tupleTable, false);
	FreeExecutorState(writer->estate);
	table_close(writer->rel, NoLock);
	pfree(writer);
}
