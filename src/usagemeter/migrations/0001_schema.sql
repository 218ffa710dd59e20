-- The data model of API.md §1. Table and column names are part of the contract.

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

CREATE TABLE issue (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    title        text NOT NULL,
    number       integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_issue_workspace_id_number ON issue (workspace_id, number);

CREATE TABLE agent_task_queue (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id     uuid NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    runtime_id   uuid NOT NULL REFERENCES agent_runtime (id) ON DELETE CASCADE,
    issue_id     uuid NULL REFERENCES issue (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'dispatched', 'running', 'completed', 'failed', 'cancelled')),
    started_at   timestamptz NULL,
    completed_at timestamptz NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_agent_task_queue_agent_id ON agent_task_queue (agent_id);
CREATE INDEX idx_agent_task_queue_runtime_id_started_at ON agent_task_queue (runtime_id, started_at);
CREATE INDEX idx_agent_task_queue_issue_id ON agent_task_queue (issue_id);

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
    UNIQUE (task_id, provider, model)
);
CREATE INDEX idx_task_usage_created_at ON task_usage (created_at);
