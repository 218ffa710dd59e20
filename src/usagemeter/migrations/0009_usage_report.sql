-- One place that turns task_usage into report rows with cost (the raw path of API.md §3).

-- Usage since p_since of one runtime, workspace or issue, grouped by the chosen keys (a
-- key not chosen is NULL): local date and hour in p_tz, agent, provider, model.
-- Rows are first summed into cells of one group, workspace, provider, model, UTC day and
-- "has a reported cost"; each cell is priced with the price in force on its UTC day in
-- its workspace (the workspace of the task's agent), looked up once per (workspace,
-- provider, model). Money is summed in exact 1e-10 USD units.
-- task_count (with p_count_tasks, else 0): `first` marks the first row of a task within
-- its group, so summing it over the cells of the group counts distinct tasks.
-- An SQL function so that the planner inlines it: the scope and key arguments are
-- constants of the calling query and fold away.
CREATE FUNCTION usage_report(p_since timestamptz, p_tz text,
                             p_runtime_id uuid DEFAULT NULL,
                             p_workspace_id uuid DEFAULT NULL,
                             p_issue_id uuid DEFAULT NULL,
                             p_by_date boolean DEFAULT false,
                             p_by_hour boolean DEFAULT false,
                             p_by_agent boolean DEFAULT false,
                             p_by_provider boolean DEFAULT false,
                             p_by_model boolean DEFAULT false,
                             p_count_tasks boolean DEFAULT false)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
LANGUAGE sql STABLE AS $$
    WITH usage AS (
        SELECT u.task_id, u.provider AS usage_provider, u.model AS usage_model, u.cost_usd,
               u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
               u.workspace_id, utc_day(u.created_at) AS day,
               CASE WHEN p_by_date THEN (u.created_at AT TIME ZONE p_tz)::date END AS date,
               CASE WHEN p_by_hour THEN extract(hour FROM u.created_at AT TIME ZONE p_tz)::int
               END AS hour,
               CASE WHEN p_by_agent THEN u.agent_id END AS agent_id,
               CASE WHEN p_by_provider THEN u.provider END AS provider,
               CASE WHEN p_by_model THEN u.model END AS model
        FROM task_usage u
        WHERE u.created_at >= p_since
          AND (p_runtime_id IS NULL OR u.runtime_id = p_runtime_id)
          AND (p_workspace_id IS NULL OR u.workspace_id = p_workspace_id)
          AND (p_issue_id IS NULL OR u.task_id IN (SELECT t.id FROM agent_task_queue t
                                                   WHERE t.issue_id = p_issue_id))
    ), cell AS (
        SELECT r.date, r.hour, r.agent_id, r.provider, r.model,
               r.workspace_id, r.usage_provider, r.usage_model, r.day,
               r.cost_usd IS NOT NULL AS reported,
               sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
               sum(r.cache_read_tokens) AS cache_read_tokens,
               sum(r.cache_write_tokens) AS cache_write_tokens,
               sum(r.cost_usd) AS cost_usd,
               count(*) FILTER (WHERE r.first) AS tasks
        FROM (
            SELECT g.*, CASE WHEN p_count_tasks THEN
                            row_number() OVER (PARTITION BY g.date, g.hour, g.agent_id,
                                               g.provider, g.model, g.task_id) = 1
                        END AS first
            FROM usage g
        ) r
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ), price AS (
        SELECT k.workspace_id, k.usage_provider, k.usage_model, s.*
        FROM (SELECT DISTINCT workspace_id, usage_provider, usage_model FROM cell) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.usage_provider, k.usage_model) s
    )
    SELECT c.date, c.hour, c.agent_id, c.provider, c.model,
           sum(c.input_tokens)::bigint, sum(c.output_tokens)::bigint,
           sum(c.cache_read_tokens)::bigint, sum(c.cache_write_tokens)::bigint,
           sum(c.tasks)::bigint,
           sum(usage_cost_units(c.cost_usd, c.input_tokens, c.output_tokens,
                                c.cache_read_tokens, c.cache_write_tokens, p.price)),
           sum(usage_unpriced_tokens(c.cost_usd, c.input_tokens, c.output_tokens,
                                     c.cache_read_tokens, c.cache_write_tokens, p.price))::bigint
    FROM cell c
    LEFT JOIN price p ON NOT c.reported AND p.valid @> c.day
        AND (p.workspace_id, p.usage_provider, p.usage_model)
            = (c.workspace_id, c.usage_provider, c.usage_model)
    GROUP BY c.date, c.hour, c.agent_id, c.provider, c.model
$$;
