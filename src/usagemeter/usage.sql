-- Usage reports of docs/api.md, from usage_report: the rollup when `rollup` is true, else raw.
-- Hours of day and issues have no buckets (segments are whole parts of days), so those two
-- read task_usage through its indexes either way.
-- Every local date and hour is computed in %(tz)s; ordering of text is byte order.

-- name: runtime_usage
-- Daily tokens and cost of one runtime per provider and model.
SELECT %(runtime_id)s::uuid AS runtime_id,
       r.date, r.provider, r.model,
       r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       usd(r.cost_units) AS cost_usd, r.unpriced_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_runtime_id => %(runtime_id)s,
                  p_by_date => true, p_by_provider => true, p_by_model => true,
                  p_rollup => %(rollup)s) r
ORDER BY r.date DESC, r.provider COLLATE "C", r.model COLLATE "C";

-- name: runtime_usage_by_agent
-- Tokens, distinct tasks and cost of one runtime per agent and model.
SELECT r.agent_id, r.model,
       r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_runtime_id => %(runtime_id)s, p_by_agent => true, p_by_model => true,
                  p_count_tasks => true, p_rollup => %(rollup)s) r
ORDER BY r.agent_id, r.model COLLATE "C";

-- name: runtime_usage_by_hour
-- Tokens, distinct tasks and cost of one runtime per local hour of day and model.
SELECT r.hour, r.model,
       r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens
FROM usage_report(usage_since(now(), %(tz)s, %(days)s), %(tz)s,
                  p_runtime_id => %(runtime_id)s, p_by_hour => true, p_by_model => true,
                  p_count_tasks => true) r
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
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens
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
       r.task_count, usd(r.cost_units) AS cost_usd, r.unpriced_tokens
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
       coalesce(r.unpriced_tokens, 0) AS unpriced_tokens
FROM (SELECT) one
LEFT JOIN usage_report('-infinity', 'UTC', p_issue_id => %(issue_id)s,
                       p_count_tasks => true) r ON true;

-- name: register_zone
SELECT register_report_zone(%(tz)s, %(workspace_id)s) AS registered;

-- name: register_runtime_zone
SELECT register_runtime_zone(%(runtime_id)s, %(tz)s);
