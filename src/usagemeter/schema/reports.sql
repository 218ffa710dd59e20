-- Reports: usage since an instant, grouped as a report asks, from the rollup or raw.
--
-- usage_report is the one entry point of every usage report (usage.sql, runtimes.sql): the
-- raw path scans task_usage through its (scope, created_at) indexes; the rollup path reads
-- buckets (buckets.sql) and adds the deltas still queued, and answers the same rows at
-- every instant (tests/test_schema_reports.py compares the two). Costs are priced per UTC day
-- (pricing.sql) and summed exactly in 1e-10 USD units.
-- INVARIANT: every token sum is numeric (exact past 2^63), so no report fails or rounds
-- whatever the rows hold.

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

-- A row of a usage report, whichever function reads it: its keys (NULL where not chosen),
-- token sums, distinct tasks, cost in 1e-10 USD, tokens no price covered, the reported
-- costs alone, and the tokens of rows without a reported cost.
CREATE TYPE usage_report_row AS (
    date date, hour integer, agent_id uuid, provider text, model text,
    input_tokens numeric, output_tokens numeric,
    cache_read_tokens numeric, cache_write_tokens numeric,
    task_count bigint, cost_units numeric, unpriced_tokens numeric,
    reported_units numeric, uncosted_input_tokens numeric,
    uncosted_output_tokens numeric, uncosted_cache_read_tokens numeric,
    uncosted_cache_write_tokens numeric
);

-- Usage since p_since: from the rollup when p_rollup (and p_since starts a quarter hour, as
-- every local midnight since 1980 does: see usage_bin), else raw (usage_report_raw). The
-- rollup path reads a runtime's day buckets from its first local midnight at or after
-- p_since on, in p_tz when the runtime has ready buckets there, else (a read without dates)
-- in any of its ready zones, where that midnight is a segment cut. It runs one plan made
-- once per session: a custom plan cost more to make (3-4 ms) than most reads take to run,
-- and the generic one measured as fast. The raw path is planned for its arguments on every
-- call. Segments are not whole hours, so a runtime's report by hour and model reads its rows
-- on the rollup path too, in usage_by_hour; an issue is not a key of the rollup, so an
-- issue's report always reads raw.
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
                                        p_rollup boolean DEFAULT false,
                                        p_project_id uuid DEFAULT NULL)
RETURNS SETOF usage_report_row
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_zone      text;
    v_days_from timestamptz;
BEGIN
    IF p_rollup AND p_by_hour AND p_by_model AND p_count_tasks AND p_runtime_id IS NOT NULL
       AND NOT (p_by_date OR p_by_agent OR p_by_provider) THEN
        RETURN QUERY SELECT * FROM usage_by_hour(p_since, p_tz, p_runtime_id);
        RETURN;
    END IF;
    -- The rollup path reads queued deltas from p_since on, which it must be a bin start for.
    IF NOT p_rollup OR isfinite(p_since) AND usage_bin(p_since) <> p_since THEN
        RETURN QUERY EXECUTE
            'SELECT * FROM usage_report_raw($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)'
            USING p_since, p_tz, p_runtime_id, p_workspace_id, p_issue_id, p_by_date,
                  p_by_hour, p_by_agent, p_by_provider, p_by_model, p_count_tasks,
                  p_project_id;
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

-- Usage since p_since of one runtime, else one workspace, else one issue, else one project,
-- read from task_usage, grouped by the chosen keys (a key not chosen is NULL): local date
-- and hour in p_tz, agent, provider, model. task_count (with p_count_tasks, else 0) counts
-- distinct tasks per group. A row without a reported cost is priced with the price in force on its
-- UTC day in its workspace. Money is exact 1e-10 USD.
CREATE FUNCTION usage_report_raw(p_since timestamptz, p_tz text, p_runtime_id uuid,
                                 p_workspace_id uuid, p_issue_id uuid,
                                 p_by_date boolean, p_by_hour boolean, p_by_agent boolean,
                                 p_by_provider boolean, p_by_model boolean,
                                 p_count_tasks boolean, p_project_id uuid DEFAULT NULL)
