/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  What the files of the outbox share: the table's columns, and what
 *	  each of them offers the others.
 *
 * outbox.c				sending: outbox_send, outbox_send_batch, WAL topics
 * outbox_claim.c		consuming: claims, consume, extend, acks and nacks
 * outbox_claim_start.c	where claims start (shared memory)
 * outbox_topics.c		what a backend caches of outbox_topics
 * outbox_xact.c		what a transaction did to the outbox, and what its
 *						end does about it (wake-ups, bounds, commit mode)
 *
 *-------------------------------------------------------------------------
 */
#ifndef ES_OUTBOX_H
#define ES_OUTBOX_H

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/timestamp.h"


/* Columns of event_store.outbox. */
enum
{
	Anum_outbox_id = 1,
	Anum_outbox_topic,
	Anum_outbox_key,
	Anum_outbox_payload,
	Anum_outbox_headers,
	Anum_outbox_attempts,
	Anum_outbox_created_at,
	Anum_outbox_available_at,
	Anum_outbox_receipt,
	Anum_outbox_last_error,
	Natts_outbox = Anum_outbox_last_error
};

/* Columns of event_store.outbox_dead_letters. */
enum
{
	Anum_dead_letters_id = 1,
	Anum_dead_letters_topic,
	Anum_dead_letters_key,
	Anum_dead_letters_payload,
	Anum_dead_letters_headers,
	Anum_dead_letters_attempts,
	Anum_dead_letters_created_at,
	Anum_dead_letters_last_error,
	Anum_dead_letters_died_at,
	Natts_dead_letters = Anum_dead_letters_died_at
};

/* Columns of event_store.outbox_message, what outbox_claim returns. */
#define Natts_outbox_message 8

/* outbox.c */
extern text *es_checked_topic_arg(FunctionCallInfo fcinfo, int argno);

/* outbox_topics.c */
extern bool es_outbox_topic_is_wal(text *topic);
extern void es_outbox_topic_policy(text *topic, int32 *max_attempts, Interval *lease);

/* outbox_xact.c */
extern void es_outbox_note_sent(text *topic);
extern void es_outbox_note_freed(text *topic);
extern void es_outbox_note_freed_topics(SPITupleTable *tuptable, uint64 nrows, int col);
extern void es_outbox_insert_begin(void);
extern void es_outbox_insert_first_id(int64 id);
extern bool es_outbox_wrote_only_claims(void);
extern void es_outbox_claims_written(void);
extern void es_outbox_claim_wait_begin(text *topic);
extern void es_outbox_claim_wait_end(void);

/* outbox_claim_start.c */
extern uint64 es_claim_topic_hash(text *topic);
extern int64 es_claim_start_get(Oid relid, uint64 hash, TimestampTz now,
								bool *from_beginning, uint64 *epoch);
extern void es_claim_start_set(Oid relid, uint64 hash, TimestampTz now, int64 start,
							   bool from_beginning, uint64 epoch);
extern void es_claim_starts_forget(void);
extern int64 es_outbox_lowest_future_id(void);

#endif							/* ES_OUTBOX_H */
