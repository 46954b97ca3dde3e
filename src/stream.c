/*-------------------------------------------------------------------------
 *
 * stream.c
 *	  Stream names: validation, categories, the stable hash, and the lock
 *	  that serialises appenders of one stream.
 *
 * The lock is a transaction-scoped heavyweight lock whose tag is a hash of
 * the stream name, so appenders to different streams never wait for each
 * other, and appenders to the same stream queue in the lock manager (with
 * deadlock detection) until the holder commits or aborts.  A collision of
 * the 64-bit hash only makes two streams share a lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/builtins.h"

#include "event_store.h"

PG_FUNCTION_INFO_V1(event_store_category);
PG_FUNCTION_INFO_V1(event_store_stream_hash);
PG_FUNCTION_INFO_V1(event_store_consumer_group_member);
PG_FUNCTION_INFO_V1(event_store_check_category);
PG_FUNCTION_INFO_V1(event_store_check_stream);

/* Seed of the stream hash: part of the on-disk contract, never change it. */
#define ES_STREAM_HASH_SEED		UINT64CONST(0x6576656e7473)

/*
 * Check a stream name: non-empty and at most ES_MAX_STREAM_NAME_BYTES.
 */
static void
es_check_stream_name(const char *name, int len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stream name must not be empty")));
	if (len > ES_MAX_STREAM_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("stream name \"%s...\" is too long", es_clipped(name, len, 32)),
				 errdetail("Stream names are at most %d bytes; this one has %d.",
						   ES_MAX_STREAM_NAME_BYTES, len)));
}

/*
 * Fetch argument argno as a stream name, raising the contract's errors for
 * NULL, empty and over-long names.  Returns the detoasted text.
 */
text *
es_checked_stream_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *stream;

	es_require_arg(fcinfo, argno, "stream name");
	stream = PG_GETARG_TEXT_PP(argno);
	es_check_stream_name(VARDATA_ANY(stream), VARSIZE_ANY_EXHDR(stream));
	return stream;
}

/*
 * check_stream(stream): the checks of a stream name argument, for the SQL
 * functions that take one.
 */
Datum
event_store_check_stream(PG_FUNCTION_ARGS)
{
	(void) es_checked_stream_arg(fcinfo, 0);
	PG_RETURN_VOID();
}

/*
 * The category of a stream is the part before its first '-'; a name without
 * '-' is its own category.
 */
text *
es_category_of(const char *stream, int len)
{
	const char *dash = memchr(stream, '-', len);

	return cstring_to_text_with_len(stream, dash ? (int) (dash - stream) : len);
}

/*
 * Check a category argument: a category can only be the part of a stream
 * name before its first '-', so it is not empty and has no '-'.  (Without
 * this check, such a category would simply match nothing.)
 */
void
es_check_category(const char *category, int len)
{
	if (len > ES_MAX_STREAM_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("category \"%s...\" is too long", es_clipped(category, len, 32)),
				 errdetail("Categories are at most %d bytes; this one has %d.",
						   ES_MAX_STREAM_NAME_BYTES, len)));
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("category must not be empty")));
	if (memchr(category, '-', len) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("category \"%s\" contains \"-\"", pnstrdup(category, len)),
				 errdetail("The category of a stream is the part of its name before the first \"-\": no stream is in this category.")));
}

/*
 * Stable 64-bit hash of a stream name, used for consumer groups and for the
 * stream lock.  hash_bytes_extended gives the same value on every platform
 * and server version we support.
 */
static uint64
es_stream_hash(const char *stream, int len)
{
	return hash_bytes_extended((const unsigned char *) stream, len,
							   ES_STREAM_HASH_SEED);
}

/*
 * The member of a consumer group of the given size that a stream belongs
 * to: every stream to exactly one member, always the same one.
 */
int32
es_consumer_group_member(const char *stream, int len, int32 size)
{
	Assert(size > 0);
	return (int32) (es_stream_hash(stream, len) % (uint64) size);
}

/*
 * Take the stream's append lock until the end of the transaction.
 */
void
es_lock_stream(const char *stream, int len)
{
	LOCKTAG		tag;
	uint64		hash = es_stream_hash(stream, len);

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId,
						 (uint32) (hash >> 32), (uint32) hash,
						 ES_LOCK_CLASS_STREAM);
	(void) LockAcquire(&tag, ExclusiveLock, false, false);
}

Datum
event_store_category(PG_FUNCTION_ARGS)
{
	text	   *stream = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(es_category_of(VARDATA_ANY(stream),
									VARSIZE_ANY_EXHDR(stream)));
}

Datum
event_store_stream_hash(PG_FUNCTION_ARGS)
{
	text	   *stream = PG_GETARG_TEXT_PP(0);

	PG_RETURN_INT64((int64) es_stream_hash(VARDATA_ANY(stream),
										   VARSIZE_ANY_EXHDR(stream)));
}

/*
 * A consumer group's size: at least 1.
 */
void
es_check_consumer_group_size(int32 size)
{
	if (size < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("consumer group size must be at least 1")));
}

Datum
event_store_consumer_group_member(PG_FUNCTION_ARGS)
{
	text	   *stream = PG_GETARG_TEXT_PP(0);
	int32		size = PG_GETARG_INT32(1);

	es_check_consumer_group_size(size);
	PG_RETURN_INT32(es_consumer_group_member(VARDATA_ANY(stream),
											 VARSIZE_ANY_EXHDR(stream), size));
}

/*
 * check_category(category): the checks of es_check_category for the SQL
 * functions that take a category; NULL passes (it stands for every
 * category).
 */
Datum
event_store_check_category(PG_FUNCTION_ARGS)
{
	text	   *category;

	if (PG_ARGISNULL(0))
		PG_RETURN_VOID();
	category = PG_GETARG_TEXT_PP(0);
	es_check_category(VARDATA_ANY(category), VARSIZE_ANY_EXHDR(category));
	PG_RETURN_VOID();
}
