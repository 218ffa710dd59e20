-- Workspace day heads: a workspace report in any zone reads one UTC day bucket per key and
-- UTC day, plus one head per key at each local midnight, instead of every segment.
--
-- A head is the part of a UTC day before one of its cuts: the sums of the workspace
-- segments of (workspace, UTC day, provider, model, reported) that start before the cut.
-- Every instant at a ready offset's midnight is a cut, so a local date [m, m') is
--     the UTC days from m's to m''s  -  the head of m's day up to m  +  the head of m''s day
--     up to m'
-- for any zone whose offsets are ready, DST days included (a head at cut 0 is empty). Like
-- segments and UTC day buckets, a head lies in one UTC day, so it is priced when read, and
-- prices are linear in the sums, so a head priced and subtracted is exact.
-- Before, a workspace report by date in a zone whose dates are not UTC days read each
-- day's segments (one per cut and key: 2,388 for 30 days of one workspace at 10M usage
-- rows against 1,607 at 1M, so it grew with how full each day's cuts were).

-- No tick may fold between building the heads and the new rollup_add.
SELECT rollup_lock(true);

-- The seconds after 00:00 UTC of an instant (a cut, for the instants that are one).
CREATE FUNCTION day_second(p_at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(extract(epoch FROM p_at - utc_start(utc_day(p_at))))::int
$$;

-- The cuts that have heads: every ready offset's but 0. A cut gets its heads in the
-- statement that makes its offset ready, from the segments, which are then cut at it.
CREATE TABLE usage_head_cut (
    cut integer PRIMARY KEY CHECK (cut > 0 AND cut < 86400)
);

-- INVARIANT: for every cut in usage_head_cut, usage_head_ws = the sums of usage_rollup_ws
-- per (workspace, UTC day of the segment, provider, model, reported) over the segments
-- whose day_second is below the cut. rollup_add, which writes the segments, keeps it.
CREATE TABLE usage_head_ws (
    workspace_id       uuid NOT NULL,
    cut                integer NOT NULL,
    day                date NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, cut, day, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows)
);
CREATE INDEX idx_usage_head_ws_empty ON usage_head_ws (workspace_id) WHERE rows = 0;

-- Build the heads of the ready cuts that have none yet. Offsets become ready in the tick,
-- under the rollup lock, when every segment is cut at them. The tick's statement that makes
-- them ready runs in nearly every tick, mostly changing nothing: the segments are read only
-- when a cut is new (a join with no new cut still scanned every workspace segment).
CREATE FUNCTION build_heads()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_cuts integer[];
BEGIN
    WITH c AS (
        INSERT INTO usage_head_cut (cut)
        SELECT DISTINCT (86400 - offset_s) % 86400 FROM usage_offset
        WHERE state = 'ready' AND offset_s <> 0
        ON CONFLICT DO NOTHING
        RETURNING cut
    )
    SELECT array_agg(cut) INTO v_cuts FROM c;
    IF v_cuts IS NOT NULL THEN
        INSERT INTO usage_head_ws
        SELECT x.workspace_id, c.cut, utc_day(x.seg_start), x.provider, x.model, x.reported,
               sum(x.input_tokens), sum(x.output_tokens), sum(x.cache_read_tokens),
               sum(x.cache_write_tokens), sum(x.cost_usd), sum(x.rows)
        FROM unnest(v_cuts) c(cut)
        JOIN usage_rollup_ws x ON day_second(x.seg_start) < c.cut
        GROUP BY 1, 2, 3, 4, 5, 6;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_usage_offset_heads
AFTER UPDATE OF state ON usage_offset
FOR EACH STATEMENT EXECUTE FUNCTION build_heads();

UPDATE usage_offset SET state = state WHERE state = 'ready';  -- the trigger builds them

