-- Day buckets in every zone a runtime is read in: a runtime's day buckets are cut in its own
-- zone and in each zone its daily report has been asked in (a viewer's), so that report
-- reads one bucket per key and local date in either, instead of every segment of the
-- window in a zone that is not the runtime's (2,447 segments for 90 days of one runtime at
-- 10M usage rows against 1,211 at 1M: it grew with how full each day's cuts were). The
-- server asks for a (runtime, zone) on the first such read; a tick builds its buckets, and
-- reads take segments until then. Each zone adds about one row per key and local date.

SELECT rollup_lock(true);

-- The zones each runtime's day buckets are cut in. ready: the buckets in that zone hold
-- every folded row of the runtime; false until a tick has built them.
ALTER TABLE usage_day_zone
    DROP CONSTRAINT usage_day_zone_pkey,
    ADD PRIMARY KEY (runtime_id, zone);

-- The buckets of a zone not ready are built from scratch (they were cut in the zone before).
DELETE FROM usage_day d USING usage_day_zone z WHERE z.runtime_id = d.runtime_id AND NOT z.ready;
ALTER TABLE usage_day ADD COLUMN zone text;
UPDATE usage_day d SET zone = z.zone FROM usage_day_zone z WHERE z.runtime_id = d.runtime_id;
DELETE FROM usage_day WHERE zone IS NULL;  -- of no runtime: never read
-- INVARIANT (replaces 0014's): for every ready (runtime, zone) of usage_day_zone, the
-- buckets of that zone + the deltas still queued = the sums of task_usage per key and
-- local date in the zone, at every snapshot.
ALTER TABLE usage_day
    ALTER COLUMN zone SET NOT NULL,
    DROP CONSTRAINT usage_day_pkey,
    ADD PRIMARY KEY (runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model,
                     reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows);

-- A new runtime has no usage yet: its buckets are ready. A runtime's new zone waits for a
-- tick to build its buckets; those of its zones before stay (they may be read still).
CREATE OR REPLACE FUNCTION runtime_day_zone()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_day_zone (runtime_id, zone, ready)
    VALUES (NEW.id, NEW.timezone, TG_OP = 'INSERT')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

-- Have a runtime's day buckets cut in a zone too (its daily report is read there). The
-- zone's offsets must be registered as well (register_zone) for the buckets to be read.
CREATE FUNCTION register_runtime_zone(p_runtime_id uuid, p_zone text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_day_zone (runtime_id, zone, ready)
    SELECT r.id, p_zone, false FROM agent_runtime r WHERE r.id = p_runtime_id
    ON CONFLICT DO NOTHING;
$$;

-- 0018's, with the zone in the key.
CREATE OR REPLACE FUNCTION day_add(p_rows usage_day[])
RETURNS void
LANGUAGE sql AS $$
    WITH b AS (
        SELECT runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model,
               reported, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens,
               sum(cache_write_tokens) AS cache_write_tokens,
               CASE WHEN reported THEN sum(cost_usd) ELSE 0 END AS cost_usd, sum(rows) AS rows
        FROM unnest(p_rows)
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ), n AS (
        SELECT b.runtime_id, b.zone, b.day, b.utc_day, b.workspace_id, b.agent_id, b.provider,
               b.model, b.reported,
               coalesce(r.input_tokens, 0) + b.input_tokens AS input_tokens,
               coalesce(r.output_tokens, 0) + b.output_tokens AS output_tokens,
               coalesce(r.cache_read_tokens, 0) + b.cache_read_tokens AS cache_read_tokens,
               coalesce(r.cache_write_tokens, 0) + b.cache_write_tokens AS cache_write_tokens,
               coalesce(r.cost_usd, 0) + b.cost_usd AS cost_usd,
               coalesce(r.rows, 0) + b.rows AS rows
        FROM b
        LEFT JOIN usage_day r
            ON (r.runtime_id, r.zone, r.day, r.utc_day, r.workspace_id, r.agent_id,
                r.provider, r.model, r.reported)
               = (b.runtime_id, b.zone, b.day, b.utc_day, b.workspace_id, b.agent_id,
                  b.provider, b.model, b.reported)
        WHERE r.runtime_id IS NOT NULL
           OR (b.rows, b.input_tokens, b.output_tokens, b.cache_read_tokens,
               b.cache_write_tokens, b.cost_usd) <> (0, 0, 0, 0, 0, 0)
    ), price AS MATERIALIZED (  -- once, not per bucket
        SELECT k.workspace_id, k.provider, k.model, s.valid, s.price
        FROM (SELECT DISTINCT workspace_id, provider, model FROM n WHERE NOT reported) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    )
    INSERT INTO usage_day AS r
    SELECT n.runtime_id, n.day, n.utc_day, n.workspace_id, n.agent_id, n.provider, n.model,
           n.reported, n.input_tokens, n.output_tokens, n.cache_read_tokens,
           n.cache_write_tokens,
           CASE WHEN n.reported THEN n.cost_usd
                ELSE priced_usd(n.input_tokens, n.output_tokens, n.cache_read_tokens,
                                n.cache_write_tokens, p.price) END,
           n.rows, n.zone
    FROM n
    LEFT JOIN price p ON NOT n.reported AND p.valid @> n.utc_day
        AND (p.workspace_id, p.provider, p.model) = (n.workspace_id, n.provider, n.model)
    ON CONFLICT (runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model,
                 reported)
    DO UPDATE SET input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
                  cache_read_tokens = excluded.cache_read_tokens,
                  cache_write_tokens = excluded.cache_write_tokens,
                  cost_usd = excluded.cost_usd, rows = excluded.rows
    WHERE (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
           r.cost_usd, r.rows)
          IS DISTINCT FROM (excluded.input_tokens, excluded.output_tokens,
                            excluded.cache_read_tokens, excluded.cache_write_tokens,
                            excluded.cost_usd, excluded.rows);

    DELETE FROM usage_day
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
$$;

-- 0018's, with the zone in the key.
CREATE OR REPLACE FUNCTION day_reprice(p_models text[], p_from date)
RETURNS void
LANGUAGE sql AS $$
    SELECT day_add(ARRAY(
        SELECT ROW(x.runtime_id, x.day, x.utc_day, x.workspace_id, x.agent_id, x.provider,
                   x.model, false, 0, 0, 0, 0, NULL, 0, x.zone)::usage_day
        FROM usage_day x
        WHERE NOT x.reported AND x.utc_day >= p_from
          AND (x.model = ANY (p_models) OR model_base(x.model) = ANY (p_models))));
$$;

-- Recompute the day buckets of (runtime, UTC day) keys (a NULL day: every day) in each of
-- the runtime's zones (p_zone: in that one only), as task_usage minus the deltas still
-- queued, adding the difference to the buckets as they are. Returns the usage rows read.
-- Callers hold the rollup lock.
DROP FUNCTION day_recompute(uuid[], date[]);
CREATE FUNCTION day_recompute(p_runtime_ids uuid[], p_days date[], p_zone text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_rows usage_day[];
    v_read bigint;
BEGIN
    WITH k AS (
        SELECT k.runtime_id, k.day, z.zone,
               coalesce(utc_start(k.day), '-infinity') AS lo,
               coalesce(utc_start(k.day + 1), 'infinity') AS hi,
               -- a local date is within a day of its UTC date
               coalesce(k.day - 1, '-infinity') AS lo_day,
               coalesce(k.day + 1, 'infinity') AS hi_day
        FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
        JOIN usage_day_zone z ON z.runtime_id = k.runtime_id
            AND z.zone = coalesce(p_zone, z.zone)
    ), delta AS (
        SELECT u.runtime_id, k.zone, (u.created_at AT TIME ZONE k.zone)::date AS day,
               utc_day(u.created_at) AS utc_day, u.workspace_id, u.agent_id, u.provider,
               u.model, u.cost_usd IS NOT NULL AS reported, u.input_tokens, u.output_tokens,
               u.cache_read_tokens, u.cache_write_tokens, u.cost_usd, 1 AS rows, 1 AS read
        FROM k
        JOIN task_usage u ON u.runtime_id = k.runtime_id
            AND u.created_at >= k.lo AND u.created_at < k.hi
        UNION ALL
        SELECT d.runtime_id, k.zone, (d.created_at AT TIME ZONE k.zone)::date,
               utc_day(d.created_at), d.workspace_id, d.agent_id, d.provider, d.model,
               d.cost_usd IS NOT NULL, -d.input_tokens, -d.output_tokens,
               -d.cache_read_tokens, -d.cache_write_tokens, -d.cost_usd, -d.rows, 0
        FROM k
        JOIN usage_dirty d ON d.runtime_id = k.runtime_id
            AND d.created_at >= k.lo AND d.created_at < k.hi
        UNION ALL
        SELECT x.runtime_id, x.zone, x.day, x.utc_day, x.workspace_id, x.agent_id, x.provider,
               x.model, x.reported, -x.input_tokens, -x.output_tokens, -x.cache_read_tokens,
               -x.cache_write_tokens, -x.cost_usd, -x.rows, 0
        FROM k
        JOIN usage_day x ON x.runtime_id = k.runtime_id AND x.zone = k.zone
            AND x.day >= k.lo_day AND x.day <= k.hi_day
            AND x.utc_day = coalesce(k.day, x.utc_day)
    )
    -- Summed per bucket first: the array holds buckets, not rows (an array must stay under
    -- 1 GB).
    SELECT array_agg(ROW(b.runtime_id, b.day, b.utc_day, b.workspace_id, b.agent_id,
                         b.provider, b.model, b.reported, b.input_tokens, b.output_tokens,
                         b.cache_read_tokens, b.cache_write_tokens, b.cost_usd, b.rows,
                         b.zone)::usage_day),
           sum(b.read)
    INTO v_rows, v_read
    FROM (SELECT runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model,
                 reported, sum(input_tokens) AS input_tokens,
                 sum(output_tokens) AS output_tokens,
                 sum(cache_read_tokens) AS cache_read_tokens,
                 sum(cache_write_tokens) AS cache_write_tokens, sum(cost_usd) AS cost_usd,
                 sum(rows) AS rows, sum(read) AS read
          FROM delta
          GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9) b;
    PERFORM day_add(v_rows);
    RETURN coalesce(v_read, 0);
END
$$;

-- 0014's, folding each change into the day buckets of every zone of its runtime.
CREATE OR REPLACE FUNCTION rollup(p_limit integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql
-- Its statements' costs are guesses (the batch size is unknown when planned), and JIT
-- compiling them cost more than running them.
SET jit = off AS $$
DECLARE
    v_rows usage_rollup[];
    v_day_rows usage_day[];
    v_task_ids uuid[];
    v_models text[];
    v_runtime_ids uuid[];
    v_days date[];
    v_zone usage_day_zone;
    v_read bigint := 0;
    v_done integer := 0;
BEGIN
    IF NOT rollup_lock(false) THEN
        RETURN NULL;
    END IF;
    p_limit := least(p_limit, 1000000);

    WITH batch AS (
        -- = ANY(ARRAY(...)): probes by primary key, never a scan of a queue full of rows
        -- deleted by earlier ticks and not yet vacuumed.
        DELETE FROM usage_dirty
        WHERE id = ANY (ARRAY(SELECT id FROM usage_dirty ORDER BY id LIMIT p_limit))
        RETURNING *
    ), cut AS MATERIALIZED (  -- once, not per row
        SELECT usage_cuts() AS s
    ), seg AS (
        SELECT array_agg(ROW(b.runtime_id, seg_start(b.created_at, cut.s), b.agent_id,
                             b.provider, b.model, b.cost_usd IS NOT NULL, b.workspace_id,
                             b.input_tokens, b.output_tokens, b.cache_read_tokens,
                             b.cache_write_tokens, b.cost_usd, b.rows)::usage_rollup) AS rows,
               array_agg(b.task_id) AS task_ids, array_agg(b.model) AS models
        FROM batch b
        CROSS JOIN cut
    ), day AS (  -- a row for each zone of the runtime
        SELECT array_agg(ROW(b.runtime_id, (b.created_at AT TIME ZONE z.zone)::date,
                             utc_day(b.created_at), b.workspace_id, b.agent_id, b.provider,
                             b.model, b.cost_usd IS NOT NULL, b.input_tokens, b.output_tokens,
                             b.cache_read_tokens, b.cache_write_tokens, b.cost_usd, b.rows,
                             z.zone)::usage_day) AS rows
        FROM batch b
        JOIN usage_day_zone z ON z.runtime_id = b.runtime_id
    )
    SELECT seg.rows, day.rows, seg.task_ids, seg.models
    INTO v_rows, v_day_rows, v_task_ids, v_models
    FROM seg, day;
    PERFORM rollup_add(v_rows);
    PERFORM day_add(v_day_rows);
    PERFORM multi_provider_sync(v_task_ids, v_models);
    v_done := coalesce(cardinality(v_rows), 0);

    WITH batch AS (
        DELETE FROM usage_rebuild
        WHERE (runtime_id, day) IN (SELECT runtime_id, day FROM usage_rebuild
                                    LIMIT greatest(1, p_limit / 100))
        RETURNING runtime_id, day
    )
    SELECT array_agg(runtime_id), array_agg(day) INTO v_runtime_ids, v_days FROM batch;
    -- Segments only: day buckets do not depend on the offsets.
    v_done := v_done + coalesce(segment_recompute(v_runtime_ids, v_days), 0);

    IF NOT EXISTS (SELECT FROM usage_rebuild) THEN
        UPDATE usage_offset SET state = 'ready' WHERE state = 'building';
        -- Start a round for new offsets: re-cut every key that has segments (deltas still
        -- queued are cut by every offset when they fold).
        IF EXISTS (SELECT FROM usage_offset WHERE state = 'new') THEN
            UPDATE usage_offset SET state = 'building' WHERE state = 'new';
            INSERT INTO usage_rebuild (runtime_id, day)
            SELECT DISTINCT runtime_id, utc_day(seg_start) FROM usage_rollup;
        END IF;
    END IF;

    -- Build the buckets of zones asked for since (a runtime's new zone, a viewer's), whole
    -- runtimes, until about p_limit usage rows are read.
    FOR v_zone IN SELECT * FROM usage_day_zone WHERE NOT ready ORDER BY runtime_id, zone
                  FOR UPDATE LOOP
        EXIT WHEN v_read >= p_limit;
        v_read := v_read + day_recompute(ARRAY[v_zone.runtime_id], ARRAY[NULL::date],
                                         v_zone.zone);
        UPDATE usage_day_zone SET ready = true
        WHERE (runtime_id, zone) = (v_zone.runtime_id, v_zone.zone);
        v_done := v_done + 1;
    END LOOP;
    -- Zones of deleted runtimes, once their last deltas are folded (their buckets are gone).
    DELETE FROM usage_day_zone z
    WHERE NOT EXISTS (SELECT FROM agent_runtime r WHERE r.id = z.runtime_id)
      AND NOT EXISTS (SELECT FROM usage_dirty d WHERE d.runtime_id = z.runtime_id);

    PERFORM activity_tick(p_limit);

    UPDATE rollup_state SET ticks = ticks + 1, last_tick_at = now(), last_keys = v_done;
    RETURN v_done;
END
$$;

-- 0016's, reading the day buckets in p_tz when the runtime has them, else in any of its
-- zones (a read without dates).
CREATE OR REPLACE FUNCTION usage_report(p_since timestamptz, p_tz text,
                                        p_runtime_id uuid DEFAULT NULL,
                                        p_workspace_id uuid DEFAULT NULL,
                                        p_issue_id uuid DEFAULT NULL,
                                        p_by_date boolean DEFAULT false,
                                        p_by_hour boolean DEFAULT false,
                                        p_by_agent boolean DEFAULT false,
                                        p_by_provider boolean DEFAULT false,
                                        p_by_model boolean DEFAULT false,
                                        p_count_tasks boolean DEFAULT false,
                                        p_rollup boolean DEFAULT false)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_zone      text;
    v_days_from timestamptz;
BEGIN
    IF NOT p_rollup THEN
        RETURN QUERY EXECUTE
            'SELECT * FROM usage_report_raw($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)'
            USING p_since, p_tz, p_runtime_id, p_workspace_id, p_issue_id, p_by_date,
                  p_by_hour, p_by_agent, p_by_provider, p_by_model, p_count_tasks;
        RETURN;
    END IF;
    -- Statements of their own: a function with a subquery in its arguments is not inlined.
    IF p_runtime_id IS NOT NULL AND isfinite(p_since) THEN
        v_zone := (SELECT z.zone FROM usage_day_zone z
                   WHERE z.runtime_id = p_runtime_id AND z.ready
                   ORDER BY z.zone = p_tz DESC, z.zone
                   LIMIT 1);
    END IF;
    IF v_zone = p_tz OR (v_zone IS NOT NULL AND NOT p_by_date) THEN
        v_days_from := (((p_since - interval '1 microsecond') AT TIME ZONE v_zone)::date + 1)
                       ::timestamp AT TIME ZONE v_zone;
        IF NOT ((v_days_from - interval '1 microsecond') AT TIME ZONE v_zone)::date
               < (v_days_from AT TIME ZONE v_zone)::date  -- not the first instant of its date
           OR (v_days_from <> p_since
               AND (p_by_date OR NOT EXISTS (
                   SELECT FROM usage_offset o
                   WHERE o.state = 'ready'
                     AND o.offset_s = extract(epoch FROM (v_days_from AT TIME ZONE v_zone)
                                                         - (v_days_from AT TIME ZONE 'UTC')))))
        THEN
            v_days_from := NULL;
        END IF;
    END IF;
    RETURN QUERY
    SELECT * FROM usage_report_rollup(p_since, p_tz, p_runtime_id, p_workspace_id,
                                      p_by_date, p_by_agent, p_by_provider, p_by_model,
                                      p_count_tasks, v_days_from, v_zone);
END
$$;

-- 0022's, reading the day buckets of p_day_zone only.
CREATE OR REPLACE FUNCTION usage_report_rollup(p_since timestamptz, p_tz text,
                                               p_runtime_id uuid, p_workspace_id uuid,
                                               p_by_date boolean, p_by_agent boolean,
                                               p_by_provider boolean, p_by_model boolean,
                                               p_count_tasks boolean,
                                               p_days_from timestamptz, p_day_zone text)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
LANGUAGE sql STABLE AS $$
    WITH span AS (
        -- seg_end, raw_end, the local midnights of the dates from p_since's to seg_end's
        -- where each is the first instant of its date (else NULL: dates are then converted),
        -- and the instants at which a workspace report reads heads (NULL: it reads
        -- segments), which it may when it has no dates or each of its dates starts at its
        -- midnight: p_since, seg_end and the midnights between, but those at 00:00 UTC
        -- (whose heads are empty).
        SELECT e.seg_end, e.raw_end, m.first, m.midnights,
               CASE WHEN p_runtime_id IS NULL AND e.seg_end > p_since
                         AND (NOT p_by_date OR m.midnights IS NOT NULL)
                    THEN ARRAY(SELECT DISTINCT t.t
                               FROM unnest(ARRAY[p_since, e.seg_end] || m.midnights) t(t)
                               WHERE t.t >= p_since AND t.t <= e.seg_end
                                 AND day_second(t.t) <> 0) END AS heads
        FROM (SELECT least(CASE WHEN p_days_from = p_since THEN p_since
                                ELSE rollup_end(p_tz, p_since, true) END,
                           p_days_from) AS seg_end,
                     coalesce(p_days_from, 'infinity') AS raw_end
              OFFSET 0) e  -- once
        CROSS JOIN LATERAL (
            SELECT min(d.d) AS first,
                   CASE WHEN bool_and((d.m AT TIME ZONE p_tz)::date = d.d
                                      AND ((d.m - interval '1 microsecond') AT TIME ZONE p_tz)::date
                                          = d.d - 1)
                        THEN array_agg(d.m ORDER BY d.d) END AS midnights
            FROM (SELECT CASE WHEN p_by_date AND e.seg_end > p_since
                              THEN (p_since AT TIME ZONE p_tz)::date END AS lo,
                         (e.seg_end AT TIME ZONE p_tz)::date AS hi) b
            CROSS JOIN LATERAL generate_series(0, b.hi - b.lo) g(i)
            CROSS JOIN LATERAL (SELECT b.lo + g.i AS d,
                                       (b.lo + g.i)::timestamp AT TIME ZONE p_tz AS m) d
        ) m
    ), src AS (
        -- Rows and segments, which are priced here. at: an instant of the row's local date;
        -- day: its UTC day; task_id: set on rows not folded yet (their multi-provider pairs
        -- are not listed); priced: cost_usd is the reported cost.
        -- Time bounds are read by scalar subqueries (a join with span would filter a scan
        -- of every row instead of bounding an index scan).
        SELECT u.created_at AS at, utc_day(u.created_at) AS day,
               u.workspace_id, u.agent_id, u.task_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS priced, u.cost_usd,
               u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
               1 AS rows
        FROM usage_rows_between(p_runtime_id, p_workspace_id, (SELECT s.seg_end FROM span s),
                                (SELECT s.raw_end FROM span s)) u
        UNION ALL
        SELECT d.created_at, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT d.created_at, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup x
        WHERE p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, NULL, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup_ws x
        WHERE p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND (SELECT s.heads FROM span s) IS NULL
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        -- With heads: the UTC days from p_since's to seg_end's, each at its last instant
        -- (its local date is the date of its last part),
        SELECT utc_start(x.day + 1) - interval '1 microsecond', x.day, x.workspace_id, NULL,
               NULL, x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_day_ws x
        WHERE p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND (SELECT s.heads FROM span s) IS NOT NULL
          AND x.day >= utc_day(p_since) AND x.day < utc_day((SELECT s.seg_end FROM span s))
        UNION ALL
        -- and the head of each instant's UTC day up to it, moved from the instant's date to
        -- the date before (the part of a day before p_since is subtracted, the part of a
        -- day before seg_end added).
        SELECT v.at, x.day, x.workspace_id, NULL, NULL, x.provider, x.model, x.reported,
               v.sign * x.cost_usd, v.sign * x.input_tokens, v.sign * x.output_tokens,
               v.sign * x.cache_read_tokens, v.sign * x.cache_write_tokens, v.sign * x.rows
        FROM unnest((SELECT s.heads FROM span s)) h(at)
        JOIN usage_head_ws x ON x.workspace_id = p_workspace_id
            AND x.cut = day_second(h.at) AND x.day = utc_day(h.at)
        CROSS JOIN LATERAL (VALUES (h.at - interval '1 microsecond', 1), (h.at, -1)) v(at, sign)
        WHERE p_runtime_id IS NULL
          AND CASE v.sign WHEN 1 THEN h.at > p_since
                          ELSE h.at < (SELECT s.seg_end FROM span s) END
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM src WHERE NOT priced) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    ), fix AS (
        SELECT CASE WHEN p_by_date THEN (u.created_at AT TIME ZONE p_tz)::date END AS date,
               CASE WHEN p_by_agent THEN u.agent_id END AS agent_id,
               CASE WHEN p_by_provider THEN u.provider END AS provider,
               CASE WHEN p_by_model THEN u.model END AS model,
               count(DISTINCT u.task_id) - count(*) AS tasks
        FROM (SELECT m.task_id, m.model FROM usage_multi_provider m
              UNION
              SELECT s.task_id, s.model FROM src s
              WHERE s.task_id IS NOT NULL AND s.rows > 0
                AND EXISTS (SELECT FROM task_usage o
                            WHERE o.task_id = s.task_id AND o.model = s.model
                              AND o.provider <> s.provider)) m
        CROSS JOIN LATERAL (
            SELECT u.created_at, u.agent_id, u.provider, u.model, u.task_id
            FROM task_usage u
            WHERE u.task_id = m.task_id AND u.model = m.model AND u.created_at >= p_since
              AND u.runtime_id = coalesce(p_runtime_id, u.runtime_id)
              AND u.workspace_id = coalesce(p_workspace_id, u.workspace_id)
            OFFSET 0) u  -- by pair, whatever the statistics say of the pairs
        WHERE p_count_tasks
        GROUP BY 1, 2, 3, 4
    ), part AS (
        SELECT CASE WHEN NOT p_by_date THEN NULL
                    WHEN s.at < (SELECT sp.seg_end FROM span sp)
                         AND (SELECT sp.midnights FROM span sp) IS NOT NULL
                    THEN (SELECT sp.first FROM span sp)
                         + width_bucket(s.at, (SELECT sp.midnights FROM span sp)) - 1
                    ELSE (s.at AT TIME ZONE p_tz)::date END AS date,
               CASE WHEN p_by_agent THEN s.agent_id END AS agent_id,
               CASE WHEN p_by_provider THEN s.provider END AS provider,
               CASE WHEN p_by_model THEN s.model END AS model,
               s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_tokens,
               s.rows, s.rows AS tasks,
               usage_cost_units(s.cost_usd, s.input_tokens, s.output_tokens,
                                s.cache_read_tokens, s.cache_write_tokens, p.price) AS cost,
               usage_unpriced_tokens(s.cost_usd, s.input_tokens, s.output_tokens,
                                     s.cache_read_tokens, s.cache_write_tokens,
                                     p.price) AS unpriced
        FROM src s
        LEFT JOIN price p ON NOT s.priced AND p.valid @> s.day
            AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
        UNION ALL
        SELECT f.date, f.agent_id, f.provider, f.model, 0, 0, 0, 0, 0, f.tasks, 0, 0
        FROM fix f
        UNION ALL
        -- Day buckets, priced when folded (a bucket without a price has no cost).
        SELECT CASE WHEN p_by_date THEN x.day END,
               CASE WHEN p_by_agent THEN x.agent_id END,
               CASE WHEN p_by_provider THEN x.provider END,
               CASE WHEN p_by_model THEN x.model END,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows, x.rows,
               usage_cost_units(x.cost_usd, x.input_tokens, x.output_tokens,
                                x.cache_read_tokens, x.cache_write_tokens, NULL),
               usage_unpriced_tokens(x.cost_usd, x.input_tokens, x.output_tokens,
                                     x.cache_read_tokens, x.cache_write_tokens, NULL)
        FROM usage_day x
        WHERE p_days_from IS NOT NULL AND x.runtime_id = p_runtime_id AND x.zone = p_day_zone
          AND x.day >= (p_days_from AT TIME ZONE p_day_zone)::date
    )
    SELECT r.date, NULL::integer, r.agent_id, r.provider, r.model,
           usage_sum(r.input_tokens), usage_sum(r.output_tokens),
           usage_sum(r.cache_read_tokens), usage_sum(r.cache_write_tokens),
           CASE WHEN p_count_tasks THEN usage_sum(r.tasks) ELSE 0 END,
           sum(r.cost), usage_sum(r.unpriced)
    FROM part r
    GROUP BY r.date, r.agent_id, r.provider, r.model
    HAVING sum(r.rows) <> 0
$$;
