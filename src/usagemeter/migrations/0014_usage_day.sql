-- Day buckets in each runtime's own zone: a runtime report in that zone (the usual one:
-- the runtime list, a user next to their machine) reads one row per local day and key
-- instead of the day's segments (about ten per key and day with ten offsets cut). And
-- rollup reads plan once per session instead of once per call.
--
-- A bucket is the part of one local date in one UTC day (prices are per UTC day), so a
-- local date is one or two buckets per key: the daily rhythm is in the runtime's zone, and
-- its nights (where UTC midnight falls for most zones) are quiet.

-- The zone each runtime's day buckets are cut in. ready: the buckets hold every folded
-- row of the runtime by that zone; false from a zone change until a tick has rebuilt them
-- (reads in the meantime use the segments).
CREATE TABLE usage_day_zone (
    runtime_id uuid PRIMARY KEY,
    zone       text NOT NULL,
    ready      boolean NOT NULL
);

-- INVARIANT: for a runtime whose zone is ready, usage_day + the deltas still queued = the
-- sums of task_usage per key, at every snapshot (the same folds as the segments).
CREATE TABLE usage_day (
    runtime_id         uuid NOT NULL,
    day                date NOT NULL,   -- local date in the runtime's usage_day_zone
    utc_day            date NOT NULL,
    workspace_id       uuid NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (runtime_id, day, utc_day, workspace_id, agent_id, provider, model, reported)
);
CREATE INDEX idx_usage_day_empty ON usage_day (runtime_id) WHERE rows = 0;

-- A new runtime has no usage yet: its buckets are ready. A zone change makes them wait for
-- a rebuild.
CREATE FUNCTION runtime_day_zone()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_day_zone AS z (runtime_id, zone, ready)
    VALUES (NEW.id, NEW.timezone, TG_OP = 'INSERT')
    ON CONFLICT (runtime_id) DO UPDATE SET zone = excluded.zone, ready = false
    WHERE z.zone <> excluded.zone;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_runtime_day_zone
AFTER INSERT OR UPDATE OF timezone ON agent_runtime
FOR EACH ROW EXECUTE FUNCTION runtime_day_zone();

INSERT INTO usage_day_zone (runtime_id, zone, ready)
SELECT id, timezone, false FROM agent_runtime;

CREATE OR REPLACE FUNCTION clear_rollup()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_rollup;
    DELETE FROM usage_rollup_ws;
    DELETE FROM usage_day;
    UPDATE usage_day_zone SET ready = true WHERE NOT ready;  -- nothing left to rebuild
    DELETE FROM usage_dirty;
    DELETE FROM usage_rebuild;
    RETURN NULL;
END
$$;

-- Add signed rows (negative to subtract) to the day buckets and delete the buckets left all
-- zero (only all zero: while a zone is rebuilt, a bucket may hold no rows but not nothing).
-- Callers hold the rollup lock.
CREATE FUNCTION day_add(p_rows usage_day[])
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_day AS r
    SELECT runtime_id, day, utc_day, workspace_id, agent_id, provider, model, reported,
           sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
           sum(cache_write_tokens), sum(cost_usd), sum(rows)
    FROM unnest(p_rows)
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    HAVING (sum(rows), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
            sum(cache_write_tokens), coalesce(sum(cost_usd), 0)) <> (0, 0, 0, 0, 0, 0)
    ON CONFLICT (runtime_id, day, utc_day, workspace_id, agent_id, provider, model, reported)
    DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                  output_tokens = r.output_tokens + excluded.output_tokens,
                  cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                  cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                  cost_usd = r.cost_usd + excluded.cost_usd,
                  rows = r.rows + excluded.rows;

    DELETE FROM usage_day
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
$$;

