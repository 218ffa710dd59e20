-- name: list_workspaces
-- The workspaces the caller can see, with its role in each.
SELECT w.id, w.name, w.slug, r.role, rfc3339(w.created_at) AS created_at
FROM workspace w
CROSS JOIN LATERAL (SELECT caller_role(w.id, %(user_id)s, %(daemon_workspace_id)s) AS role) r
WHERE r.role IS NOT NULL
ORDER BY w.created_at, w.id;

-- name: create_workspace
INSERT INTO workspace (name, slug) VALUES (%(name)s, %(slug)s)
RETURNING id, name, slug, 'owner' AS role, rfc3339(created_at) AS created_at;

-- name: add_owner
INSERT INTO member (workspace_id, user_id, role) VALUES (%(workspace_id)s, %(user_id)s, 'owner');

-- name: list_members
-- The workspace's members, or only %(user_id)s when given.
SELECT u.id AS user_id, u.email, u.name, m.role, rfc3339(m.created_at) AS created_at
FROM member m JOIN "user" u ON u.id = m.user_id
WHERE m.workspace_id = %(workspace_id)s
  AND (%(user_id)s::uuid IS NULL OR m.user_id = %(user_id)s::uuid)
ORDER BY m.created_at, u.email COLLATE "C";

-- name: other_owners
SELECT count(*) AS n FROM member
WHERE workspace_id = %(workspace_id)s AND role = 'owner' AND user_id <> %(user_id)s;

-- name: lock_members
-- Membership changes of one workspace take turns (its row locked until commit), so checks
-- such as "another owner remains" hold when the change commits.
SELECT 1 FROM workspace WHERE id = %(workspace_id)s FOR UPDATE;

-- name: member_role
SELECT role FROM member WHERE workspace_id = %(workspace_id)s AND user_id = %(user_id)s;

-- name: delete_member
DELETE FROM member WHERE workspace_id = %(workspace_id)s AND user_id = %(user_id)s;

-- name: get_me
SELECT id, name, email, timezone, rfc3339(created_at) AS created_at FROM "user" WHERE id = %(user_id)s;

-- name: update_me
UPDATE "user"
SET name = coalesce(%(name)s::text, name),
    timezone = CASE WHEN %(set_timezone)s THEN %(timezone)s::text ELSE timezone END,
    updated_at = now()
WHERE id = %(user_id)s
RETURNING id, name, email, timezone, rfc3339(created_at) AS created_at;
