-- The data model: users, workspaces and their members, runtimes, agents, issues, tasks, and
-- the usage that tasks report; access tokens. Table and column names are those of the
-- Multica platform's schema, which the API mirrors.

CREATE TABLE "user" (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL DEFAULT '',
    email      text NOT NULL UNIQUE,
    timezone   text NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspace (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    slug       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE member (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, user_id)
);

CREATE INDEX idx_member_user_id ON member (user_id);

CREATE TABLE agent_runtime (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    daemon_id        text NULL,
    name             text NOT NULL,
    runtime_mode     text NOT NULL CHECK (runtime_mode IN ('local', 'cloud')),
    provider         text NOT NULL,
    status           text NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
    device_info      text NOT NULL DEFAULT '',
    metadata         jsonb NOT NULL DEFAULT '{}',
    owner_id         uuid NULL REFERENCES "user" (id) ON DELETE SET NULL,
    last_seen_at     timestamptz NULL,
    timezone         text NOT NULL DEFAULT 'UTC',
    legacy_daemon_id text NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- Today's Multica: a display name set by a person (NULL: the daemon's `name`), who may
    -- bind agents to it ('private': its owner; 'public': any member), and the custom
    -- runtime profile it is an instance of.
    custom_name      text NULL,
    visibility       text NOT NULL DEFAULT 'private' CHECK (visibility IN ('private', 'public')),
    profile_id       uuid NULL,
    UNIQUE (workspace_id, daemon_id, provider)
);

CREATE INDEX idx_agent_runtime_workspace_id_created_at ON agent_runtime (workspace_id, created_at);