-- Recompute the day buckets of (runtime, UTC day) keys (a NULL day: every day) in each
-- runtime's zone, as task_usage minus the deltas still queued, adding the difference to the
-- buckets as they are (buckets cut by an older zone are subtracted whole). Returns the
-- usage rows read. Callers hold the rollup lock.
CREATE FUNCTION day_recompute(p_runtime_ids uuid[], p_days date[])
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
    ), delta AS (
        SELECT u.runtime_id, (u.created_at AT TIME ZONE k.zone)::date AS day,
               utc_day(u.created_at) AS utc_day, u.workspace_id, u.agent_id, u.provider,
               u.model, u.cost_usd IS NOT NULL AS reported, u.input_tokens, u.output_tokens,
               u.cache_read_tokens, u.cache_write_tokens, u.cost_usd, 1 AS rows, 1 AS read
        FROM k
        JOIN task_usage u ON u.runtime_id = k.runtime_id
            AND u.created_at >= k.lo AND u.created_at < k.hi
        UNION ALL
        SELECT d.runtime_id, (d.created_at AT TIME ZONE k.zone)::date, utc_day(d.created_at),
               d.workspace_id, d.agent_id, d.provider, d.model, d.cost_usd IS NOT NULL,
               -d.input_tokens, -d.output_tokens, -d.cache_read_tokens, -d.cache_write_tokens,
               -d.cost_usd, -d.rows, 0
        FROM k
        JOIN usage_dirty d ON d.runtime_id = k.runtime_id
            AND d.created_at >= k.lo AND d.created_at < k.hi
        UNION ALL
        SELECT x.runtime_id, x.day, x.utc_day, x.workspace_id, x.agent_id, x.provider,
               x.model, x.reported, -x.input_tokens, -x.output_tokens, -x.cache_read_tokens,
               -x.cache_write_tokens, -x.cost_usd, -x.rows, 0
        FROM k
        JOIN usage_day x ON x.runtime_id = k.runtime_id
            AND x.day >= k.lo_day AND x.day <= k.hi_day
            AND x.utc_day = coalesce(k.day, x.utc_day)
    )
    -- Summed per bucket first: the array holds buckets, not rows (an array must stay under
    -- 1 GB).
    SELECT array_agg(ROW(b.runtime_id, b.day, b.utc_day, b.workspace_id, b.agent_id,
                         b.provider, b.model, b.reported, b.input_tokens, b.output_tokens,
                         b.cache_read_tokens, b.cache_write_tokens, b.cost_usd,
                         b.rows)::usage_day),
           sum(b.read)
    INTO v_rows, v_read
    FROM (SELECT runtime_id, day, utc_day, workspace_id, agent_id, provider, model, reported,
                 sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
                 sum(cache_read_tokens) AS cache_read_tokens,
                 sum(cache_write_tokens) AS cache_write_tokens, sum(cost_usd) AS cost_usd,
                 sum(rows) AS rows, sum(read) AS read
          FROM delta
          GROUP BY 1, 2, 3, 4, 5, 6, 7, 8) b;
    PERFORM day_add(v_rows);
    RETURN coalesce(v_read, 0);
END
$$;

-- A backfill recomputes both kinds of buckets of its keys (a re-cut for new offsets, only
-- the segments).
ALTER FUNCTION rollup_recompute(uuid[], date[]) RENAME TO segment_recompute;

