-- name: authenticate
-- The token's owner (and the user's zone); last_used_at is refreshed at most once a minute.
-- Given a runtime (the route names one), also that runtime with the owner's role in its
-- workspace (runtime_access), so that a runtime report takes one statement less.
WITH t AS (
    SELECT id, kind, user_id, workspace_id FROM api_token WHERE token_hash = %(token_hash)s
), touch AS (
    UPDATE api_token a SET last_used_at = now()
    FROM t
    WHERE a.id = t.id AND (a.last_used_at IS NULL OR a.last_used_at < now() - interval '1 minute')
)
SELECT t.kind, t.user_id, t.workspace_id AS token_workspace_id, u.timezone AS user_timezone,
       r.*
FROM t
LEFT JOIN "user" u ON u.id = t.user_id
LEFT JOIN LATERAL runtime_access(%(runtime_id)s::uuid, t.user_id,
                                 CASE WHEN t.kind = 'daemon' THEN t.workspace_id END) r ON true;

-- name: workspace_access
-- A workspace by id or slug, with the caller's role in it (NULL: no access).
SELECT w.id, w.slug, caller_role(w.id, %(user_id)s, %(daemon_workspace_id)s) AS role
FROM workspace w
WHERE w.id = coalesce(%(id)s::uuid, (SELECT s.id FROM workspace s WHERE s.slug = %(slug)s));

-- name: upsert_user
-- Users are found by email, compared without case or surrounding blanks.
INSERT INTO "user" (email, name) VALUES (lower(btrim(%(email)s)), %(name)s)
ON CONFLICT (email) DO UPDATE
    SET name = CASE WHEN excluded.name <> '' THEN excluded.name ELSE "user".name END,
        updated_at = now()
RETURNING id;

-- name: upsert_workspace
INSERT INTO workspace (name, slug) VALUES (%(slug)s, %(slug)s)
ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug
RETURNING id;

-- name: upsert_member
INSERT INTO member (workspace_id, user_id, role) VALUES (%(workspace_id)s, %(user_id)s, %(role)s)
ON CONFLICT (workspace_id, user_id) DO UPDATE SET role = excluded.role;

-- name: insert_token
INSERT INTO api_token (kind, token_hash, name, user_id, workspace_id)
VALUES (%(kind)s, %(token_hash)s, %(name)s, %(user_id)s, %(workspace_id)s);
