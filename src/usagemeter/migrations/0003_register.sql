-- Daemon registration: fold runtimes registered under legacy daemon ids into the new row.

-- INVARIANT: only rows of the same workspace and provider merge; agents and tasks move to
-- the new row before the old row is deleted, so its cascade removes nothing.
CREATE FUNCTION merge_legacy_runtimes(p_runtime_id uuid, p_legacy_ids text[])
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