RETURNS SETOF usage_report_row
LANGUAGE sql STABLE AS $$
    WITH src AS (
        -- One branch per kind of scope, so that the scope is an index condition even when
        -- it comes from an outer query (GET /api/runtimes).
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NOT NULL AND u.runtime_id = p_runtime_id
          AND u.created_at >= p_since
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND u.workspace_id = p_workspace_id
          AND u.created_at >= p_since
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND p_workspace_id IS NULL
          AND u.task_id IN (SELECT t.id FROM agent_task_queue t WHERE t.issue_id = p_issue_id)
          AND u.created_at >= p_since
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND p_workspace_id IS NULL AND p_issue_id IS NULL
          AND u.task_id IN (SELECT t.id FROM agent_task_queue t
                            JOIN issue i ON i.id = t.issue_id
                            WHERE i.project_id = p_project_id)
          AND u.created_at >= p_since
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM src WHERE cost_usd IS NULL) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    )
    SELECT CASE WHEN p_by_date THEN (s.created_at AT TIME ZONE p_tz)::date END,
           CASE WHEN p_by_hour THEN extract(hour FROM s.created_at AT TIME ZONE p_tz)::int END,
           CASE WHEN p_by_agent THEN s.agent_id END,
           CASE WHEN p_by_provider THEN s.provider END,
           CASE WHEN p_by_model THEN s.model END,
           sum(s.input_tokens), sum(s.output_tokens),
           sum(s.cache_read_tokens), sum(s.cache_write_tokens),
           CASE WHEN p_count_tasks THEN count(DISTINCT s.task_id) ELSE 0 END,
           sum(usage_cost_units(s.cost_usd, s.input_tokens, s.output_tokens,
                                s.cache_read_tokens, s.cache_write_tokens, p.price)),
           sum(usage_unpriced_tokens(s.cost_usd, s.input_tokens, s.output_tokens,
                                     s.cache_read_tokens, s.cache_write_tokens, p.price)),
           round(coalesce(sum(s.cost_usd), 0) * 10000000000),
           coalesce(sum(s.input_tokens) FILTER (WHERE s.cost_usd IS NULL), 0),
           coalesce(sum(s.output_tokens) FILTER (WHERE s.cost_usd IS NULL), 0),
           coalesce(sum(s.cache_read_tokens) FILTER (WHERE s.cost_usd IS NULL), 0),
           coalesce(sum(s.cache_write_tokens) FILTER (WHERE s.cost_usd IS NULL), 0)
    FROM src s
    LEFT JOIN price p ON s.cost_usd IS NULL AND p.valid @> utc_day(s.created_at)
        AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
    GROUP BY 1, 2, 3, 4, 5
$$;

-- The (task, model) pairs usage_multi_provider lists in a runtime's (else a workspace's)
-- scope. Planned for its arguments on every call: a generic plan counts on the table's
-- share of an average scope and scanned every tenant's pairs for a small one.
CREATE FUNCTION multi_provider_pairs(p_runtime_id uuid, p_workspace_id uuid)
RETURNS TABLE (task_id uuid, model text)
LANGUAGE plpgsql STABLE ROWS 10
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    IF p_runtime_id IS NOT NULL THEN
        RETURN QUERY SELECT m.task_id, m.model FROM usage_multi_provider m
                     WHERE m.runtime_id = p_runtime_id;
    ELSE
        RETURN QUERY SELECT m.task_id, m.model FROM usage_multi_provider m
                     WHERE m.workspace_id = p_workspace_id;
    END IF;
END
$$;