CREATE TABLE agent (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    name         text NOT NULL,
    runtime_id   uuid NOT NULL REFERENCES agent_runtime (id) ON DELETE RESTRICT,
    owner_id     uuid NULL REFERENCES "user" (id) ON DELETE SET NULL,
    archived_at  timestamptz NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE INDEX idx_agent_runtime_id ON agent (runtime_id);

-- A project groups issues of a workspace (today's Multica scopes its dashboard to one).
CREATE TABLE project (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_project_workspace_id ON project (workspace_id);

CREATE TABLE issue (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    title        text NOT NULL,
    number       integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    project_id   uuid NULL REFERENCES project (id) ON DELETE SET NULL
);

CREATE INDEX idx_issue_workspace_id_number ON issue (workspace_id, number);

CREATE INDEX idx_issue_project_id ON issue (project_id);

-- Issue numbers are per workspace; the counter row lock serialises concurrent creates.
CREATE TABLE issue_counter (
    workspace_id uuid PRIMARY KEY REFERENCES workspace (id) ON DELETE CASCADE,
    last_number  integer NOT NULL
);

CREATE TABLE agent_task_queue (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id     uuid NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    runtime_id   uuid NOT NULL REFERENCES agent_runtime (id) ON DELETE CASCADE,
    issue_id     uuid NULL REFERENCES issue (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'dispatched', 'running', 'completed', 'failed', 'cancelled')),
    started_at   timestamptz NULL,
    completed_at timestamptz NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    -- Why a failed task failed, as the daemon classified it ('' or NULL: nobody did).
    failure_reason text NULL,
    -- The agent CLI's session the task ran in: a daemon reports it when the task ends, an
    -- imported task carries its log's (docs/import.md).
    session_id   text NULL,
    -- Where a task of an agent CLI's own account came from: a log imported, or OpenTelemetry
    -- log events or metrics (docs/otlp.md); NULL: a daemon or the API.
    source       text NULL CHECK (source IN ('import:claude-code', 'import:codex',
                                             'otlp:log', 'otlp:metric'))
);

CREATE INDEX idx_agent_task_queue_agent_id ON agent_task_queue (agent_id);

CREATE INDEX idx_agent_task_queue_runtime_id_started_at ON agent_task_queue (runtime_id, started_at);

-- Partial: tasks without an issue (every imported one) are never looked up by it.
CREATE INDEX idx_agent_task_queue_issue_id ON agent_task_queue (issue_id)
    WHERE issue_id IS NOT NULL;

-- Which sources count a session (sources.sql: session_lock) is told by (session, source).
CREATE INDEX idx_agent_task_queue_session_id ON agent_task_queue (session_id, source)
    WHERE session_id IS NOT NULL;

CREATE TABLE task_usage (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id            uuid NOT NULL REFERENCES agent_task_queue (id) ON DELETE CASCADE,
    provider           text NOT NULL DEFAULT '',
    model              text NOT NULL,
    input_tokens       bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens      bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens  bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- The cost the provider reported for the row (USD); NULL: estimate it from prices.
    cost_usd           numeric(22, 10) NULL CHECK (cost_usd >= 0),
    -- INVARIANT: the workspace (of the task's agent), runtime and agent of the row's task,
    -- kept by the triggers of capture.sql, so that reports read this one table by index
    -- and every change to usage (insert, correction, delete, cascade, reassignment) shows
    -- on the usage row itself with its whole key.
    workspace_id       uuid NOT NULL,
    runtime_id         uuid NOT NULL,
    agent_id           uuid NOT NULL,
    -- Of cache_write_tokens, those cached for an hour (Anthropic prices them apart from
    -- 5-minute writes); 0 where not known. Kept so that they can be priced exactly.
    cache_write_1h_tokens bigint NOT NULL DEFAULT 0
        CHECK (cache_write_1h_tokens BETWEEN 0 AND cache_write_tokens),
    -- The agent CLI's own estimate of the row's cost at list prices (Claude Code's cost_usd
    -- over OpenTelemetry): not a bill, so never read as the row's cost.
    estimated_cost_usd numeric(22, 10) NULL CHECK (estimated_cost_usd >= 0),
    -- model before provider: the rows of a (task, model) pair are read by it (the
    -- task-count correction of reports and its sync), whatever a task's size.
    UNIQUE (task_id, model, provider)
);

CREATE INDEX idx_task_usage_created_at ON task_usage (created_at);

CREATE INDEX idx_task_usage_runtime_id_created_at ON task_usage (runtime_id, created_at);

CREATE INDEX idx_task_usage_workspace_id_created_at ON task_usage (workspace_id, created_at);

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

-- A browser signed in to the pages with a personal access token: the cookie holds a random
-- token, the row its hash. Revoking the access token (its row deleted) ends its sessions.
-- INVARIANT: a session authorises pages only; /api/* reads the Authorization header alone.
CREATE TABLE web_session (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash bytea NOT NULL UNIQUE,
    token_id   uuid NOT NULL REFERENCES api_token (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,  -- every form of the session carries it
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX idx_web_session_token_id ON web_session (token_id);

CREATE INDEX idx_web_session_expires_at ON web_session (expires_at);

CREATE FUNCTION caller_role(p_workspace_id uuid, p_user_id uuid, p_daemon_workspace_id uuid)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_daemon_workspace_id IS NOT NULL THEN
            CASE WHEN p_daemon_workspace_id = p_workspace_id THEN 'daemon' END
        ELSE (SELECT m.role FROM member m
              WHERE m.workspace_id = p_workspace_id AND m.user_id = p_user_id)
    END
$$;

-- A runtime with the caller's role in its own workspace (NULL role: the caller may not see
-- it). Read by the authentication of a route that names a runtime, in the same statement.
CREATE FUNCTION runtime_access(p_id uuid, p_user_id uuid, p_daemon_workspace_id uuid)
RETURNS TABLE (id uuid, workspace_id uuid, timezone text, owner_id uuid, daemon_id text,
               visibility text, role text)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.workspace_id, r.timezone, r.owner_id, r.daemon_id, r.visibility,
           caller_role(r.workspace_id, p_user_id, p_daemon_workspace_id)
    FROM agent_runtime r
    WHERE r.id = p_id
$$;

-- INVARIANT: only rows of the same workspace and provider merge, and only those with no
-- owner or owned by p_owner_id (NULL, a daemon token: ownerless ones only), so no caller
-- merges away a runtime someone else owns; agents and tasks move to the new row before the
-- old row is deleted, so its cascade removes nothing.
CREATE FUNCTION merge_legacy_runtimes(p_runtime_id uuid, p_legacy_ids text[], p_owner_id uuid)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_new agent_runtime%ROWTYPE;
    v_old record;
    v_merged integer := 0;
BEGIN
    SELECT * INTO STRICT v_new FROM agent_runtime WHERE id = p_runtime_id;
    FOR v_old IN
        SELECT r.id, r.daemon_id
        FROM agent_runtime r
        WHERE r.workspace_id = v_new.workspace_id
          AND r.provider = v_new.provider
          AND r.id <> p_runtime_id
          AND (r.owner_id IS NULL OR r.owner_id = p_owner_id)
          AND lower(r.daemon_id) IN (SELECT lower(x) FROM unnest(p_legacy_ids) AS x)
        ORDER BY r.created_at, r.id
        FOR UPDATE
    LOOP
        UPDATE agent SET runtime_id = p_runtime_id, updated_at = now() WHERE runtime_id = v_old.id;
        UPDATE agent_task_queue SET runtime_id = p_runtime_id WHERE runtime_id = v_old.id;
        UPDATE agent_runtime SET legacy_daemon_id = v_old.daemon_id, updated_at = now()
        WHERE id = p_runtime_id;
        DELETE FROM agent_runtime WHERE id = v_old.id;
        v_merged := v_merged + 1;
    END LOOP;
    RETURN v_merged;
END
$$;

-- A runtime's JSON as the API answers it (docs/api.md), rendered in one place.
CREATE FUNCTION launch_header(p_provider text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_provider
        WHEN 'claude' THEN 'claude (stream-json)'
        WHEN 'codex' THEN 'codex app-server'
        WHEN 'copilot' THEN 'copilot (json)'
        WHEN 'cursor' THEN 'cursor-agent (stream-json)'
        WHEN 'gemini' THEN 'gemini (stream-json)'
        WHEN 'hermes' THEN 'hermes acp'
        WHEN 'openclaw' THEN 'openclaw agent (json)'
        WHEN 'opencode' THEN 'opencode run (json)'
        WHEN 'pi' THEN 'pi (json mode)'
        WHEN 'kimi' THEN 'kimi acp'
        WHEN 'kiro' THEN 'kiro-cli acp'
        ELSE ''
    END
$$;

CREATE FUNCTION rfc3339(p_ts timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(p_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION runtime_json(r agent_runtime)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', r.id,
        'workspace_id', r.workspace_id,
        'daemon_id', r.daemon_id,
        'name', r.name,
        'custom_name', r.custom_name,
        'runtime_mode', r.runtime_mode,
        'provider', r.provider,
        'launch_header', launch_header(r.provider),
        'status', r.status,
        'device_info', r.device_info,
        'metadata', coalesce(r.metadata, '{}'::jsonb),
        'owner_id', r.owner_id,
        'visibility', r.visibility,
        'profile_id', r.profile_id,
        'timezone', r.timezone,
        'last_seen_at', rfc3339(r.last_seen_at),
        'created_at', rfc3339(r.created_at),
        'updated_at', rfc3339(r.updated_at)
    )
$$;