-- The segments' recompute of 0013, summed per segment before it is handed on as an array.
CREATE OR REPLACE FUNCTION segment_recompute(p_runtime_ids uuid[], p_days date[])
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    -- Summed per segment first: the array holds segments, not rows (an array must stay
    -- under 1 GB).
    PERFORM rollup_add(ARRAY(
        WITH k AS (
            SELECT k.runtime_id, utc_start(k.day) AS lo, utc_start(k.day + 1) AS hi
            FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
        ), cut AS MATERIALIZED (  -- once, not per row
            SELECT usage_cuts() AS s
        ), delta AS (
            SELECT ROW(u.runtime_id, seg_start(u.created_at, cut.s), u.agent_id, u.provider,
                       u.model, u.cost_usd IS NOT NULL, u.workspace_id, u.input_tokens,
                       u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cost_usd,
                       1)::usage_rollup AS r
            FROM k
            JOIN task_usage u ON u.runtime_id = k.runtime_id
                AND u.created_at >= k.lo AND u.created_at < k.hi
            CROSS JOIN cut
            UNION ALL
            SELECT ROW(d.runtime_id, seg_start(d.created_at, cut.s), d.agent_id, d.provider,
                       d.model, d.cost_usd IS NOT NULL, d.workspace_id, -d.input_tokens,
                       -d.output_tokens, -d.cache_read_tokens, -d.cache_write_tokens,
                       -d.cost_usd, -d.rows)::usage_rollup
            FROM k
            JOIN usage_dirty d ON d.runtime_id = k.runtime_id
                AND d.created_at >= k.lo AND d.created_at < k.hi
            CROSS JOIN cut
            UNION ALL
            SELECT ROW(r.runtime_id, r.seg_start, r.agent_id, r.provider, r.model, r.reported,
                       r.workspace_id, -r.input_tokens, -r.output_tokens, -r.cache_read_tokens,
                       -r.cache_write_tokens, -r.cost_usd, -r.rows)::usage_rollup
            FROM k
            JOIN usage_rollup r ON r.runtime_id = k.runtime_id
                AND r.seg_start >= k.lo AND r.seg_start < k.hi
        )
        SELECT ROW((r).runtime_id, (r).seg_start, (r).agent_id, (r).provider, (r).model,
                   (r).reported, (r).workspace_id, sum((r).input_tokens),
                   sum((r).output_tokens), sum((r).cache_read_tokens),
                   sum((r).cache_write_tokens), sum((r).cost_usd),
                   sum((r).rows))::usage_rollup
        FROM delta
        GROUP BY (r).runtime_id, (r).seg_start, (r).agent_id, (r).provider, (r).model,
                 (r).reported, (r).workspace_id
    ));

    PERFORM multi_provider_sync(array_agg(u.task_id), array_agg(u.model))
    FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
    JOIN task_usage u ON u.runtime_id = k.runtime_id
        AND u.created_at >= utc_start(k.day) AND u.created_at < utc_start(k.day + 1);

    RETURN cardinality(p_runtime_ids);
END
$$;

CREATE FUNCTION rollup_recompute(p_runtime_ids uuid[], p_days date[])
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM day_recompute(p_runtime_ids, p_days);
    RETURN segment_recompute(p_runtime_ids, p_days);
END
$$;

-- One tick: fold up to p_limit queued deltas (oldest first) into the segments and the day
-- buckets, re-cut up to p_limit / 100 rebuild keys (a key is a runtime's UTC day: many
-- rows), advance offset states, and rebuild the day
-- buckets of runtimes whose zone changed (whole runtimes, until about p_limit usage rows
-- are read). Returns the deltas folded plus the keys re-cut plus the runtimes rebuilt, or
-- NULL when another tick holds the lock. At most a million deltas per tick: a batch is
-- held in arrays, and an array must stay under 1 GB.
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
    )
    SELECT array_agg(ROW(b.runtime_id, seg_start(b.created_at, cut.s), b.agent_id, b.provider,
                         b.model, b.cost_usd IS NOT NULL, b.workspace_id, b.input_tokens,
                         b.output_tokens, b.cache_read_tokens, b.cache_write_tokens,
                         b.cost_usd, b.rows)::usage_rollup),
           array_agg(ROW(b.runtime_id, (b.created_at AT TIME ZONE z.zone)::date,
                         utc_day(b.created_at), b.workspace_id, b.agent_id, b.provider,
                         b.model, b.cost_usd IS NOT NULL, b.input_tokens, b.output_tokens,
                         b.cache_read_tokens, b.cache_write_tokens, b.cost_usd,
                         b.rows)::usage_day) FILTER (WHERE z.zone IS NOT NULL),
           array_agg(b.task_id), array_agg(b.model)
    INTO v_rows, v_day_rows, v_task_ids, v_models
    FROM batch b
    CROSS JOIN cut
    LEFT JOIN usage_day_zone z ON z.runtime_id = b.runtime_id;
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

    -- Locked: a zone change waits until these buckets are committed, then marks them for
    -- another rebuild.
    FOR v_zone IN SELECT * FROM usage_day_zone WHERE NOT ready ORDER BY runtime_id
                  FOR UPDATE LOOP
        EXIT WHEN v_read >= p_limit;
        v_read := v_read + day_recompute(ARRAY[v_zone.runtime_id], ARRAY[NULL::date]);
        UPDATE usage_day_zone SET ready = true WHERE runtime_id = v_zone.runtime_id;
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

