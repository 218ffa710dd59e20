-- Sessions of the pages (web_session): signed in with a personal access token.

-- name: signin_token
-- The personal access token's row (daemon tokens sign no one in).
SELECT id FROM api_token WHERE token_hash = %(token_hash)s AND kind = 'pat';

-- name: create_session
-- A new session of the token; expired sessions of anyone go with the occasion.
WITH expired AS (
    DELETE FROM web_session WHERE expires_at < now()
)
INSERT INTO web_session (token_hash, token_id, csrf_token, expires_at)
VALUES (%(token_hash)s, %(token_id)s, %(csrf_token)s, now() + make_interval(days => %(days)s));

-- name: session_viewer
-- The signed-in user of a live session with the session's CSRF token, their role in the
-- workspace of %(slug)s (NULL: none, or no slug) and the workspaces they belong to (the
-- switcher): all a page needs to know of its viewer, in one statement.
SELECT s.id AS session_id, s.csrf_token, u.id AS user_id, u.email, u.name, u.timezone,
       w.id AS workspace_id, m.role,
       (SELECT coalesce(json_agg(json_build_object('slug', x.slug, 'name', x.name)
                                 ORDER BY x.created_at, x.id), '[]')
        FROM member mx JOIN workspace x ON x.id = mx.workspace_id
        WHERE mx.user_id = u.id) AS workspaces
FROM web_session s
JOIN api_token t ON t.id = s.token_id
JOIN "user" u ON u.id = t.user_id
LEFT JOIN workspace w ON w.slug = %(slug)s
LEFT JOIN member m ON m.workspace_id = w.id AND m.user_id = u.id
WHERE s.token_hash = %(token_hash)s AND s.expires_at > now();

-- name: delete_session
DELETE FROM web_session WHERE id = %(session_id)s;
