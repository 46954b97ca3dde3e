/*-------------------------------------------------------------------------
 *
 * ids.c
 *	  Identifiers made here: event ids for events that come without one,
 *	  and the receipts of outbox claims.
 *
 * Generated ids are UUID version 7 (RFC 9562): 48 bits of Unix time in
 * milliseconds, then random bits.  Being time-ordered, they land at the
 * right edge of the unique id index instead of all over it, which keeps the
 * index compact and cached as the log grows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "fmgr.h"
#include "utils/timestamp.h"

#include "event_store.h"

void
es_generate_uuid(pg_uuid_t *uuid)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		unix_ms;

	if (!pg_strong_random(uuid->data, UUID_LEN))
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not generate random values for an event id")));

	/* TimestampTz counts microseconds since 2000-01-01. */
	unix_ms = (uint64) (now / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	uuid->data[0] = (unsigned char) (unix_ms >> 40);
	uuid->data[1] = (unsigned char) (unix_ms >> 32);
	uuid->data[2] = (unsigned char) (unix_ms >> 24);
	uuid->data[3] = (unsigned char) (unix_ms >> 16);
	uuid->data[4] = (unsigned char) (unix_ms >> 8);
	uuid->data[5] = (unsigned char) unix_ms;
	uuid->data[6] = (uuid->data[6] & 0x0f) | 0x70;	/* version 7 */
	uuid->data[8] = (uuid->data[8] & 0x3f) | 0x80;	/* RFC 4122 variant */
}

/*
 * The random half of receipts comes from a generator of this module's own,
 * seeded from the system's strong source on first use.  A receipt has to
 * differ from the earlier receipts of its message (a repeat has a chance of
 * 2^-64), not to be secret; drawing from the strong source for each one
 * cost about a tenth of a claim and acknowledgement.
 */
static pg_prng_state receipt_prng;
static bool receipt_prng_seeded = false;

/*
 * Outbox receipts: the message id in the first 8 bytes (big-endian), so an
 * acknowledgement finds its row by primary key, then 8 random bytes, new on
 * every claim, so a stale receipt never matches the current one.
 */
static void
es_make_receipt(int64 message_id, pg_uuid_t *receipt)
{
	uint64		id = (uint64) message_id;
	uint64		random_bits;

	if (!receipt_prng_seeded)
	{
		if (!pg_prng_strong_seed(&receipt_prng))
			ereport(ERROR,
					(errcode(ERRCODE_SYSTEM_ERROR),
					 errmsg("could not generate random values for a receipt")));
		receipt_prng_seeded = true;
	}
	random_bits = pg_prng_uint64(&receipt_prng);
	for (int i = 0; i < 8; i++)
	{
		receipt->data[i] = (unsigned char) (id >> (56 - 8 * i));
		receipt->data[8 + i] = (unsigned char) (random_bits >> (56 - 8 * i));
	}
}

int64
es_receipt_message_id(const pg_uuid_t *receipt)
{
	uint64		id = 0;

	for (int i = 0; i < 8; i++)
		id = (id << 8) | receipt->data[i];
	return (int64) id;
}

PG_FUNCTION_INFO_V1(event_store_outbox_new_receipt);

/*
 * outbox_new_receipt(id): a fresh receipt for a claim of message id.
 */
Datum
event_store_outbox_new_receipt(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *receipt = palloc(sizeof(pg_uuid_t));

	es_make_receipt(PG_GETARG_INT64(0), receipt);
	PG_RETURN_UUID_P(receipt);
}