-- Reports: a runtime report in the runtime's ready zone reads its day buckets; every other
-- report reads segments and raw rows as before.
DROP FUNCTION usage_report(timestamptz, text, uuid, uuid, uuid,
                           boolean, boolean, boolean, boolean, boolean, boolean, boolean);

-- Usage since p_since of one runtime, else one workspace, else one issue, grouped by the
-- chosen keys (a key not chosen is NULL): local date and hour in p_tz, agent, provider,
-- model.
--
-- Sources. Raw path (p_rollup false): every task_usage row in the window. Rollup path:
-- segments from p_since to rollup_end() plus the deltas queued in that span, and the raw
-- rows from rollup_end() on; with p_day_buckets (a runtime in its ready zone, p_since the
-- first instant of its local date), the runtime's day buckets from p_since's local date on
-- plus every delta queued from p_since on. A tick deletes deltas and adds them to the
-- buckets in one transaction, so at any snapshot every row is counted exactly once. p_rollup excludes
-- p_by_hour and p_issue_id (segments are not whole hours; an issue is not a key of them)
-- and, with p_count_tasks, requires p_by_model.
--
-- Pricing. Sources are summed into cells of one group, workspace, provider, model, UTC day
-- and "has a reported cost"; each cell is priced with the price in force on its UTC day in
-- its workspace, looked up once per (workspace, provider, model). Money is exact 1e-10 USD.
--
-- A group is returned when it has rows: k counts them (a delta counts +1 or -1).
-- task_count (with p_count_tasks, else 0) counts distinct tasks per group. A source row
-- carries n (tasks counted as rows) and task_id (counted once per group). Raw path: n = 0,
-- task_id set. Rollup path: every usage row counts as a task (one row per task, provider
-- and model; a delta counts +1 or -1), and the rows of multi-provider (task, model) pairs
-- are fixed up: -1 each, then +1 per task and group.
CREATE FUNCTION usage_report_query(p_since timestamptz, p_tz text,
                                   p_runtime_id uuid DEFAULT NULL,
                                   p_workspace_id uuid DEFAULT NULL,
                                   p_issue_id uuid DEFAULT NULL,
                                   p_by_date boolean DEFAULT false,
                                   p_by_hour boolean DEFAULT false,
                                   p_by_agent boolean DEFAULT false,
                                   p_by_provider boolean DEFAULT false,
                                   p_by_model boolean DEFAULT false,
                                   p_count_tasks boolean DEFAULT false,
                                   p_rollup boolean DEFAULT false,
                                   p_day_buckets boolean DEFAULT false)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
