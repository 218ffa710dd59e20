-- Usage reports of docs/api.md, from usage_report: the rollup when `rollup` is true, else raw.
-- Hours of day and issues have no buckets (segments are whole parts of days), so those two
-- read task_usage through its indexes either way.
-- Every local date and hour is computed in %(tz)s; ordering of text is byte order.

-- name: runtime_usage
-- Daily tokens and cost of one runtime per provider and model.
SELECT %(runtime_id)s::uuid AS runtime_id,
       r.date, r.provider, r.model,
       r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       usd(r.cost_units) AS cost_usd, r.unpriced_tokens,
       r.reported_units AS cost_usd_ticks, r.uncosted_input_tokens, r.uncosted_output_tokens,
       r.uncosted_cache_read_tokens, r.uncosted_cache_write_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_runtime_id => %(runtime_id)s,
                  p_by_date => true, p_by_provider => true, p_by_model => true,
                  p_rollup => %(rollup)s) r
ORDER BY r.date DESC, r.provider COLLATE "C", r.model COLLATE "C";

-- name: runtime_usage_by_agent
-- Tokens, distinct tasks and cost of one runtime per agent and model, with the providers of
-- each (sorted, joined by ","; today's Multica web reads a provider on every row).
WITH r AS (
    SELECT * FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                               p_runtime_id => %(runtime_id)s, p_by_agent => true,
                               p_by_model => true, p_count_tasks => true,
                               p_rollup => %(rollup)s)
), p AS (
    SELECT p.agent_id, p.model, string_agg(p.provider, ',' ORDER BY p.provider COLLATE "C")
                                    AS provider
    FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                      p_runtime_id => %(runtime_id)s, p_by_agent => true,
                      p_by_provider => true, p_by_model => true, p_rollup => %(rollup)s) p
    GROUP BY p.agent_id, p.model
)
SELECT r.agent_id, p.provider, r.model,
       r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens,
       r.reported_units AS cost_usd_ticks, r.uncosted_input_tokens, r.uncosted_output_tokens,
       r.uncosted_cache_read_tokens, r.uncosted_cache_write_tokens
FROM r
JOIN p ON (p.agent_id, p.model) = (r.agent_id, r.model)
ORDER BY r.agent_id, r.model COLLATE "C";

-- name: runtime_usage_by_hour
-- Tokens, distinct tasks and cost of one runtime per local hour of day and model.
SELECT r.hour, r.model,
       r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens,
       r.reported_units AS cost_usd_ticks, r.uncosted_input_tokens, r.uncosted_output_tokens,
       r.uncosted_cache_read_tokens, r.uncosted_cache_write_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_runtime_id => %(runtime_id)s, p_by_hour => true, p_by_model => true,
                  p_count_tasks => true, p_rollup => %(rollup)s) r
ORDER BY r.hour, r.model COLLATE "C";

-- name: runtime_activity
-- Started tasks of one runtime per local hour of started_at, all time: the zone's activity
-- rollup plus the deltas still queued when the zone is built, else every started task.
WITH ready AS (
    SELECT %(rollup)s AND EXISTS (SELECT FROM activity_zone z
                                  WHERE z.zone = %(tz)s AND z.state = 'ready') AS ok
)
SELECT s.hour, sum(s.n)::bigint AS count
FROM (
    SELECT a.hour::int, a.tasks
    FROM activity_rollup a, ready
    WHERE ready.ok AND a.runtime_id = %(runtime_id)s AND a.zone = %(tz)s
    UNION ALL
    SELECT extract(hour FROM d.started_at AT TIME ZONE %(tz)s)::int, d.delta
    FROM activity_dirty d, ready
    WHERE ready.ok AND d.runtime_id = %(runtime_id)s
    UNION ALL
    SELECT extract(hour FROM t.started_at AT TIME ZONE %(tz)s)::int, 1
    FROM agent_task_queue t, ready
    WHERE NOT ready.ok AND t.runtime_id = %(runtime_id)s AND t.started_at IS NOT NULL
) s(hour, n)
GROUP BY s.hour
HAVING sum(s.n) <> 0
ORDER BY s.hour;

