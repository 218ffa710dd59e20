-- Log import (docs/import.md): the files `usagemeter import` has read, so that a file
-- unchanged since is not read again. A changed file is read whole again: every record it
-- holds has a fixed task id, so writing it again changes nothing but what is new.

CREATE TABLE import_file (
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    source       text NOT NULL CHECK (source IN ('import:claude-code', 'import:codex')),
    path         text NOT NULL,
    size         bigint NOT NULL,
    mtime_ns     bigint NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, source, path)
);

-- The advisory lock that imports into a workspace share and a daemon naming a session of it
-- takes alone, so that a session is never counted both from a daemon's reports and from its
-- log (docs/import.md).
CREATE FUNCTION import_lock(p_workspace_id uuid)
RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('usagemeter import ' || p_workspace_id, 0)
$$;
