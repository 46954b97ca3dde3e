/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Checks of SQL arguments shared by several functions, raising the
 *	  contract's errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "event_store.h"

/*
 * Raise the contract's error for a NULL argument; name names it.
 */
void
es_require_arg(FunctionCallInfo fcinfo, int argno, const char *name)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", name)));
}

/*
 * At most limit bytes of a name (len bytes, in the database encoding) for
 * an error message, cut at a character boundary: a cut inside a multibyte
 * character would make the message invalid in the client's encoding.
 */
char *
es_clipped(const char *name, int len, int limit)
{
	return pnstrdup(name, pg_mbcliplen(name, len, Min(len, limit)));
}

/*
 * A max_count argument: not NULL, not negative.
 */
int32
es_checked_max_count(FunctionCallInfo fcinfo, int argno)
{
	int32		max_count;

	es_require_arg(fcinfo, argno, "max_count");
	max_count = PG_GETARG_INT32(argno);
	if (max_count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_count must not be negative")));
	return max_count;
}

/*
 * A JSON value that must be an object (metadata, headers): returns it, or
 * NULL for a JSON null.  "what" names it in the message.
 */
Jsonb *
es_checked_json_object(Jsonb *value, const char *what)
{
	if (JB_ROOT_IS_SCALAR(value))
	{
		JsonbValue	scalar;

		if (JsonbExtractScalar(&value->root, &scalar) && scalar.type == jbvNull)
			return NULL;
	}
	if (JB_ROOT_IS_SCALAR(value) || !JB_ROOT_IS_OBJECT(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));
	return value;
}

/*
 * Sign of an interval (-1, 0 or 1), as the interval type orders them.
 */
int
es_interval_sign(Interval *interval)
{
	Interval	zero = {0};

	return DatumGetInt32(DirectFunctionCall2(interval_cmp,
											 IntervalPGetDatum(interval),
											 IntervalPGetDatum(&zero)));
}