-- name: workspace_daily
-- Daily tokens, distinct tasks and cost of a workspace per model.
SELECT r.date, r.model,
       r.input_tokens AS total_input_tokens, r.output_tokens AS total_output_tokens,
       r.cache_read_tokens AS total_cache_read_tokens,
       r.cache_write_tokens AS total_cache_write_tokens,
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens,
       r.reported_units AS cost_usd_ticks, r.uncosted_input_tokens, r.uncosted_output_tokens,
       r.uncosted_cache_read_tokens, r.uncosted_cache_write_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_workspace_id => %(workspace_id)s, p_by_date => true, p_by_model => true,
                  p_count_tasks => true, p_rollup => %(rollup)s) r
ORDER BY r.date DESC, r.model COLLATE "C";

-- name: workspace_summary
-- Tokens, distinct tasks and cost of a workspace per model, biggest first.
SELECT r.model,
       r.input_tokens AS total_input_tokens, r.output_tokens AS total_output_tokens,
       r.cache_read_tokens AS total_cache_read_tokens,
       r.cache_write_tokens AS total_cache_write_tokens,
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens,
       r.reported_units AS cost_usd_ticks, r.uncosted_input_tokens, r.uncosted_output_tokens,
       r.uncosted_cache_read_tokens, r.uncosted_cache_write_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_workspace_id => %(workspace_id)s, p_by_model => true,
                  p_count_tasks => true, p_rollup => %(rollup)s) r
ORDER BY r.input_tokens + r.output_tokens DESC, r.model COLLATE "C";

-- name: issue_usage
-- All-time tokens, distinct tasks and cost of every task on the issue.
SELECT coalesce(r.input_tokens, 0) AS total_input_tokens,
       coalesce(r.output_tokens, 0) AS total_output_tokens,
       coalesce(r.cache_read_tokens, 0) AS total_cache_read_tokens,
       coalesce(r.cache_write_tokens, 0) AS total_cache_write_tokens,
       coalesce(r.task_count, 0) AS task_count,
       usd(r.cost_units) AS cost_usd,
       coalesce(r.unpriced_tokens, 0) AS unpriced_tokens,
       coalesce(r.reported_units, 0) AS cost_usd_ticks,
       coalesce(r.uncosted_input_tokens, 0) AS uncosted_input_tokens,
       coalesce(r.uncosted_output_tokens, 0) AS uncosted_output_tokens,
       coalesce(r.uncosted_cache_read_tokens, 0) AS uncosted_cache_read_tokens,
       coalesce(r.uncosted_cache_write_tokens, 0) AS uncosted_cache_write_tokens
FROM (SELECT) one
LEFT JOIN usage_report('-infinity', 'UTC', p_issue_id => %(issue_id)s,
                       p_count_tasks => true) r ON true;

-- name: workspace_usage_by_agent
-- Tokens, distinct tasks and cost of a workspace per agent and model: the sum of its
-- runtimes' reports (workspace buckets have no agent; a runtime's have, and a task and its
-- usage belong to one runtime, so the sums and distinct counts are exact).
SELECT r.agent_id, r.model,
       sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
       sum(r.cache_read_tokens) AS cache_read_tokens,
       sum(r.cache_write_tokens) AS cache_write_tokens,
       sum(r.task_count)::bigint AS task_count, usd(sum(r.cost_units)) AS cost_usd,
       sum(r.unpriced_tokens) AS unpriced_tokens, sum(r.reported_units) AS cost_usd_ticks,
       sum(r.uncosted_input_tokens) AS uncosted_input_tokens,
       sum(r.uncosted_output_tokens) AS uncosted_output_tokens,
       sum(r.uncosted_cache_read_tokens) AS uncosted_cache_read_tokens,
       sum(r.uncosted_cache_write_tokens) AS uncosted_cache_write_tokens
