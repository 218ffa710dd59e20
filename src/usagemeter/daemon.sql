-- name: upsert_runtime
-- INVARIANT: timezone is written only when the row is created, so a reconnecting daemon
-- never overrides a zone the user PATCHed. A personal access token updates only a runtime
-- it owns or one without an owner (which it claims); a daemon token refreshes any runtime
-- of its workspace and never changes an owner. No row: the runtime is someone else's.
INSERT INTO agent_runtime AS r (workspace_id, daemon_id, provider, name, runtime_mode, status,
                                device_info, metadata, owner_id, last_seen_at, timezone,
                                profile_id)
VALUES (%(workspace_id)s, %(daemon_id)s, %(provider)s, %(name)s, 'local', %(status)s,
        %(device_info)s, %(metadata)s, %(owner_id)s, now(), %(timezone)s, %(profile_id)s)
ON CONFLICT (workspace_id, daemon_id, provider) DO UPDATE
SET name = excluded.name,
    profile_id = excluded.profile_id,
    status = excluded.status,
    device_info = excluded.device_info,
    metadata = excluded.metadata,
    owner_id = CASE WHEN %(set_owner)s THEN excluded.owner_id ELSE r.owner_id END,
    last_seen_at = now(),
    updated_at = now()
WHERE NOT %(set_owner)s OR r.owner_id IS NULL OR r.owner_id = excluded.owner_id
RETURNING r.id;

-- name: merge_legacy_runtimes
SELECT merge_legacy_runtimes(%(runtime_id)s, %(legacy_ids)s, %(owner_id)s) AS merged;

-- name: runtimes_json
-- The runtimes of %(ids)s as AgentRuntime JSON, in the order given.
SELECT runtime_json(r) AS runtime
FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS i (id, n)
JOIN agent_runtime r ON r.id = i.id
ORDER BY i.n;

-- name: daemon_workspaces
-- A daemon token's workspace, or every workspace the user belongs to: {id, name}.
SELECT w.id, w.name
FROM workspace w
WHERE w.id = %(daemon_workspace_id)s
   OR w.id IN (SELECT m.workspace_id FROM member m WHERE m.user_id = %(user_id)s)
ORDER BY w.created_at, w.id;
