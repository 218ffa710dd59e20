-- name: runtime_access
-- A runtime with the caller's role in its own workspace (NULL role: not visible).
SELECT * FROM runtime_access(%(id)s, %(user_id)s, %(daemon_workspace_id)s);

-- name: list_runtimes
-- The workspace's runtimes, oldest first; optionally only the caller's own. Each with its
-- cost over the 7 local days before today in its own zone, and the 7 days before.
SELECT runtime_json(r) AS runtime, c.*
FROM agent_runtime r
CROSS JOIN LATERAL runtime_week_cost(r.id, r.timezone, %(rollup)s) c
WHERE r.workspace_id = %(workspace_id)s
  AND (NOT %(mine)s OR r.owner_id = %(user_id)s)
ORDER BY r.created_at, r.id;

-- name: runtimes_of_slug
-- list_runtimes of every runtime of the workspace named by its slug (the runtimes page,
-- which reads it with its viewer, before it knows the workspace's id).
SELECT runtime_json(r) AS runtime, c.*
FROM workspace w
JOIN agent_runtime r ON r.workspace_id = w.id
CROSS JOIN LATERAL runtime_week_cost(r.id, r.timezone, %(rollup)s) c
WHERE w.slug = %(slug)s
ORDER BY r.created_at, r.id;

-- name: one_runtime
-- list_runtimes of one runtime.
SELECT runtime_json(r) AS runtime, c.*
FROM agent_runtime r
CROSS JOIN LATERAL runtime_week_cost(r.id, r.timezone, %(rollup)s) c
WHERE r.id = %(runtime_id)s;

-- name: update_runtime
-- Set what is given (NULL: leave it): the zone, the visibility, and with %(set_name)s the
-- display name (NULL clears it); updated_at moves when anything was given.
UPDATE agent_runtime r
SET timezone = coalesce(%(timezone)s::text, r.timezone),
    visibility = coalesce(%(visibility)s::text, r.visibility),
    custom_name = CASE WHEN %(set_name)s THEN %(custom_name)s::text ELSE r.custom_name END,
    updated_at = CASE WHEN %(timezone)s::text IS NULL AND %(visibility)s::text IS NULL
                           AND NOT %(set_name)s
                      THEN r.updated_at ELSE now() END
WHERE r.id = %(id)s
RETURNING runtime_json(r) AS runtime;

-- name: rename_machine
-- The display name of every runtime of the machine (its daemon) in the workspace, or only
-- of those %(owner_id)s owns.
UPDATE agent_runtime r
SET custom_name = %(custom_name)s::text, updated_at = now()
WHERE r.workspace_id = %(workspace_id)s AND r.daemon_id = %(daemon_id)s
  AND (%(owner_id)s::uuid IS NULL OR r.owner_id = %(owner_id)s);

-- name: lock_runtime
SELECT id FROM agent_runtime WHERE id = %(id)s FOR UPDATE;

-- name: active_agents
-- The agents bound to a runtime and not archived (as GET /api/agents lists them), by name.
SELECT id, workspace_id, name, runtime_id, owner_id, rfc3339(archived_at) AS archived_at,
       rfc3339(created_at) AS created_at, rfc3339(updated_at) AS updated_at
FROM agent
WHERE runtime_id = %(id)s AND archived_at IS NULL
ORDER BY name COLLATE "C", id;

-- name: archive_agents
UPDATE agent SET archived_at = now(), updated_at = now()
WHERE runtime_id = %(id)s AND archived_at IS NULL;

-- name: delete_archived_agents
DELETE FROM agent WHERE runtime_id = %(id)s AND archived_at IS NOT NULL;

-- name: delete_runtime
-- Cascades the runtime's tasks and their usage.
DELETE FROM agent_runtime WHERE id = %(id)s;