FROM agent_runtime rt
CROSS JOIN LATERAL usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                                p_runtime_id => rt.id, p_by_agent => true, p_by_model => true,
                                p_count_tasks => true, p_rollup => %(rollup)s) r
WHERE rt.workspace_id = %(workspace_id)s
GROUP BY r.agent_id, r.model
ORDER BY r.agent_id, r.model COLLATE "C";

-- name: usage_timeline
-- One runtime (else a workspace) per local date, every date of the window listed: tokens,
-- cost, its split over the four kinds (in proportion to each kind's tokens at the model's
-- price of today, else to its tokens: the parts sum to the cost within rounding),
-- unpriced tokens, what cache reads saved against the input price (each model at its price
-- of today; none for a model without one) and the tasks started.
WITH scope AS (
    SELECT usage_since(now(), %(tz)s, %(days)s) AS since,
           (now() AT TIME ZONE %(tz)s)::date AS today
), cell AS (
    SELECT r.date, r.provider, r.model, r.input_tokens, r.output_tokens,
           r.cache_read_tokens, r.cache_write_tokens, r.cost_units, r.unpriced_tokens
    FROM scope, usage_report(scope.since, %(tz)s,
                             p_runtime_id => %(runtime_id)s,
                             p_workspace_id => CASE WHEN %(runtime_id)s::uuid IS NULL
                                                    THEN %(workspace_id)s::uuid END,
                             p_by_date => true, p_by_provider => true, p_by_model => true,
                             p_rollup => %(rollup)s) r
), price AS (
    SELECT k.provider, k.model, s.price
    FROM (SELECT DISTINCT provider, model FROM cell) k
    CROSS JOIN LATERAL price_segments(%(workspace_id)s, k.provider, k.model) s
    WHERE s.valid @> utc_day(now())
), weighed AS (
    SELECT c.*, w.*, w.input + w.output + w.cache_read + w.cache_write AS total,
           c.cache_read_tokens * ((p.price).input - (p.price).cache_read) AS saved_units
    FROM cell c
    LEFT JOIN price p ON (p.provider, p.model) = (c.provider, c.model)
    CROSS JOIN LATERAL (
        -- Weights in float8: the split is an allocation, and numeric division cost 5 ms of a
        -- 182-day timeline.
        SELECT c.input_tokens::float8 * coalesce((p.price).input, 1) AS input,
               c.output_tokens::float8 * coalesce((p.price).output, 1) AS output,
               c.cache_read_tokens::float8 * coalesce((p.price).cache_read, 1) AS cache_read,
               c.cache_write_tokens::float8 * coalesce((p.price).cache_write, 1) AS cache_write
    ) w
), per_date AS (
    SELECT w.date,
           sum(w.input_tokens) AS input_tokens, sum(w.output_tokens) AS output_tokens,
           sum(w.cache_read_tokens) AS cache_read_tokens,
           sum(w.cache_write_tokens) AS cache_write_tokens,
           sum(w.cost_units) AS cost_units,
           round(sum(w.cost_units::float8 * w.input / nullif(w.total, 0)))::numeric AS input_units,
           round(sum(w.cost_units::float8 * w.output / nullif(w.total, 0)))::numeric AS output_units,
           round(sum(w.cost_units::float8 * w.cache_read / nullif(w.total, 0)))::numeric AS cache_read_units,
           round(sum(w.cost_units::float8 * w.cache_write / nullif(w.total, 0)))::numeric AS cache_write_units,
           sum(w.unpriced_tokens) AS unpriced_tokens, sum(w.saved_units) AS saved_units
    FROM weighed w
    GROUP BY w.date
), started AS (
    -- A task runs on one runtime: the workspace's are its runtimes' (each an index range).
    SELECT (t.started_at AT TIME ZONE %(tz)s)::date AS date, count(*) AS n
    FROM agent_runtime r
    JOIN agent_task_queue t ON t.runtime_id = r.id
    WHERE (r.id = %(runtime_id)s
           OR (%(runtime_id)s::uuid IS NULL AND r.workspace_id = %(workspace_id)s))
      AND t.started_at >= (SELECT since FROM scope)
    GROUP BY 1
)
SELECT g.date::date AS date,
       coalesce(d.input_tokens, 0) AS input_tokens,
       coalesce(d.output_tokens, 0) AS output_tokens,
       coalesce(d.cache_read_tokens, 0) AS cache_read_tokens,
       coalesce(d.cache_write_tokens, 0) AS cache_write_tokens,
       usd(d.cost_units) AS cost_usd,
       usd(d.input_units) AS input_cost_usd, usd(d.output_units) AS output_cost_usd,
       usd(d.cache_read_units) AS cache_read_cost_usd,
       usd(d.cache_write_units) AS cache_write_cost_usd,
       coalesce(d.unpriced_tokens, 0) AS unpriced_tokens,
       usd(d.saved_units) AS cache_savings_usd,
       coalesce(t.n, 0) AS tasks_started
