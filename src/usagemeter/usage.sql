-- Reports computed straight from task_usage (the raw path).
-- Every local date and hour is computed in %(tz)s; ordering of text is byte order.

-- name: runtime_usage
-- Daily tokens of one runtime per provider and model.
SELECT %(runtime_id)s::uuid AS runtime_id,
       to_char((u.created_at AT TIME ZONE %(tz)s)::date, 'YYYY-MM-DD') AS date,
       u.provider,
       u.model,
       sum(u.input_tokens)::bigint AS input_tokens,
       sum(u.output_tokens)::bigint AS output_tokens,
       sum(u.cache_read_tokens)::bigint AS cache_read_tokens,
       sum(u.cache_write_tokens)::bigint AS cache_write_tokens
FROM task_usage u
JOIN agent_task_queue t ON t.id = u.task_id
WHERE t.runtime_id = %(runtime_id)s
  AND u.created_at >= usage_since(now(), %(tz)s, %(days)s)
GROUP BY 2, 3, 4
ORDER BY date DESC, u.provider COLLATE "C", u.model COLLATE "C";

-- name: runtime_usage_by_agent
-- Tokens and distinct tasks of one runtime per agent and model.
SELECT t.agent_id,
       u.model,
       sum(u.input_tokens)::bigint AS input_tokens,
       sum(u.output_tokens)::bigint AS output_tokens,
       sum(u.cache_read_tokens)::bigint AS cache_read_tokens,
       sum(u.cache_write_tokens)::bigint AS cache_write_tokens,
       count(DISTINCT u.task_id) AS task_count
FROM task_usage u
JOIN agent_task_queue t ON t.id = u.task_id
WHERE t.runtime_id = %(runtime_id)s
  AND u.created_at >= usage_since(now(), %(tz)s, %(days)s)
GROUP BY t.agent_id, u.model
ORDER BY t.agent_id, u.model COLLATE "C";

-- name: runtime_usage_by_hour
-- Tokens and distinct tasks of one runtime per local hour of day and model.
SELECT extract(hour FROM u.created_at AT TIME ZONE %(tz)s)::int AS hour,
       u.model,
       sum(u.input_tokens)::bigint AS input_tokens,
       sum(u.output_tokens)::bigint AS output_tokens,
       sum(u.cache_read_tokens)::bigint AS cache_read_tokens,
       sum(u.cache_write_tokens)::bigint AS cache_write_tokens,
       count(DISTINCT u.task_id) AS task_count
FROM task_usage u
JOIN agent_task_queue t ON t.id = u.task_id
WHERE t.runtime_id = %(runtime_id)s
  AND u.created_at >= usage_since(now(), %(tz)s, %(days)s)
GROUP BY 1, 2
ORDER BY hour, u.model COLLATE "C";

-- name: runtime_activity
-- Started tasks of one runtime per local hour of started_at, all time.
SELECT extract(hour FROM t.started_at AT TIME ZONE %(tz)s)::int AS hour, count(*) AS count
FROM agent_task_queue t
WHERE t.runtime_id = %(runtime_id)s AND t.started_at IS NOT NULL
GROUP BY 1
ORDER BY 1;

-- name: workspace_daily
-- Daily tokens and distinct tasks of a workspace (the workspace of each task's agent).
SELECT to_char((u.created_at AT TIME ZONE %(tz)s)::date, 'YYYY-MM-DD') AS date,
       u.model,
       sum(u.input_tokens)::bigint AS total_input_tokens,
       sum(u.output_tokens)::bigint AS total_output_tokens,
       sum(u.cache_read_tokens)::bigint AS total_cache_read_tokens,
       sum(u.cache_write_tokens)::bigint AS total_cache_write_tokens,
       count(DISTINCT u.task_id) AS task_count
FROM task_usage u
JOIN agent_task_queue t ON t.id = u.task_id
JOIN agent a ON a.id = t.agent_id
WHERE a.workspace_id = %(workspace_id)s
  AND u.created_at >= usage_since(now(), %(tz)s, %(days)s)
GROUP BY 1, 2
ORDER BY date DESC, u.model COLLATE "C";

-- name: workspace_summary
-- Tokens and distinct tasks of a workspace per model, biggest first.
SELECT u.model,
       sum(u.input_tokens)::bigint AS total_input_tokens,
       sum(u.output_tokens)::bigint AS total_output_tokens,
       sum(u.cache_read_tokens)::bigint AS total_cache_read_tokens,
       sum(u.cache_write_tokens)::bigint AS total_cache_write_tokens,
       count(DISTINCT u.task_id) AS task_count
FROM task_usage u
JOIN agent_task_queue t ON t.id = u.task_id
JOIN agent a ON a.id = t.agent_id
WHERE a.workspace_id = %(workspace_id)s
  AND u.created_at >= usage_since(now(), %(tz)s, %(days)s)
GROUP BY u.model
ORDER BY sum(u.input_tokens) + sum(u.output_tokens) DESC, u.model COLLATE "C";

-- name: issue_usage
-- All-time tokens and distinct tasks of every task on the issue.
SELECT coalesce(sum(u.input_tokens), 0)::bigint AS total_input_tokens,
       coalesce(sum(u.output_tokens), 0)::bigint AS total_output_tokens,
       coalesce(sum(u.cache_read_tokens), 0)::bigint AS total_cache_read_tokens,
       coalesce(sum(u.cache_write_tokens), 0)::bigint AS total_cache_write_tokens,
       count(DISTINCT u.task_id) AS task_count
FROM agent_task_queue t
JOIN task_usage u ON u.task_id = t.id
WHERE t.issue_id = %(issue_id)s;
