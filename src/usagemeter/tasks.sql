-- name: task_access
-- A task with the caller's role in the workspace of its agent.
SELECT t.id, a.workspace_id, caller_role(a.workspace_id, %(user_id)s, %(daemon_workspace_id)s) AS role
FROM agent_task_queue t
JOIN agent a ON a.id = t.agent_id
WHERE t.id = %(id)s;

-- name: agent_for_task
SELECT a.id, a.runtime_id, a.archived_at IS NOT NULL AS archived
FROM agent a
WHERE a.id = %(agent_id)s AND a.workspace_id = %(workspace_id)s
FOR KEY SHARE;

-- name: create_task
INSERT INTO agent_task_queue (agent_id, runtime_id, issue_id)
VALUES (%(agent_id)s, %(runtime_id)s, %(issue_id)s)
RETURNING id;

-- name: get_task
SELECT t.id, t.agent_id, t.runtime_id, t.issue_id, t.status,
       rfc3339(t.started_at) AS started_at, rfc3339(t.completed_at) AS completed_at,
       rfc3339(t.created_at) AS created_at, t.failure_reason, t.session_id, t.source
FROM agent_task_queue t
WHERE t.id = %(id)s;

-- name: list_tasks
-- The workspace's tasks, newest first.
SELECT t.id, t.agent_id, t.runtime_id, t.issue_id, t.status,
       rfc3339(t.started_at) AS started_at, rfc3339(t.completed_at) AS completed_at,
       rfc3339(t.created_at) AS created_at, t.failure_reason, t.session_id, t.source
FROM agent_task_queue t
JOIN agent a ON a.id = t.agent_id
WHERE a.workspace_id = %(workspace_id)s
  AND (%(status)s::text IS NULL OR t.status = %(status)s::text)
ORDER BY t.created_at DESC, t.id
LIMIT %(limit)s;

-- name: transition_task
-- Moves a task on if its current status allows it; no row means it does not.
UPDATE agent_task_queue
SET status = %(status)s,
    started_at = CASE WHEN %(status)s = 'running' THEN coalesce(started_at, now()) ELSE started_at END,
    completed_at = CASE WHEN %(status)s IN ('completed', 'failed', 'cancelled') THEN now()
                        ELSE completed_at END,
    failure_reason = %(failure_reason)s,
    session_id = coalesce(%(session_id)s, session_id)
WHERE id = %(id)s AND status = ANY(%(from)s)
RETURNING id;

-- name: lock_sessions
-- Waits for the imports and OpenTelemetry writing into the workspace now (sources.sql).
SELECT pg_advisory_xact_lock(session_lock(%(workspace_id)s));

-- name: drop_session_records
-- A session a daemon reports is counted from its reports only: the tasks an import or
-- OpenTelemetry wrote of it go (records.py).
DELETE FROM agent_task_queue t
USING agent a
WHERE a.id = t.agent_id AND a.workspace_id = %(workspace_id)s
  AND t.session_id = %(session_id)s AND t.source IS NOT NULL;