LANGUAGE sql STABLE AS $$
    WITH span AS (
        -- seg_end, and the local midnights of the dates from p_since's to seg_end's where
        -- each is the first instant of its date (else NULL: dates are then converted).
        SELECT e.seg_end, m.first, m.midnights
        FROM (SELECT CASE WHEN p_day_buckets THEN 'infinity'
                          ELSE rollup_end(p_tz, p_since, p_rollup) END AS seg_end
              OFFSET 0) e  -- once
        CROSS JOIN LATERAL (
            SELECT min(d.d) AS first,
                   CASE WHEN bool_and((d.m AT TIME ZONE p_tz)::date = d.d
                                      AND ((d.m - interval '1 microsecond') AT TIME ZONE p_tz)::date
                                          = d.d - 1)
                        THEN array_agg(d.m ORDER BY d.d) END AS midnights
            FROM (SELECT CASE WHEN p_by_date AND e.seg_end > p_since AND NOT p_day_buckets
                              THEN (p_since AT TIME ZONE p_tz)::date END AS lo,
                         (e.seg_end AT TIME ZONE p_tz)::date AS hi) b
            CROSS JOIN LATERAL generate_series(0, b.hi - b.lo) g(i)
            CROSS JOIN LATERAL (SELECT b.lo + g.i AS d,
                                       (b.lo + g.i)::timestamp AT TIME ZONE p_tz AS m) d
        ) m
    ), raw AS (
        -- One branch per kind of scope, so that the scope is an index condition even when
        -- it comes from an outer query (GET /api/runtimes), and so is the time: span is
        -- read by scalar subqueries (a join with it would filter a scan of every row).
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NOT NULL AND u.runtime_id = p_runtime_id
          AND u.created_at >= greatest(p_since, (SELECT s.seg_end FROM span s))
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND u.workspace_id = p_workspace_id
          AND u.created_at >= greatest(p_since, (SELECT s.seg_end FROM span s))
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND p_workspace_id IS NULL
          AND u.task_id IN (SELECT t.id FROM agent_task_queue t WHERE t.issue_id = p_issue_id)
          AND u.created_at >= p_since
    ), queued AS (
        SELECT d.* FROM usage_dirty d
        WHERE p_rollup AND p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
          AND d.created_at >= p_since AND d.created_at < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT d.* FROM usage_dirty d
        WHERE p_rollup AND p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
          AND d.created_at >= p_since AND d.created_at < (SELECT s.seg_end FROM span s)
    ), multi AS (
        SELECT m.task_id, m.model FROM usage_multi_provider m WHERE p_rollup AND p_count_tasks
        UNION
        SELECT r.task_id, r.model
        FROM (SELECT task_id, provider, model FROM raw
              UNION ALL
              SELECT task_id, provider, model FROM queued WHERE rows > 0) r
        WHERE p_rollup AND p_count_tasks
          AND EXISTS (SELECT FROM task_usage o
                      WHERE o.task_id = r.task_id AND o.model = r.model
                        AND o.provider <> r.provider)
    ), source AS (
        SELECT r.created_at AS at, NULL::date AS ldate, r.workspace_id, r.agent_id, r.provider, r.model,
               r.cost_usd IS NOT NULL AS reported, r.cost_usd,
               r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
               1 AS k,
               CASE WHEN p_rollup AND p_count_tasks THEN 1 ELSE 0 END AS n,
               CASE WHEN p_count_tasks AND NOT p_rollup THEN r.task_id END AS task_id
        FROM raw r
        UNION ALL
        SELECT d.created_at, NULL, d.workspace_id, d.agent_id, d.provider, d.model,
               d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows, CASE WHEN p_count_tasks THEN d.rows ELSE 0 END, NULL
        FROM queued d
        UNION ALL
        SELECT x.seg_start, NULL, x.workspace_id, x.agent_id, x.provider, x.model,
               x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows, CASE WHEN p_count_tasks THEN x.rows ELSE 0 END, NULL
        FROM usage_rollup x
        WHERE p_rollup AND NOT p_day_buckets AND p_runtime_id IS NOT NULL
          AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT utc_start(x.utc_day), x.day, x.workspace_id, x.agent_id, x.provider, x.model,
               x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows, CASE WHEN p_count_tasks THEN x.rows ELSE 0 END, NULL
        FROM usage_day x
        WHERE p_day_buckets AND x.runtime_id = p_runtime_id
          AND x.day >= (p_since AT TIME ZONE p_tz)::date
        UNION ALL
        SELECT x.seg_start, NULL, x.workspace_id, NULL, x.provider, x.model,
               x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows, CASE WHEN p_count_tasks THEN x.rows ELSE 0 END, NULL
        FROM usage_rollup_ws x
        WHERE p_rollup AND p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT u.created_at, NULL, u.workspace_id, u.agent_id, u.provider, u.model,
               true, 0, 0, 0, 0, 0, 0, -1, u.task_id
        FROM multi m
        JOIN task_usage u ON u.task_id = m.task_id AND u.model = m.model
        WHERE u.created_at >= p_since
          AND u.runtime_id = coalesce(p_runtime_id, u.runtime_id)
          AND u.workspace_id = coalesce(p_workspace_id, u.workspace_id)
    ), keyed AS (
        SELECT s.*, utc_day(s.at) AS day,
               CASE WHEN NOT p_by_date THEN NULL
                    WHEN s.ldate IS NOT NULL THEN s.ldate
                    WHEN s.at < sp.seg_end AND sp.midnights IS NOT NULL
                    THEN sp.first + width_bucket(s.at, sp.midnights) - 1
                    ELSE (s.at AT TIME ZONE p_tz)::date END AS g_date,
               CASE WHEN p_by_hour THEN extract(hour FROM s.at AT TIME ZONE p_tz)::int
               END AS g_hour,
               CASE WHEN p_by_agent THEN s.agent_id END AS g_agent_id,
               CASE WHEN p_by_provider THEN s.provider END AS g_provider,
               CASE WHEN p_by_model THEN s.model END AS g_model
        FROM source s, span sp
    ), cell AS (
        SELECT r.g_date, r.g_hour, r.g_agent_id, r.g_provider, r.g_model,
               r.workspace_id, r.provider, r.model, r.day, r.reported,
               sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
               sum(r.cache_read_tokens) AS cache_read_tokens,
               sum(r.cache_write_tokens) AS cache_write_tokens,
               sum(r.cost_usd) AS cost_usd, sum(r.k) AS rows,
               sum(r.n) + count(*) FILTER (WHERE r.first) AS tasks
        FROM (
            SELECT k.*, false AS first FROM keyed k WHERE k.task_id IS NULL
            UNION ALL
            SELECT k.*, row_number() OVER (PARTITION BY k.g_date, k.g_hour, k.g_agent_id,
                                           k.g_provider, k.g_model, k.task_id) = 1
            FROM keyed k WHERE k.task_id IS NOT NULL
        ) r
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM cell) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    )
    SELECT c.g_date, c.g_hour, c.g_agent_id, c.g_provider, c.g_model,
           sum(c.input_tokens)::bigint, sum(c.output_tokens)::bigint,
           sum(c.cache_read_tokens)::bigint, sum(c.cache_write_tokens)::bigint,
           sum(c.tasks)::bigint,
           sum(usage_cost_units(c.cost_usd, c.input_tokens, c.output_tokens,
                                c.cache_read_tokens, c.cache_write_tokens, p.price)),
           sum(usage_unpriced_tokens(c.cost_usd, c.input_tokens, c.output_tokens,
                                     c.cache_read_tokens, c.cache_write_tokens, p.price))::bigint
    FROM cell c
    LEFT JOIN price p ON NOT c.reported AND p.valid @> c.day
        AND (p.workspace_id, p.provider, p.model) = (c.workspace_id, c.provider, c.model)
    GROUP BY c.g_date, c.g_hour, c.g_agent_id, c.g_provider, c.g_model
    HAVING sum(c.rows) <> 0
