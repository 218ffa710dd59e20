-- name: workspace_id
SELECT id FROM workspace WHERE slug = %(slug)s;

-- name: has_runtimes
SELECT EXISTS (SELECT 1 FROM agent_runtime WHERE workspace_id = %(workspace_id)s) AS filled;

-- name: insert_runtime
INSERT INTO agent_runtime (workspace_id, daemon_id, name, runtime_mode, provider, status,
                           device_info, timezone, last_seen_at)
VALUES (%(workspace_id)s, %(daemon_id)s, %(name)s, 'local', %(provider)s, 'online',
        %(device_info)s, %(timezone)s, now())
RETURNING id;

-- name: insert_agent
INSERT INTO agent (workspace_id, name, runtime_id) VALUES (%(workspace_id)s, %(name)s, %(runtime_id)s)
RETURNING id;

-- name: insert_issue
INSERT INTO issue (workspace_id, title, number) VALUES (%(workspace_id)s, %(title)s, %(number)s)
RETURNING id;

-- name: set_issue_counter
INSERT INTO issue_counter (workspace_id, last_number) VALUES (%(workspace_id)s, %(number)s)
ON CONFLICT (workspace_id) DO UPDATE SET last_number = greatest(issue_counter.last_number, excluded.last_number);

-- name: copy_tasks
COPY agent_task_queue (id, agent_id, runtime_id, issue_id, status, started_at, completed_at, created_at)
FROM STDIN;

-- name: copy_usage
COPY task_usage (task_id, provider, model, input_tokens, output_tokens, cache_read_tokens,
                 cache_write_tokens, cost_usd, created_at, updated_at)
FROM STDIN;