CREATE OR REPLACE FUNCTION clear_rollup()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_rollup;
    DELETE FROM usage_rollup_ws;
    DELETE FROM usage_day_ws;
    DELETE FROM usage_head_ws;
    DELETE FROM usage_day;
    UPDATE usage_day_zone SET ready = true WHERE NOT ready;  -- nothing left to rebuild
    DELETE FROM usage_dirty;
    DELETE FROM usage_rebuild;
    RETURN NULL;
END
$$;

-- Add signed rows (each a usage_rollup row: a segment key and sums, negative to subtract)
-- to both segment tables, the workspace UTC day buckets and the heads of every cut after
-- the segment's start, and delete the rows left empty. Callers hold the rollup lock.
CREATE OR REPLACE FUNCTION rollup_add(p_rows usage_rollup[])
RETURNS void
LANGUAGE sql AS $$
    WITH s AS (
        SELECT runtime_id, seg_start, agent_id, provider, model, reported, workspace_id,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens,
               sum(cache_write_tokens) AS cache_write_tokens, sum(cost_usd) AS cost_usd,
               sum(rows) AS rows
        FROM unnest(p_rows)
        GROUP BY 1, 2, 3, 4, 5, 6, 7
        HAVING (sum(rows), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
                sum(cache_write_tokens), coalesce(sum(cost_usd), 0)) <> (0, 0, 0, 0, 0, 0)
    ), seg AS (
        INSERT INTO usage_rollup AS r
        SELECT * FROM s
        ON CONFLICT (runtime_id, seg_start, workspace_id, agent_id, provider, model, reported)
        DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                      output_tokens = r.output_tokens + excluded.output_tokens,
                      cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                      cost_usd = r.cost_usd + excluded.cost_usd,
                      rows = r.rows + excluded.rows
    ), ws AS (
        INSERT INTO usage_rollup_ws AS r
        SELECT workspace_id, seg_start, provider, model, reported, sum(input_tokens),
               sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
               sum(cost_usd), sum(rows)
        FROM s
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (workspace_id, seg_start, provider, model, reported)
        DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                      output_tokens = r.output_tokens + excluded.output_tokens,
                      cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                      cost_usd = r.cost_usd + excluded.cost_usd,
                      rows = r.rows + excluded.rows
    ), day AS (
        INSERT INTO usage_day_ws AS r
        SELECT workspace_id, utc_day(seg_start), provider, model, reported, sum(input_tokens),
               sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
               sum(cost_usd), sum(rows)
        FROM s
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (workspace_id, day, provider, model, reported)
        DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                      output_tokens = r.output_tokens + excluded.output_tokens,
                      cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                      cost_usd = r.cost_usd + excluded.cost_usd,
                      rows = r.rows + excluded.rows
    )
    INSERT INTO usage_head_ws AS r
    SELECT s.workspace_id, c.cut, utc_day(s.seg_start), s.provider, s.model, s.reported,
           sum(s.input_tokens), sum(s.output_tokens), sum(s.cache_read_tokens),
           sum(s.cache_write_tokens), sum(s.cost_usd), sum(s.rows)
    FROM s
    JOIN usage_head_cut c ON day_second(s.seg_start) < c.cut
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (workspace_id, cut, day, provider, model, reported)
    DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                  output_tokens = r.output_tokens + excluded.output_tokens,
                  cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                  cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                  cost_usd = r.cost_usd + excluded.cost_usd,
                  rows = r.rows + excluded.rows;

    -- Only rows that are all zero: while a new offset is being built, a row folded before it
    -- was cut may be subtracted from a later segment, which then holds no rows but not
    -- nothing until the re-cut (reads stay exact: both segments lie in one local day of
    -- every ready offset, in one UTC day, and on one side of every cut with heads).
    DELETE FROM usage_rollup
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
    DELETE FROM usage_rollup_ws
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
    DELETE FROM usage_day_ws
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
    DELETE FROM usage_head_ws
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
$$;

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
        WHERE p_days_from IS NOT NULL AND x.runtime_id = p_runtime_id
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
