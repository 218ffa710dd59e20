-- Who may see a workspace: a member (their role), or a daemon token bound to it ('daemon').

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

-- The AgentRuntime JSON of API.md §4, rendered in one place.
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
        'runtime_mode', r.runtime_mode,
        'provider', r.provider,
        'launch_header', launch_header(r.provider),
        'status', r.status,
        'device_info', r.device_info,
        'metadata', coalesce(r.metadata, '{}'::jsonb),
        'owner_id', r.owner_id,
        'timezone', r.timezone,
        'last_seen_at', rfc3339(r.last_seen_at),
        'created_at', rfc3339(r.created_at),
        'updated_at', rfc3339(r.updated_at)
    )
$$;
