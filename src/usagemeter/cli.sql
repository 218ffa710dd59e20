-- name: status_counts
SELECT (SELECT count(*) FROM workspace) AS workspaces,
       (SELECT count(*) FROM agent_runtime) AS runtimes,
       (SELECT count(*) FROM agent) AS agents,
       (SELECT count(*) FROM agent_task_queue) AS tasks,
       (SELECT count(*) FROM task_usage) AS usage_rows,
       (SELECT count(*) FROM usage_rollup) AS rollup_segments,
       (SELECT rfc3339(max(updated_at)) FROM task_usage) AS last_usage_at,
       current_setting('server_version') AS server_version;

-- name: workspace_id
SELECT id FROM workspace WHERE slug = %(slug)s;