-- By local hour of day in p_tz and model: the usage of one runtime since p_since, as
-- usage_report_raw answers it (date, agent and provider NULL), with tasks counted as the
-- rollup counts them. Rows are summed per cell (hour, UTC day, provider, model, reported or
-- not) before a cell is priced, and a group's tasks are its rows, corrected for the
-- (task, model) pairs reported under several providers (usage_report_rollup): no sort or
-- hash of every row's task. 1.8x faster than the raw statement at 10M (bench/RESULTS.md).
CREATE FUNCTION usage_by_hour(p_since timestamptz, p_tz text, p_runtime_id uuid)
RETURNS SETOF usage_report_row
LANGUAGE sql STABLE AS $$
    WITH cell AS (
        SELECT date_part('hour', u.created_at AT TIME ZONE p_tz)::int AS hour,
               utc_day(u.created_at) AS day, u.workspace_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS priced, sum(u.cost_usd) AS cost_usd,
               sum(u.input_tokens) AS input_tokens, sum(u.output_tokens) AS output_tokens,
               sum(u.cache_read_tokens) AS cache_read_tokens,
               sum(u.cache_write_tokens) AS cache_write_tokens, count(*) AS tasks
        FROM task_usage u
        WHERE u.runtime_id = p_runtime_id AND u.created_at >= p_since
        GROUP BY 1, 2, 3, 4, 5, 6
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM cell WHERE NOT priced) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    ), part AS (
        SELECT c.hour, c.model, c.input_tokens, c.output_tokens, c.cache_read_tokens,
               c.cache_write_tokens, c.tasks,
               usage_cost_units(c.cost_usd, c.input_tokens, c.output_tokens,
                                c.cache_read_tokens, c.cache_write_tokens, p.price) AS cost,
               usage_unpriced_tokens(c.cost_usd, c.input_tokens, c.output_tokens,
                                     c.cache_read_tokens, c.cache_write_tokens,
                                     p.price) AS unpriced,
               c.priced, c.cost_usd AS reported
        FROM cell c
        LEFT JOIN price p ON NOT c.priced AND p.valid @> c.day
            AND (p.workspace_id, p.provider, p.model) = (c.workspace_id, c.provider, c.model)
        UNION ALL
        SELECT date_part('hour', u.created_at AT TIME ZONE p_tz)::int, u.model, 0, 0, 0, 0,
               count(DISTINCT u.task_id) - count(*), 0, 0, true, 0
        FROM multi_provider_pairs(p_runtime_id, NULL) m
        JOIN task_usage u ON u.task_id = m.task_id AND u.model = m.model
        WHERE u.runtime_id = p_runtime_id AND u.created_at >= p_since
        GROUP BY 1, 2
    )
    SELECT NULL::date, r.hour, NULL::uuid, NULL::text, r.model,
           sum(r.input_tokens), sum(r.output_tokens),
           sum(r.cache_read_tokens), sum(r.cache_write_tokens), sum(r.tasks)::bigint,
           sum(r.cost), sum(r.unpriced), round(coalesce(sum(r.reported), 0) * 10000000000),
           coalesce(sum(r.input_tokens) FILTER (WHERE NOT r.priced), 0),
           coalesce(sum(r.output_tokens) FILTER (WHERE NOT r.priced), 0),
           coalesce(sum(r.cache_read_tokens) FILTER (WHERE NOT r.priced), 0),
           coalesce(sum(r.cache_write_tokens) FILTER (WHERE NOT r.priced), 0)
    FROM part r
    GROUP BY r.hour, r.model
$$;

