--------------------------------------------------------------------------
-- Stream lifecycle: retention, soft deletion, scavenging, erasure
-- (src/lifecycle.c; read_stream and append read the metadata in C)
--------------------------------------------------------------------------

-- One row per stream that has retention limits or was soft-deleted.
-- read_stream hides at once what the limits and a soft delete cover;
-- scavenge removes it.  removed_through keeps the version of the last
-- event the scavenger removed when it was the stream's last one, so that
-- the stream's versions continue.
CREATE TABLE event_store.stream_settings (
	stream		text COLLATE "C" PRIMARY KEY,
	max_count	bigint CHECK (max_count >= 1),
	max_age		interval CHECK (max_age > '0'::interval),
	truncate_before bigint CHECK (truncate_before >= 0),
	deleted_before bigint NOT NULL DEFAULT 0 CHECK (deleted_before >= 0),
	removed_through bigint,
	updated_at	timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE event_store.stream_settings IS
	'Retention limits and soft deletion of streams (set_stream_metadata, delete_stream(soft => true)).';

REVOKE ALL ON event_store.stream_settings FROM PUBLIC;

-- The stream's append lock, for the functions below (src/lifecycle.c).
-- Not granted.
CREATE FUNCTION event_store.lock_stream(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_lock_stream'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Set a stream's retention: NULL clears a limit.  read_stream applies the
-- limits at once; scavenge removes the events they cover.
CREATE FUNCTION event_store.set_stream_metadata(
	stream text,
	max_count bigint DEFAULT NULL,
	max_age interval DEFAULT NULL,
	truncate_before bigint DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.lock_stream(stream);
	IF max_count < 1 THEN
		RAISE EXCEPTION 'max_count must be at least 1: %', max_count
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to keep every event, or delete the stream.';
	END IF;
	IF max_age <= '0'::interval THEN
		RAISE EXCEPTION 'max_age must be positive: %', max_age
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF truncate_before < 0 THEN
		RAISE EXCEPTION 'truncate_before must not be negative: %', truncate_before
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- EV003 for a deleted stream.
	PERFORM event_store.stream_version(stream);
	INSERT INTO event_store.stream_settings AS s (stream, max_count, max_age, truncate_before)
	VALUES (set_stream_metadata.stream, set_stream_metadata.max_count,
			set_stream_metadata.max_age, set_stream_metadata.truncate_before)
	ON CONFLICT ON CONSTRAINT stream_settings_pkey DO UPDATE
	SET max_count = excluded.max_count, max_age = excluded.max_age,
		truncate_before = excluded.truncate_before, updated_at = now();
END
$$;
COMMENT ON FUNCTION event_store.set_stream_metadata(text, bigint, interval, bigint) IS
	'Set the retention of a stream (max_count, max_age, truncate_before); NULL clears a limit.';

-- Internal helper, never granted: the checks of a stream name argument
-- (src/stream.c): NULL, empty and too long names are refused.
CREATE FUNCTION event_store.check_stream(stream text)
RETURNS void
AS 'MODULE_PATHNAME', 'event_store_check_stream'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

-- A stream's retention and soft deletion: one row, NULL limits when none.
CREATE FUNCTION event_store.stream_metadata(stream text)
RETURNS TABLE (max_count bigint, max_age interval, truncate_before bigint,
			   deleted_before bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM event_store.check_stream(stream);
	RETURN QUERY
	SELECT s.max_count, s.max_age, s.truncate_before,
		   nullif(s.deleted_before, 0)
	FROM (SELECT) AS one
	LEFT JOIN event_store.stream_settings AS s ON s.stream = stream_metadata.stream;
END
$$;
COMMENT ON FUNCTION event_store.stream_metadata(text) IS
	'The retention of a stream, and the version below which it was soft-deleted.';

-- Remove the events that retention and soft deletes cover, at most
-- max_events of them (NULL: all), stream by stream.  A tombstone is never
-- removed.  Then zeroes the free space of pages that erasures left and
-- VACUUM cleaned.  Returns how many events it removed.
CREATE FUNCTION event_store.scavenge(max_events bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s event_store.stream_settings;
	p event_store.erased_pages;
	head bigint;
	cut bigint;
	oldest timestamptz;
	n bigint;
	last_removed bigint;
	removed bigint := 0;
BEGIN
	IF max_events < 1 THEN
		RAISE EXCEPTION 'max_events must be at least 1: %', max_events
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass NULL to remove everything there is to remove.';
	END IF;
	FOR s IN SELECT * FROM event_store.stream_settings AS st
			 WHERE st.max_count IS NOT NULL OR st.max_age IS NOT NULL
				OR st.truncate_before IS NOT NULL OR st.deleted_before > 0
			 ORDER BY st.stream
	LOOP
		EXIT WHEN removed >= max_events;
		SELECT e.version INTO head FROM event_store.events AS e
		WHERE e.stream = s.stream ORDER BY e.version DESC LIMIT 1;
		CONTINUE WHEN head IS NULL;
		cut := greatest(coalesce(s.truncate_before, 0), s.deleted_before,
						head - s.max_count + 1);
		oldest := now() - s.max_age;
		WITH gone AS (
			DELETE FROM event_store.events AS e
			WHERE e.position IN (
				SELECT c.position FROM event_store.events AS c
				WHERE c.stream = s.stream
				  AND c.type <> '$stream_deleted'
				  AND (c.version < cut OR c.recorded_at < oldest)
				ORDER BY c.version
				LIMIT max_events - removed)
			RETURNING e.version)
		SELECT count(*), max(gone.version) INTO n, last_removed FROM gone;
		-- The stream's last event is gone: remember its version.
		IF last_removed = head THEN
			UPDATE event_store.stream_settings AS st
			SET removed_through = greatest(st.removed_through, head)
			WHERE st.stream = s.stream;
		END IF;
		removed := removed + n;
	END LOOP;
	-- Wipe what erasures left in pages that VACUUM has cleaned since.
	FOR p IN SELECT * FROM event_store.erased_pages AS ep
			 ORDER BY ep.relname, ep.block
	LOOP
		IF event_store.scrub_page(p.relname, p.block) THEN
			DELETE FROM event_store.erased_pages AS ep
			WHERE ep.relname = p.relname AND ep.block = p.block;
		END IF;
	END LOOP;
	RETURN removed;
END
$$;
COMMENT ON FUNCTION event_store.scavenge(bigint) IS
	'Remove the events that retention and soft deletes cover, at most max_events; returns how many.';

-- Pages of the extension's tables that held row versions erase_stream
-- replaced or deleted.  VACUUM frees those versions but leaves their bytes
-- in the page's free space; scavenge zeroes it (scrub_page) once VACUUM
-- removed them, then forgets the page.  Not saved by pg_dump: the pages of
-- a restored table are new.
CREATE TABLE event_store.erased_pages (
	relname		text COLLATE "C" NOT NULL,
	block		bigint NOT NULL,
	erased_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (relname, block)
);
COMMENT ON TABLE event_store.erased_pages IS
	'Pages whose free space scavenge still has to zero after an erasure.';
REVOKE ALL ON event_store.erased_pages FROM PUBLIC;

-- See src/lifecycle.c.  Not granted.
CREATE FUNCTION event_store.scrub_page(relname text, block bigint)
RETURNS boolean
AS 'MODULE_PATHNAME', 'event_store_scrub_page'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

-- Erase a stream's personal data for good: every event keeps its position,
-- stream, version, type, id and time, but its data becomes JSON null and
-- its metadata NULL; the messages routed from its events are deleted from
-- the outbox, the dead letters and the parked notifications of the relay.
-- VACUUM then frees the old row versions, and scavenge zeroes the bytes
-- they leave in the pages.
-- Returns how many events it erased.
CREATE FUNCTION event_store.erase_stream(stream text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint;
BEGIN
	PERFORM event_store.lock_stream(stream);
	INSERT INTO event_store.erased_pages (relname, block)
	SELECT DISTINCT 'events', (e.ctid::text::point)[0]::bigint
	FROM event_store.events AS e
	WHERE e.stream = erase_stream.stream
	  AND (e.data <> 'null'::jsonb OR e.metadata IS NOT NULL)
	UNION
	SELECT 'outbox', (o.ctid::text::point)[0]::bigint
	FROM event_store.outbox AS o
	WHERE o.key = erase_stream.stream AND o.headers ? 'event_id'
	  AND o.headers ->> 'stream' = erase_stream.stream
	UNION
	SELECT 'outbox_dead_letters', (d.ctid::text::point)[0]::bigint
	FROM event_store.outbox_dead_letters AS d
	WHERE d.key = erase_stream.stream AND d.headers ? 'event_id'
	  AND d.headers ->> 'stream' = erase_stream.stream
	UNION
	SELECT 'relay_parked', (r.ctid::text::point)[0]::bigint
	FROM event_store.relay_parked AS r
	WHERE r.key = erase_stream.stream AND r.headers ? 'event_id'
	  AND r.headers ->> 'stream' = erase_stream.stream
	ON CONFLICT DO NOTHING;
	UPDATE event_store.events AS e
	SET data = 'null'::jsonb, metadata = NULL
	WHERE e.stream = erase_stream.stream
	  AND (e.data <> 'null'::jsonb OR e.metadata IS NOT NULL);
	GET DIAGNOSTICS n = ROW_COUNT;
	-- Routed copies carry the stream in their headers (src/route.c).
	DELETE FROM event_store.outbox AS o
	WHERE o.key = erase_stream.stream
	  AND o.headers ? 'event_id'
	  AND o.headers ->> 'stream' = erase_stream.stream;
	DELETE FROM event_store.outbox_dead_letters AS d
	WHERE d.key = erase_stream.stream
	  AND d.headers ? 'event_id'
	  AND d.headers ->> 'stream' = erase_stream.stream;
	DELETE FROM event_store.relay_parked AS r
	WHERE r.key = erase_stream.stream
	  AND r.headers ? 'event_id'
	  AND r.headers ->> 'stream' = erase_stream.stream;
	RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.erase_stream(text) IS
	'Erase the data and metadata of a stream''s events and their routed outbox messages and dead letters; returns how many events it erased.';
