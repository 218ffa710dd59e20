-- One lean statement per path instead of one statement for every path. The shared
-- statement of 0014 summed its sources into priced cells, then cells into report rows,
-- and split its rows by whether they carried a task to count: about 10 µs per source row,
-- 6-8 ms for a 90-day runtime report whose 728 day buckets are read in 0.4 ms. Pricing is
-- linear in the tokens (exact integers), so each source row is priced as it is read and
-- summed once into its report row.
--
-- usage_report_raw: task_usage only, distinct tasks counted by task id (the raw path,
-- USAGE_DAILY_ROLLUP_ENABLED=false, and the reports that have no buckets: hours, issues).
-- usage_report_rollup: buckets, deltas still queued and the raw rows after the buckets;
-- every usage row counts as a task, corrected for multi-provider (task, model) pairs.

DROP FUNCTION usage_report_query(timestamptz, text, uuid, uuid, uuid, boolean, boolean,
                                 boolean, boolean, boolean, boolean, boolean, boolean);

-- Usage since p_since of one runtime, else one workspace, else one issue, read from
-- task_usage, grouped by the chosen keys (a key not chosen is NULL): local date and hour in
-- p_tz, agent, provider, model. task_count (with p_count_tasks, else 0) counts distinct
-- tasks per group. A row without a reported cost is priced with the price in force on its
-- UTC day in its workspace. Money is exact 1e-10 USD.
CREATE FUNCTION usage_report_raw(p_since timestamptz, p_tz text, p_runtime_id uuid,
                                 p_workspace_id uuid, p_issue_id uuid,
                                 p_by_date boolean, p_by_hour boolean, p_by_agent boolean,
                                 p_by_provider boolean, p_by_model boolean,
                                 p_count_tasks boolean)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
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
           sum(s.input_tokens)::bigint, sum(s.output_tokens)::bigint,
           sum(s.cache_read_tokens)::bigint, sum(s.cache_write_tokens)::bigint,
           CASE WHEN p_count_tasks THEN count(DISTINCT s.task_id) ELSE 0 END,
           sum(usage_cost_units(s.cost_usd, s.input_tokens, s.output_tokens,
                                s.cache_read_tokens, s.cache_write_tokens, p.price)),
           sum(usage_unpriced_tokens(s.cost_usd, s.input_tokens, s.output_tokens,
                                     s.cache_read_tokens, s.cache_write_tokens, p.price))::bigint
    FROM src s
    LEFT JOIN price p ON s.cost_usd IS NULL AND p.valid @> utc_day(s.created_at)
        AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
    GROUP BY 1, 2, 3, 4, 5
$$;

-- The cost of usage in 1e-10 USD, as usage_cost_units(numeric, ...) has it, for token
-- counts as stored: in bigint arithmetic (a numeric product per token kind cost 0.6 ms of
-- a 90-day report) where the result cannot overflow, i.e. below 1e10 tokens at a price
-- below $92,000 per million tokens; by the numeric function above that (and for usage
-- without a price, which it prices at 0).
CREATE FUNCTION usage_cost_units(p_reported numeric,
                                 p_input bigint, p_output bigint,
                                 p_cache_read bigint, p_cache_write bigint,
                                 p_price token_price)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(p_reported * 10000000000,
                    CASE WHEN p_input + p_output + p_cache_read + p_cache_write < 10000000000
                         THEN p_input * (p_price).input + p_output * (p_price).output
                              + p_cache_read * (p_price).cache_read
                              + p_cache_write * (p_price).cache_write END,
                    usage_cost_units(NULL, p_input::numeric, p_output::numeric,
                                     p_cache_read::numeric, p_cache_write::numeric, p_price))
$$;

-- The usage rows of a runtime (else a workspace) from p_from on: the raw rows after the
-- rollup's buckets, normally none. A function of its own so that a generic plan of the
-- rollup read counts on few (its ROWS) rather than a third of the scope's history, which
-- turned its hash joins and aggregates into sorts. No parallel workers: the generic plan
-- of this scan expects that third, and starting workers for it cost 30-50 ms.
CREATE FUNCTION usage_rows_from(p_runtime_id uuid, p_workspace_id uuid, p_from timestamptz)
RETURNS SETOF task_usage
LANGUAGE plpgsql STABLE ROWS 10
SET max_parallel_workers_per_gather = 0 AS $$
BEGIN
    IF p_runtime_id IS NOT NULL THEN
        RETURN QUERY SELECT * FROM task_usage u
                     WHERE u.runtime_id = p_runtime_id AND u.created_at >= p_from;
    ELSE
        RETURN QUERY SELECT * FROM task_usage u
                     WHERE u.workspace_id = p_workspace_id AND u.created_at >= p_from;
    END IF;
END
$$;

-- Usage since p_since of one runtime, else one workspace, as usage_report_raw has it (no
-- hours), from the rollup. Sources: segments from p_since to rollup_end() plus the deltas
-- queued in that span, and the raw rows from rollup_end() on; with p_day_buckets (a runtime
-- in its ready zone, p_since the first instant of its local date), the runtime's day
-- buckets from p_since's local date on plus every delta queued from p_since on. A tick
-- deletes deltas and adds them to the buckets in one transaction, so at any snapshot every
-- row is counted exactly once. A group is returned when it has rows (a delta counts +1 or
-- -1).
--
-- task_count (with p_count_tasks, which requires p_by_model): every usage row counts as a
-- task (one row per task, provider and model). The rows of (task, model) pairs reported
-- under several providers are corrected per group: -1 each, +1 per distinct task. The
-- pairs are those usage_multi_provider lists plus those among rows not folded yet.
CREATE FUNCTION usage_report_rollup(p_since timestamptz, p_tz text, p_runtime_id uuid,
                                    p_workspace_id uuid,
                                    p_by_date boolean, p_by_agent boolean,
                                    p_by_provider boolean, p_by_model boolean,
                                    p_count_tasks boolean, p_day_buckets boolean)
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
                          ELSE rollup_end(p_tz, p_since, true) END AS seg_end
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
        FROM usage_rows_from(p_runtime_id, p_workspace_id,
                             greatest(p_since, (SELECT s.seg_end FROM span s))) u
        UNION ALL
        SELECT d.created_at, NULL, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
          AND d.created_at >= p_since AND d.created_at < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT d.created_at, NULL, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
          AND d.created_at >= p_since AND d.created_at < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT x.seg_start, NULL, utc_day(x.seg_start), x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup x
        WHERE NOT p_day_buckets AND p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT NULL, x.day, x.utc_day, x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_day x
        WHERE p_day_buckets AND x.runtime_id = p_runtime_id
          AND x.day >= (p_since AT TIME ZONE p_tz)::date
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

-- Usage since p_since: from the rollup when p_rollup, else raw. The rollup path reads the
-- runtime's day buckets where they serve, and runs one plan made once per session: a
-- custom plan cost more to make (3-4 ms) than most reads take to run, and the generic one
-- measured as fast. The raw path is planned for its arguments on every call. p_rollup
-- excludes p_by_hour and p_issue_id (segments are not whole hours; an issue is not a key).
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
    v_day_buckets boolean;
BEGIN
    IF NOT p_rollup THEN
        RETURN QUERY EXECUTE
            'SELECT * FROM usage_report_raw($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)'
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
    SELECT * FROM usage_report_rollup(p_since, p_tz, p_runtime_id, p_workspace_id,
                                      p_by_date, p_by_agent, p_by_provider, p_by_model,
                                      p_count_tasks, v_day_buckets);
END
$$;