-- Usage since p_since of one runtime, else one workspace, as usage_report_raw has it (no
-- hours), from the rollup. Spans, each read from one source, plus the deltas still queued
-- in the spans that buckets serve:
--   [p_since, seg_end)       segments (seg_end: where segments serve p_tz, rollup_end(),
--                            at most p_days_from); a workspace whose dates each start at a
--                            cut with heads reads its whole UTC days from usage_day_ws and
--                            the part of a day before each such instant from usage_head_ws
--                            instead;
--   [seg_end, p_days_from)   raw rows (normally empty: today's rows are folded);
--   [p_days_from, infinity)  the runtime's day buckets in p_day_zone, from p_days_from's
--                            local date on (p_days_from: the first instant of that date, a
--                            cut; NULL: no day buckets, and the raw span is unbounded).
-- INVARIANT: a tick deletes deltas and adds them to the buckets in one transaction, so at
-- any snapshot every usage row is counted exactly once. A group is returned when it has
-- rows (a delta counts +1 or -1).
--
-- task_count (with p_count_tasks, which requires p_by_model): every usage row counts as a
-- task (one row per task, provider and model). The rows of (task, model) pairs reported
-- under several providers are corrected per group: -1 each, +1 per distinct task. The
-- pairs are those usage_multi_provider lists in the report's scope (all of them, at every
-- snapshot), so the correction's cost depends on the scope's own pairs only.
CREATE FUNCTION usage_report_rollup(p_since timestamptz, p_tz text,
                                               p_runtime_id uuid, p_workspace_id uuid,
                                               p_by_date boolean, p_by_agent boolean,
                                               p_by_provider boolean, p_by_model boolean,
                                               p_count_tasks boolean,
                                               p_days_from timestamptz, p_day_zone text)
RETURNS SETOF usage_report_row
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
        -- Rows, queued deltas and segments, which are priced here. at: an instant of the
        -- row's local date; day: its UTC day; priced: cost_usd is the reported cost.
        -- Time bounds are read by scalar subqueries (a join with span would filter a scan
        -- of every row instead of bounding an index scan).
        SELECT u.created_at AS at, utc_day(u.created_at) AS day,
               u.workspace_id, u.agent_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS priced, u.cost_usd,
               u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
               1 AS rows
        FROM usage_rows_between(p_runtime_id, p_workspace_id, (SELECT s.seg_end FROM span s),
                                (SELECT s.raw_end FROM span s)) u
        UNION ALL
        -- The deltas (each at its quarter hour, usage_bin), summed per key before they are
        -- priced: a read costs what its groups cost, not its queue.
        SELECT d.created_at, utc_day(d.created_at), d.workspace_id,
               CASE WHEN p_by_agent THEN d.agent_id END, d.provider, d.model,
               d.cost_usd IS NOT NULL, sum(d.cost_usd), sum(d.input_tokens),
               sum(d.output_tokens), sum(d.cache_read_tokens), sum(d.cache_write_tokens),
               sum(d.rows)
        FROM (SELECT * FROM usage_dirty d
              WHERE p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
                AND d.created_at >= p_since
                AND (d.created_at < (SELECT s.seg_end FROM span s)
                     OR d.created_at >= (SELECT s.raw_end FROM span s))
              UNION ALL
              SELECT * FROM usage_dirty d
              WHERE p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
                AND d.created_at >= p_since
                AND (d.created_at < (SELECT s.seg_end FROM span s)
                     OR d.created_at >= (SELECT s.raw_end FROM span s))) d
        GROUP BY d.created_at, d.workspace_id, CASE WHEN p_by_agent THEN d.agent_id END,
                 d.provider, d.model, d.cost_usd IS NOT NULL
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, x.agent_id,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup x
        WHERE p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, NULL,
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
               x.provider, x.model, x.reported, x.cost_usd,
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
        SELECT v.at, x.day, x.workspace_id, NULL, x.provider, x.model, x.reported,
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
        FROM multi_provider_pairs(p_runtime_id, p_workspace_id) m
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
                                     p.price) AS unpriced,
               CASE WHEN s.priced THEN s.cost_usd ELSE 0 END AS reported,
               CASE WHEN s.priced THEN 0 ELSE s.input_tokens END AS uncosted_input,
               CASE WHEN s.priced THEN 0 ELSE s.output_tokens END AS uncosted_output,
               CASE WHEN s.priced THEN 0 ELSE s.cache_read_tokens END AS uncosted_cache_read,
               CASE WHEN s.priced THEN 0 ELSE s.cache_write_tokens END AS uncosted_cache_write
        FROM src s
        LEFT JOIN price p ON NOT s.priced AND p.valid @> s.day
            AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
        UNION ALL
        SELECT f.date, f.agent_id, f.provider, f.model, 0, 0, 0, 0, 0, f.tasks, 0, 0,
               0, 0, 0, 0, 0
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
                                     x.cache_read_tokens, x.cache_write_tokens, NULL),
               CASE WHEN x.reported THEN x.cost_usd ELSE 0 END,
               CASE WHEN x.reported THEN 0 ELSE x.input_tokens END,
               CASE WHEN x.reported THEN 0 ELSE x.output_tokens END,
               CASE WHEN x.reported THEN 0 ELSE x.cache_read_tokens END,
               CASE WHEN x.reported THEN 0 ELSE x.cache_write_tokens END
        FROM usage_day x
        WHERE p_days_from IS NOT NULL AND x.runtime_id = p_runtime_id AND x.zone = p_day_zone
          AND x.day >= (p_days_from AT TIME ZONE p_day_zone)::date
    )
    SELECT r.date, NULL::integer, r.agent_id, r.provider, r.model,
           sum(r.input_tokens), sum(r.output_tokens),
           sum(r.cache_read_tokens), sum(r.cache_write_tokens),
           CASE WHEN p_count_tasks THEN sum(r.tasks)::bigint ELSE 0 END,
           sum(r.cost), sum(r.unpriced), round(sum(r.reported) * 10000000000),
           sum(r.uncosted_input), sum(r.uncosted_output), sum(r.uncosted_cache_read),
           sum(r.uncosted_cache_write)
    FROM part r
    GROUP BY r.date, r.agent_id, r.provider, r.model
    HAVING sum(r.rows) <> 0
