-- Helpers shared by the regression tests (they run in order, in one
-- database).  try() runs a statement and reports its outcome on one line:
-- "ok", or the SQLSTATE, message and detail of the error it raised.
CREATE FUNCTION public.try(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	message text;
	detail text;
BEGIN
	EXECUTE statement;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
		message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
	RETURN state || ': ' || message ||
		coalesce(' | ' || nullif(detail, ''), '');
END
$$;

-- try_context() is try() followed by the context the error names (which
-- event of an append, for instance), without the lines of PL/pgSQL.
CREATE FUNCTION public.try_context(statement text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	message text;
	detail text;
	context text;
BEGIN
	EXECUTE statement;
	RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE,
		message = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
		context = PG_EXCEPTION_CONTEXT;
	SELECT string_agg(line, '; ') INTO context
	FROM regexp_split_to_table(context, '\n') AS line
	WHERE line NOT LIKE 'PL/pgSQL function %' AND line NOT LIKE 'SQL statement %';
	RETURN state || ': ' || message ||
		coalesce(' | ' || nullif(detail, ''), '') ||
		coalesce(' (' || context || ')', '');
END
$$;

-- A fresh extension, so positions start at 1 in each test file.
CREATE FUNCTION public.reset_event_store() RETURNS void
LANGUAGE sql AS $$
	DROP EXTENSION IF EXISTS event_store CASCADE;
	CREATE EXTENSION event_store;
$$;

SELECT extname, extversion FROM pg_extension WHERE extname = 'event_store';
