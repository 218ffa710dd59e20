-- Usage from the agent CLIs' own accounts (docs/import.md, docs/otlp.md): log files imported,
-- and OpenTelemetry sent to /v1/logs and /v1/metrics.

-- The files `usagemeter import` has read, so that a file unchanged since is not read again.
-- A changed file is read whole again: every record it holds has a fixed task id, so writing
-- it again changes nothing but what is new.
CREATE TABLE import_file (
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    source       text NOT NULL CHECK (source IN ('import:claude-code', 'import:codex')),
    path         text NOT NULL,
    size         bigint NOT NULL,
    mtime_ns     bigint NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, source, path)
);

-- The last point of each cumulative OpenTelemetry counter of usage, so that only what it
-- grew by counts: a series is a metric's attributes and start time, so a restarted exporter
-- starts a new one.
CREATE TABLE otlp_series (
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    series       text NOT NULL,  -- a digest of the metric, its attributes and start time
    time_ns      bigint NOT NULL,
    value        double precision NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, series)
);

-- INVARIANT: a session is counted from one source only, the highest of: a daemon, then
-- OpenTelemetry log events, then OpenTelemetry metrics, then an imported log. Writers of a
-- source share this lock per workspace; one that deletes a lower source's tasks of a session
-- (a daemon naming a session, OpenTelemetry seeing one first) takes it alone, so that no
-- lower source is writing that session meanwhile.
CREATE FUNCTION session_lock(p_workspace_id uuid)
RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('usagemeter sessions ' || p_workspace_id, 0)
$$;