FROM scope
-- Every date to today, and to any later date holding usage (it counts, as in every report).
CROSS JOIN LATERAL generate_series((scope.since AT TIME ZONE %(tz)s)::date,
                                   greatest(scope.today, (SELECT max(date) FROM per_date)),
                                   interval '1 day') g(date)
LEFT JOIN per_date d ON d.date = g.date::date
LEFT JOIN started t ON t.date = g.date::date
ORDER BY g.date DESC;

-- name: register_zone
SELECT register_report_zone(%(tz)s, %(workspace_id)s) AS registered;

-- name: register_runtime_zone
SELECT register_runtime_zone(%(runtime_id)s, %(tz)s);

-- name: dashboard_usage_daily
-- Today's Multica dashboard (docs/api.md, "Today's Multica clients"): the workspace per
-- local date (days plus today) and per agent (exactly `days` dates: today and the days - 1
-- before it), with keys as that dashboard reads them, or only the tasks of the issues of
-- project `project_id` (then usage is read raw: a project is not a key of the rollup).
-- Tokens, distinct tasks and cost of a workspace per local date, provider and model.
SELECT r.date, r.provider, r.model,
       r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       r.reported_units AS cost_usd_ticks, r.uncosted_input_tokens, r.uncosted_output_tokens,
       r.uncosted_cache_read_tokens, r.uncosted_cache_write_tokens, r.task_count,
       usd(r.cost_units) AS cost_usd, r.unpriced_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_workspace_id => CASE WHEN %(project_id)s::uuid IS NULL
                                         THEN %(workspace_id)s::uuid END,
                  p_by_date => true, p_by_provider => true, p_by_model => true,
                  p_count_tasks => true, p_rollup => %(rollup)s AND %(project_id)s::uuid IS NULL,
                  p_project_id => %(project_id)s) r
ORDER BY r.date DESC, r.provider COLLATE "C", r.model COLLATE "C";

-- name: dashboard_usage_by_agent
-- Tokens, distinct tasks and cost of a workspace per agent, provider and model, over exactly
-- `days` local dates: the sum of its runtimes' reports (see workspace_usage_by_agent).
SELECT r.agent_id, r.provider, r.model,
       sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
       sum(r.cache_read_tokens) AS cache_read_tokens,
       sum(r.cache_write_tokens) AS cache_write_tokens,
       sum(r.reported_units) AS cost_usd_ticks,
       sum(r.uncosted_input_tokens) AS uncosted_input_tokens,
       sum(r.uncosted_output_tokens) AS uncosted_output_tokens,
       sum(r.uncosted_cache_read_tokens) AS uncosted_cache_read_tokens,
       sum(r.uncosted_cache_write_tokens) AS uncosted_cache_write_tokens,
       sum(r.task_count)::bigint AS task_count, usd(sum(r.cost_units)) AS cost_usd,
       sum(r.unpriced_tokens) AS unpriced_tokens
