-- Access tokens, stored as SHA-256 digests only. A PAT belongs to a user; a daemon
-- token is bound to one workspace and acts as a member of it.

CREATE TABLE api_token (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text NOT NULL CHECK (kind IN ('pat', 'daemon')),
    token_hash   bytea NOT NULL UNIQUE,
    name         text NOT NULL DEFAULT '',
    user_id      uuid NULL REFERENCES "user" (id) ON DELETE CASCADE,
    workspace_id uuid NULL REFERENCES workspace (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NULL,
    CHECK ((kind = 'pat' AND user_id IS NOT NULL) OR (kind = 'daemon' AND workspace_id IS NOT NULL))
);

-- Issue numbers are per workspace; the counter row lock serialises concurrent creates.
CREATE TABLE issue_counter (
    workspace_id uuid PRIMARY KEY REFERENCES workspace (id) ON DELETE CASCADE,
    last_number  integer NOT NULL
);