$$;

-- Usage since p_since as usage_report_query has it. The rollup path reads the runtime's day
-- buckets where they serve, and runs one plan made once per session: a custom plan cost
-- more to make (3-4 ms) than most reads take to run, and the generic one measured as fast.
-- The raw path is planned for its arguments on every call, as before.
CREATE FUNCTION usage_report(p_since timestamptz, p_tz text,
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
    v_day_buckets boolean;
BEGIN
    IF NOT p_rollup THEN
        RETURN QUERY EXECUTE
            'SELECT * FROM usage_report_query($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)'
            USING p_since, p_tz, p_runtime_id, p_workspace_id, p_issue_id, p_by_date,
                  p_by_hour, p_by_agent, p_by_provider, p_by_model, p_count_tasks;
        RETURN;
    END IF;
    -- A statement of its own: a function with a subquery in its arguments is not inlined.
    v_day_buckets := p_runtime_id IS NOT NULL AND isfinite(p_since)
        AND ((p_since - interval '1 microsecond') AT TIME ZONE p_tz)::date
            < (p_since AT TIME ZONE p_tz)::date
        AND EXISTS (SELECT FROM usage_day_zone z
                    WHERE z.runtime_id = p_runtime_id AND z.zone = p_tz AND z.ready);
    RETURN QUERY
    SELECT * FROM usage_report_query(p_since, p_tz, p_runtime_id, p_workspace_id, p_issue_id,
                                     p_by_date, p_by_hour, p_by_agent, p_by_provider,
                                     p_by_model, p_count_tasks, true, v_day_buckets);
END
$$;
