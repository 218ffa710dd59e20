-- name: list_agents
SELECT id, workspace_id, name, runtime_id, owner_id, rfc3339(archived_at) AS archived_at,
       rfc3339(created_at) AS created_at, rfc3339(updated_at) AS updated_at
FROM agent
WHERE workspace_id = %(workspace_id)s
ORDER BY created_at, id;

-- name: runtime_workspace
SELECT workspace_id FROM agent_runtime WHERE id = %(runtime_id)s FOR KEY SHARE;

-- name: create_agent
INSERT INTO agent (workspace_id, name, runtime_id, owner_id)
VALUES (%(workspace_id)s, %(name)s, %(runtime_id)s, %(owner_id)s)
RETURNING id, workspace_id, name, runtime_id, owner_id, rfc3339(archived_at) AS archived_at,
          rfc3339(created_at) AS created_at, rfc3339(updated_at) AS updated_at;

-- name: agent_access
SELECT a.id, a.workspace_id, a.owner_id,
       caller_role(a.workspace_id, %(user_id)s, %(daemon_workspace_id)s) AS role
FROM agent a
WHERE a.id = %(id)s;

-- name: update_agent
-- Rebinding moves the agent's future tasks; its past tasks keep their runtime.
UPDATE agent
SET name = coalesce(%(name)s::text, name),
    runtime_id = coalesce(%(runtime_id)s::uuid, runtime_id),
    archived_at = CASE WHEN %(archived)s::boolean IS NULL THEN archived_at
                       WHEN %(archived)s::boolean THEN coalesce(archived_at, now())
                       ELSE NULL END,
    updated_at = now()
WHERE id = %(id)s
RETURNING id, workspace_id, name, runtime_id, owner_id, rfc3339(archived_at) AS archived_at,
          rfc3339(created_at) AS created_at, rfc3339(updated_at) AS updated_at;