FROM (SELECT r.*
      FROM agent_runtime rt
      CROSS JOIN LATERAL usage_report(usage_since(now(), %(tz)s, %(days)s - 1), %(tz)s,
                                      p_runtime_id => rt.id, p_by_agent => true,
                                      p_by_provider => true, p_by_model => true,
                                      p_count_tasks => true, p_rollup => %(rollup)s) r
      WHERE rt.workspace_id = %(workspace_id)s AND %(project_id)s::uuid IS NULL
      UNION ALL
      SELECT r.*
      FROM usage_report(usage_since(now(), %(tz)s, %(days)s - 1), %(tz)s,
                        p_project_id => %(project_id)s, p_by_agent => true,
                        p_by_provider => true, p_by_model => true, p_count_tasks => true) r
      WHERE %(project_id)s::uuid IS NOT NULL) r
GROUP BY r.agent_id, r.provider, r.model
ORDER BY r.agent_id, r.provider COLLATE "C", r.model COLLATE "C";

-- name: dashboard_agent_runtime
-- Run time (seconds from start to end) and counts of a workspace's tasks that ended
-- (completed, failed or cancelled, having started) per agent, over exactly `days` local
-- dates of their end, longest first.
SELECT t.agent_id,
       coalesce(sum(extract(epoch FROM t.completed_at - t.started_at)), 0)::bigint
           AS total_seconds,
       count(*) AS task_count,
       count(*) FILTER (WHERE t.status = 'failed') AS failed_count,
       count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled_count
FROM ended_tasks(%(workspace_id)s, usage_since(now(), %(tz)s, %(days)s - 1),
                 %(project_id)s) t
WHERE t.started_at IS NOT NULL
GROUP BY t.agent_id
ORDER BY total_seconds DESC, t.agent_id;

-- name: dashboard_runtime_daily
-- The same per local date of the tasks' end (days plus today), newest first.
SELECT (t.completed_at AT TIME ZONE %(tz)s)::date AS date,
       coalesce(sum(extract(epoch FROM t.completed_at - t.started_at)), 0)::bigint
           AS total_seconds,
       count(*) AS task_count,
       count(*) FILTER (WHERE t.status = 'failed') AS failed_count,
       count(*) FILTER (WHERE t.status = 'cancelled') AS cancelled_count
FROM ended_tasks(%(workspace_id)s, usage_since(now(), %(tz)s, %(days)s), %(project_id)s) t
WHERE t.started_at IS NOT NULL
GROUP BY 1
ORDER BY 1 DESC;

-- name: dashboard_failures_daily
-- Tasks that completed or failed per local date of their end (days plus today) and
-- failure_reason: '' for those that completed (the succeeded count an error rate needs),
-- 'unclassified' for a failure nobody classified.
SELECT f.date, f.failure_reason, count(*) AS task_count
FROM (SELECT (t.completed_at AT TIME ZONE %(tz)s)::date AS date,
             CASE WHEN t.status = 'failed'
                  THEN coalesce(nullif(t.failure_reason, ''), 'unclassified')
                  ELSE '' END AS failure_reason
      FROM ended_tasks(%(workspace_id)s, usage_since(now(), %(tz)s, %(days)s),
                       %(project_id)s) t
      WHERE t.status IN ('completed', 'failed')) f
GROUP BY f.date, f.failure_reason
ORDER BY f.date DESC, f.failure_reason COLLATE "C";

-- name: dashboard_failures_by_agent
-- The same per agent, over exactly `days` local dates of their end.
SELECT f.agent_id, f.failure_reason, count(*) AS task_count
FROM (SELECT t.agent_id,
             CASE WHEN t.status = 'failed'
                  THEN coalesce(nullif(t.failure_reason, ''), 'unclassified')
                  ELSE '' END AS failure_reason
      FROM ended_tasks(%(workspace_id)s, usage_since(now(), %(tz)s, %(days)s - 1),
                       %(project_id)s) t
      WHERE t.status IN ('completed', 'failed')) f
GROUP BY f.agent_id, f.failure_reason
ORDER BY f.agent_id, f.failure_reason COLLATE "C";
