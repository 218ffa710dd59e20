-- name: list_issues
SELECT id, workspace_id, title, number, rfc3339(created_at) AS created_at, project_id
FROM issue
WHERE workspace_id = %(workspace_id)s
ORDER BY number, created_at, id;

-- name: create_issue
-- Numbers count up per workspace; the counter row serialises concurrent creates.
WITH n AS (
    INSERT INTO issue_counter (workspace_id, last_number) VALUES (%(workspace_id)s, 1)
    ON CONFLICT (workspace_id) DO UPDATE SET last_number = issue_counter.last_number + 1
    RETURNING last_number
)
INSERT INTO issue (workspace_id, title, number, project_id)
SELECT %(workspace_id)s, %(title)s, n.last_number, %(project_id)s FROM n
RETURNING id, workspace_id, title, number, rfc3339(created_at) AS created_at, project_id;

-- name: issue_access
SELECT i.id, i.workspace_id,
       caller_role(i.workspace_id, %(user_id)s, %(daemon_workspace_id)s) AS role
FROM issue i
WHERE i.id = %(id)s;

-- name: delete_issue
-- Cascades the issue's tasks and their usage.
DELETE FROM issue WHERE id = %(id)s;

-- name: list_projects
SELECT id, workspace_id, name, rfc3339(created_at) AS created_at
FROM project
WHERE workspace_id = %(workspace_id)s
ORDER BY created_at, id;

-- name: create_project
INSERT INTO project (workspace_id, name)
VALUES (%(workspace_id)s, %(name)s)
RETURNING id, workspace_id, name, rfc3339(created_at) AS created_at;

-- name: project_of_workspace
SELECT id FROM project WHERE id = %(id)s AND workspace_id = %(workspace_id)s;
