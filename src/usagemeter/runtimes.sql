-- name: runtime_access
-- A runtime with the caller's role in its own workspace (NULL role: not visible).
SELECT r.id, r.workspace_id, r.timezone, r.owner_id,
       caller_role(r.workspace_id, %(user_id)s, %(daemon_workspace_id)s) AS role
FROM agent_runtime r
WHERE r.id = %(id)s;

-- name: list_runtimes
-- The workspace's runtimes (by id, else slug), oldest first; optionally only the caller's
-- own, or one. Each with its cost over the 7 local days before today in its own zone, and
-- the 7 days before.
SELECT runtime_json(r) AS runtime,
       usd(c.cost_7d) AS cost_7d_usd, usd(c.cost_prev_7d) AS cost_prev_7d_usd,
       coalesce(c.unpriced_7d, 0) AS unpriced_7d_tokens,
       coalesce(c.unpriced_prev_7d, 0) AS unpriced_prev_7d_tokens
FROM agent_runtime r
CROSS JOIN LATERAL (
    SELECT sum(u.cost_units) FILTER (WHERE u.date >= d.today - 7) AS cost_7d,
           sum(u.cost_units) FILTER (WHERE u.date < d.today - 7) AS cost_prev_7d,
           sum(u.unpriced_tokens) FILTER (WHERE u.date >= d.today - 7) AS unpriced_7d,
           sum(u.unpriced_tokens) FILTER (WHERE u.date < d.today - 7) AS unpriced_prev_7d
    FROM (SELECT (now() AT TIME ZONE r.timezone)::date AS today) d
    JOIN usage_report(usage_since(now(), r.timezone, 14), r.timezone,
                      p_runtime_id => r.id, p_by_date => true,
                      p_rollup => %(rollup)s) u ON u.date < d.today
) c
WHERE r.workspace_id = coalesce(%(workspace_id)s::uuid,
                               (SELECT w.id FROM workspace w WHERE w.slug = %(slug)s))
  AND (NOT %(mine)s OR r.owner_id = %(user_id)s)
  AND (%(runtime_id)s::uuid IS NULL OR r.id = %(runtime_id)s)
ORDER BY r.created_at, r.id;

-- name: set_runtime_timezone
UPDATE agent_runtime r
SET timezone = coalesce(%(timezone)s::text, r.timezone),
    updated_at = CASE WHEN %(timezone)s::text IS NULL THEN r.updated_at ELSE now() END
WHERE r.id = %(id)s
RETURNING runtime_json(r) AS runtime;

-- name: lock_runtime
SELECT id FROM agent_runtime WHERE id = %(id)s FOR UPDATE;

-- name: count_active_agents
SELECT count(*) AS n FROM agent WHERE runtime_id = %(id)s AND archived_at IS NULL;

-- name: delete_archived_agents
DELETE FROM agent WHERE runtime_id = %(id)s AND archived_at IS NOT NULL;

-- name: delete_runtime
-- Cascades the runtime's tasks and their usage.
DELETE FROM agent_runtime WHERE id = %(id)s;
