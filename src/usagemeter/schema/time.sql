-- Time: UTC days, local days, report windows, and the cuts that split UTC days.
--
-- A report is asked in a zone (IANA name) and counts usage by local date or hour there.
-- The rollup stores sums per *segment*: the part of a UTC day between two consecutive
-- cuts. A cut is the local midnight of a UTC offset in use, in seconds after 00:00 UTC;
-- 00:00 UTC itself is always one. For a zone whose offsets are all cuts, every local day is
-- an exact union of segments, DST days included; the local date of a segment is the local
-- date of its start, and every segment lies in one UTC day, which has one price.

-- The UTC date of an instant: the unit of price validity.
CREATE FUNCTION utc_day(p_at timestamptz)
RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT (p_at AT TIME ZONE 'UTC')::date
$$;

-- The instant a queued change is kept at (capture.sql): its quarter hour (UTC) from 1980 on,
-- else its own instant. Every zone's offset has been a whole number of quarter hours since
-- 1979 (checked every 6 hours from 1980 to 2040 for every zone the server knows), so no
-- quarter hour from then on spans two UTC days, two local dates in any zone, or a cut.
CREATE FUNCTION usage_bin(p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_at >= timestamptz '1980-01-01 00:00Z'
                THEN date_bin('15 minutes', p_at, timestamptz '1980-01-01 00:00Z')
                ELSE p_at END
$$;

-- 00:00 UTC of a date.
CREATE FUNCTION utc_start(p_day date)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_day::timestamp AT TIME ZONE 'UTC'
$$;

-- Local midnight of today minus p_days, as an instant; DST-safe because the local date is
-- shifted first and converted back through the zone.
CREATE FUNCTION usage_since(p_now timestamptz, p_tz text, p_days integer)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT (((p_now AT TIME ZONE p_tz)::date - p_days)::timestamp AT TIME ZONE p_tz)
$$;

-- The UTC offsets (seconds) of a zone at every local midnight and noon of the dates from
-- p_from - 1 to p_to + 1: every offset at which its local date changes in that span.
CREATE FUNCTION zone_offsets(p_zone text, p_from date, p_to date)
RETURNS SETOF integer
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT extract(epoch FROM t.local - (t.local AT TIME ZONE p_zone) AT TIME ZONE 'UTC')::int
    FROM generate_series((p_from - 1)::timestamp, (p_to + 1)::timestamp, interval '12 hours') t(local)
$$;

-- UTC offsets (seconds east) whose local midnights are cuts: those of every zone a runtime
-- or user has, or a report was asked in (capture.sql registers them). 'new' offsets are
-- cut by every fold and recompute; a rebuild round re-cuts the older days ('building'),
-- and then they are 'ready' for reads.
CREATE TABLE usage_offset (
    offset_s integer PRIMARY KEY CHECK (offset_s > -86400 AND offset_s < 86400),
    state    text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'building', 'ready')),
    added_at timestamptz NOT NULL DEFAULT now()
);
-- 00:00 UTC is always a cut: prices are per UTC day, so no segment spans two.
INSERT INTO usage_offset (offset_s, state) VALUES (0, 'ready');

-- The cuts of every UTC day in seconds after 00:00 UTC, ascending (0 first).
CREATE FUNCTION usage_cuts()
RETURNS integer[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(DISTINCT (86400 - offset_s) % 86400 ORDER BY (86400 - offset_s) % 86400)
    FROM usage_offset
$$;

-- The seconds after 00:00 UTC of an instant (a cut, for the instants that are one).
CREATE FUNCTION day_second(p_at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(date_part('epoch', p_at - date_bin('1 day', p_at,
                                                     timestamptz '2000-01-01 00:00Z')))::integer
$$;

-- The start of the segment of an instant: the last cut at or before it, of p_cuts
-- (usage_cuts()). Both functions are made of immutable parts only (date_bin, to_timestamp,
-- an interval's epoch), so that the planner inlines them: a timestamptz plus an interval is
-- only stable, and the SQL function built on it was called per row, 4 µs each, a sixth of
-- a tick (bench/RESULTS.md, 2026-12-03).
CREATE FUNCTION seg_start(p_at timestamptz, p_cuts integer[])
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_bin('1 day', p_at,
                    to_timestamp(946684800 + p_cuts[width_bucket(day_second(p_at), p_cuts)]))
$$;

-- The cuts that have heads: every ready offset's but 0. A cut gets its heads in the
-- statement that makes its offset ready, from the segments, which are then cut at it.
CREATE TABLE usage_head_cut (
    cut integer PRIMARY KEY CHECK (cut > 0 AND cut < 86400)
);

-- Where the rollup may serve a read in p_tz from p_since: up to local midnight after
-- tomorrow, when every offset of p_tz at a date change in that span is ready; else nowhere
-- (returns p_since). Usage at or after the returned instant is read raw. In plpgsql, whose
-- plan of the query is kept for the session (an SQL function that cannot be inlined is
-- planned again at every call).
CREATE FUNCTION rollup_end(p_tz text, p_since timestamptz, p_enabled boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT CASE WHEN p_enabled AND isfinite(p_since) AND NOT EXISTS (
                        SELECT FROM zone_offsets(p_tz, (p_since AT TIME ZONE p_tz)::date, e.d) o
                        WHERE NOT EXISTS (SELECT FROM usage_offset x
                                          WHERE x.offset_s = o AND x.state = 'ready'))
                    THEN greatest(p_since, e.d::timestamp AT TIME ZONE p_tz)
                    ELSE p_since END
        FROM (SELECT (now() AT TIME ZONE p_tz)::date + 2 AS d) e
    );
END
$$;