$$;

-- A runtime's cost over the 7 local days before today in its zone, and over the 7 days
-- before those, with their unpriced tokens: what the runtimes list shows of each runtime.
CREATE FUNCTION runtime_week_cost(p_runtime_id uuid, p_tz text, p_rollup boolean)
RETURNS TABLE (cost_7d_usd numeric, cost_prev_7d_usd numeric,
               unpriced_7d_tokens numeric, unpriced_prev_7d_tokens numeric)
LANGUAGE sql STABLE AS $$
    SELECT usd(sum(u.cost_units) FILTER (WHERE u.date >= d.today - 7)),
           usd(sum(u.cost_units) FILTER (WHERE u.date < d.today - 7)),
           coalesce(sum(u.unpriced_tokens) FILTER (WHERE u.date >= d.today - 7), 0),
           coalesce(sum(u.unpriced_tokens) FILTER (WHERE u.date < d.today - 7), 0)
    FROM (SELECT (now() AT TIME ZONE p_tz)::date AS today) d
    LEFT JOIN usage_report(usage_since(now(), p_tz, 14), p_tz, p_runtime_id => p_runtime_id,
                           p_by_date => true, p_rollup => p_rollup) u ON u.date < d.today
$$;

-- The tasks of a workspace (of one project's issues, when given) that ended (completed,
-- failed or cancelled) from p_since on: what today's Multica dashboard counts run time and
-- failures of.
CREATE FUNCTION ended_tasks(p_workspace_id uuid, p_since timestamptz, p_project_id uuid)
RETURNS SETOF agent_task_queue
LANGUAGE sql STABLE AS $$
    SELECT t.*
    FROM agent_task_queue t
    JOIN agent a ON a.id = t.agent_id
    WHERE a.workspace_id = p_workspace_id
      AND t.status IN ('completed', 'failed', 'cancelled')
      AND t.completed_at >= p_since
      AND (p_project_id IS NULL
           OR t.issue_id IN (SELECT i.id FROM issue i WHERE i.project_id = p_project_id))
$$;
