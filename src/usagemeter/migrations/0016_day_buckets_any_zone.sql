-- Day buckets serve runtime reports without dates in any zone. A report that does not group
-- by date (by-agent, the runtime list) needs the zone only for where it starts: from the
-- runtime's first local midnight on, its day buckets hold exactly the usage after p_since,
-- whatever the viewer's zone. Only the span before that midnight, less than a day, is read
-- from segments (or raw). Before this, such a read in another zone took segments for the
-- whole window: about 28 a day at 10M rows against 8 day buckets, and growing with density.

DROP FUNCTION usage_report_rollup(timestamptz, text, uuid, uuid, boolean, boolean, boolean,
                                  boolean, boolean, boolean);
DROP FUNCTION usage_rows_from(uuid, uuid, timestamptz);

-- The usage rows of a runtime (else a workspace) from p_from until p_to: the raw span of a
-- rollup read, normally empty. A function of its own so that a generic plan of the read
-- counts on few (its ROWS) rather than a third of the scope's history, which turned its
-- hash joins and aggregates into sorts. No parallel workers: the generic plan of this scan
-- expects that third, and starting workers for it cost 30-50 ms.
CREATE FUNCTION usage_rows_between(p_runtime_id uuid, p_workspace_id uuid,
                                   p_from timestamptz, p_to timestamptz)
RETURNS SETOF task_usage
LANGUAGE plpgsql STABLE ROWS 10
SET max_parallel_workers_per_gather = 0 AS $$
BEGIN
    IF p_runtime_id IS NOT NULL THEN
        RETURN QUERY SELECT * FROM task_usage u
                     WHERE u.runtime_id = p_runtime_id
                       AND u.created_at >= p_from AND u.created_at < p_to;
    ELSE
        RETURN QUERY SELECT * FROM task_usage u
                     WHERE u.workspace_id = p_workspace_id
                       AND u.created_at >= p_from AND u.created_at < p_to;
    END IF;
END
$$;

-- Usage since p_since of one runtime, else one workspace, as usage_report_raw has it (no
-- hours), from the rollup. Spans, each read from one source, plus the deltas queued in the
-- spans that buckets serve:
--   [p_since, seg_end)         segments (seg_end: where segments serve p_tz, at most
--                              p_days_from);
--   [seg_end, p_days_from)     raw rows;
--   [p_days_from, infinity)    the runtime's day buckets, from p_days_from's local date in
--                              p_day_zone on (p_days_from: the first instant of that date,
--                              a segment cut; NULL: no day buckets, the raw span is
--                              unbounded). With p_by_date, p_day_zone is p_tz.
-- A tick deletes deltas and adds them to the buckets in one transaction, so at any snapshot
-- every row is counted exactly once. A group is returned when it has rows (a delta counts
-- +1 or -1).
--
-- task_count (with p_count_tasks, which requires p_by_model): every usage row counts as a
-- task (one row per task, provider and model). The rows of (task, model) pairs reported
-- under several providers are corrected per group: -1 each, +1 per distinct task. The
-- pairs are those usage_multi_provider lists plus those among rows not folded yet.
CREATE FUNCTION usage_report_rollup(p_since timestamptz, p_tz text, p_runtime_id uuid,
                                    p_workspace_id uuid,
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
        -- seg_end, raw_end, and the local midnights of the dates from p_since's to
        -- seg_end's where each is the first instant of its date (else NULL: dates are then
        -- converted).
        SELECT e.seg_end, e.raw_end, m.first, m.midnights
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
        -- at: an instant of the row's local date (unless ldate gives it); day: its UTC day;
        -- task_id: set on rows not folded yet (their multi-provider pairs are not listed).
        -- Time bounds are read by scalar subqueries (a join with span would filter a scan
        -- of every row instead of bounding an index scan).
        SELECT u.created_at AS at, NULL::date AS ldate, utc_day(u.created_at) AS day,
               u.workspace_id, u.agent_id, u.task_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS reported, u.cost_usd,
               u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
               1 AS rows
        FROM usage_rows_between(p_runtime_id, p_workspace_id, (SELECT s.seg_end FROM span s),
                                (SELECT s.raw_end FROM span s)) u
        UNION ALL
        SELECT d.created_at, NULL, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT d.created_at, NULL, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT x.seg_start, NULL, utc_day(x.seg_start), x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup x
        WHERE p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT NULL, x.day, x.utc_day, x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_day x
        WHERE p_days_from IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.day >= (p_days_from AT TIME ZONE p_day_zone)::date
        UNION ALL
        SELECT x.seg_start, NULL, utc_day(x.seg_start), x.workspace_id, NULL, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup_ws x
        WHERE p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM src WHERE NOT reported) k
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
        JOIN task_usage u ON u.task_id = m.task_id AND u.model = m.model
        WHERE p_count_tasks AND u.created_at >= p_since
          AND u.runtime_id = coalesce(p_runtime_id, u.runtime_id)
          AND u.workspace_id = coalesce(p_workspace_id, u.workspace_id)
        GROUP BY 1, 2, 3, 4
    ), part AS (
        SELECT CASE WHEN NOT p_by_date THEN NULL
                    WHEN s.ldate IS NOT NULL THEN s.ldate
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
        LEFT JOIN price p ON NOT s.reported AND p.valid @> s.day
            AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
        UNION ALL
        SELECT f.date, f.agent_id, f.provider, f.model, 0, 0, 0, 0, 0, f.tasks, 0, 0
        FROM fix f
    )
    SELECT r.date, NULL::integer, r.agent_id, r.provider, r.model,
           sum(r.input_tokens)::bigint, sum(r.output_tokens)::bigint,
           sum(r.cache_read_tokens)::bigint, sum(r.cache_write_tokens)::bigint,
           CASE WHEN p_count_tasks THEN sum(r.tasks) ELSE 0 END::bigint,
           sum(r.cost), sum(r.unpriced)::bigint
    FROM part r
    GROUP BY r.date, r.agent_id, r.provider, r.model
    HAVING sum(r.rows) <> 0
$$;

-- Usage since p_since: from the rollup when p_rollup, else raw. The rollup path reads a
-- runtime's day buckets from its first local midnight at or after p_since on, where they
-- are built for its zone and that midnight is a segment cut; with dates, only in that zone
-- and from p_since itself. It runs one plan made once per session: a custom plan cost more
-- to make (3-4 ms) than most reads take to run, and the generic one measured as fast. The
-- raw path is planned for its arguments on every call. p_rollup excludes p_by_hour and
-- p_issue_id (segments are not whole hours; an issue is not a key).
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
                   WHERE z.runtime_id = p_runtime_id AND z.ready);
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
