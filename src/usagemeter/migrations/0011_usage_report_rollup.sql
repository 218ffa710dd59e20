-- usage_report reads the rollup (p_rollup): one statement, exact at its snapshot.

DROP FUNCTION usage_report(timestamptz, text, uuid, uuid, uuid,
                           boolean, boolean, boolean, boolean, boolean, boolean);

-- Usage since p_since of one runtime, else one workspace, else one issue, grouped by the
-- chosen keys (a key not chosen is NULL): local date and hour in p_tz, agent, provider,
-- model.
--
-- Sources. Raw path (p_rollup false): every task_usage row in the window. Rollup path:
-- segments from p_since to rollup_end() whose (scope, UTC day) has no queue entry, plus
-- the raw rows of the queued days and of everything from rollup_end() on. A tick deletes
-- queue entries and writes segments in one transaction, so at any snapshot every row is
-- read exactly once. p_rollup excludes p_by_hour and p_issue_id (segments are not whole
-- hours; an issue is not a key of them) and, with p_count_tasks, requires p_by_model.
--
-- Pricing. Sources are summed into cells of one group, workspace, provider, model, UTC day
-- and "has a reported cost"; each cell is priced with the price in force on its UTC day in
-- its workspace, looked up once per (workspace, provider, model). Money is exact 1e-10 USD.
--
-- task_count (with p_count_tasks, else 0) counts distinct tasks per group. A source row
-- carries n (tasks counted as rows) and task_id (counted once per group). Raw path: n = 0,
-- task_id set. Rollup path: every usage row counts as a task (one row per task, provider
-- and model), and the rows of multi-provider (task, model) pairs are fixed up: -1 each,
-- then +1 per task and group.
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
LANGUAGE sql STABLE AS $$
    WITH span AS (
        SELECT rollup_end(p_tz, p_since, p_rollup) AS seg_end
    ), pending AS (
        SELECT DISTINCT q.day
        FROM usage_dirty q
        WHERE p_rollup
          AND q.runtime_id = coalesce(p_runtime_id, q.runtime_id)
          AND q.workspace_id = coalesce(p_workspace_id, q.workspace_id)
    ), raw_span AS (
        SELECT greatest(p_since, s.seg_end) AS lo, 'infinity'::timestamptz AS hi FROM span s
        UNION ALL
        SELECT greatest(p_since, utc_start(p.day)), least(s.seg_end, utc_start(p.day + 1))
        FROM pending p, span s
        WHERE utc_start(p.day + 1) > p_since AND utc_start(p.day) < s.seg_end
    ), raw AS (
        -- One index range scan per span (OFFSET 0 keeps the planner from scanning the
        -- whole scope once and filtering it by the spans instead).
        SELECT u.*
        FROM raw_span r
        CROSS JOIN LATERAL (
            -- One branch per kind of scope, so that the scope is an index condition even
            -- when it comes from an outer query (GET /api/runtimes).
            SELECT u.* FROM task_usage u
            WHERE p_runtime_id IS NOT NULL AND u.runtime_id = p_runtime_id
              AND u.created_at >= r.lo AND u.created_at < r.hi
            UNION ALL
            SELECT u.* FROM task_usage u
            WHERE p_runtime_id IS NULL AND u.workspace_id = p_workspace_id
              AND u.created_at >= r.lo AND u.created_at < r.hi
            UNION ALL
            SELECT u.* FROM task_usage u
            WHERE p_runtime_id IS NULL AND p_workspace_id IS NULL
              AND u.task_id IN (SELECT t.id FROM agent_task_queue t WHERE t.issue_id = p_issue_id)
              AND u.created_at >= r.lo AND u.created_at < r.hi
            OFFSET 0
        ) u
    ), multi AS (
        SELECT m.task_id, m.model FROM usage_multi_provider m WHERE p_rollup AND p_count_tasks
        UNION
        SELECT r.task_id, r.model FROM raw r
        WHERE p_rollup AND p_count_tasks
          AND EXISTS (SELECT FROM task_usage o
                      WHERE o.task_id = r.task_id AND o.model = r.model
                        AND o.provider <> r.provider)
    ), seg AS (
        SELECT x.*
        FROM usage_rollup x, span s
        WHERE p_rollup AND p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < s.seg_end
          AND utc_day(x.seg_start) NOT IN (SELECT p.day FROM pending p)
        UNION ALL
        SELECT x.*
        FROM usage_rollup x, span s
        WHERE p_rollup AND p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND x.seg_start >= p_since AND x.seg_start < s.seg_end
          AND utc_day(x.seg_start) NOT IN (SELECT p.day FROM pending p)
    ), source AS (
        SELECT r.created_at AS at, r.workspace_id, r.agent_id, r.provider, r.model,
               r.cost_usd IS NOT NULL AS reported, r.cost_usd,
               r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
               CASE WHEN p_rollup AND p_count_tasks THEN 1 ELSE 0 END AS n,
               CASE WHEN p_count_tasks AND NOT p_rollup THEN r.task_id END AS task_id
        FROM raw r
        UNION ALL
        SELECT x.seg_start, x.workspace_id, x.agent_id, x.provider, x.model,
               x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               CASE WHEN p_count_tasks THEN x.rows ELSE 0 END, NULL
        FROM seg x
        UNION ALL
        SELECT u.created_at, u.workspace_id, u.agent_id, u.provider, u.model,
               true, 0, 0, 0, 0, 0, -1, u.task_id
        FROM multi m
        JOIN task_usage u ON u.task_id = m.task_id AND u.model = m.model
        WHERE u.created_at >= p_since
          AND u.runtime_id = coalesce(p_runtime_id, u.runtime_id)
          AND u.workspace_id = coalesce(p_workspace_id, u.workspace_id)
    ), keyed AS (
        SELECT s.*, utc_day(s.at) AS day,
               CASE WHEN p_by_date THEN (s.at AT TIME ZONE p_tz)::date END AS g_date,
               CASE WHEN p_by_hour THEN extract(hour FROM s.at AT TIME ZONE p_tz)::int
               END AS g_hour,
               CASE WHEN p_by_agent THEN s.agent_id END AS g_agent_id,
               CASE WHEN p_by_provider THEN s.provider END AS g_provider,
               CASE WHEN p_by_model THEN s.model END AS g_model
        FROM source s
    ), cell AS (
        SELECT r.g_date, r.g_hour, r.g_agent_id, r.g_provider, r.g_model,
               r.workspace_id, r.provider, r.model, r.day, r.reported,
               sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
               sum(r.cache_read_tokens) AS cache_read_tokens,
               sum(r.cache_write_tokens) AS cache_write_tokens,
               sum(r.cost_usd) AS cost_usd,
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
$$;
