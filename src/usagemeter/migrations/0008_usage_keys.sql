-- Denormalised keys on task_usage: the workspace, runtime and agent of each row's task, so
-- that reports read one table by index and every change to usage (insert, correction,
-- delete, cascade, reassignment) is visible on the usage row itself with its full key.

ALTER TABLE task_usage
    ADD COLUMN workspace_id uuid,
    ADD COLUMN runtime_id uuid,
    ADD COLUMN agent_id uuid;

UPDATE task_usage u
SET workspace_id = a.workspace_id, runtime_id = t.runtime_id, agent_id = t.agent_id
FROM agent_task_queue t
JOIN agent a ON a.id = t.agent_id
WHERE t.id = u.task_id;

ALTER TABLE task_usage
    ALTER COLUMN workspace_id SET NOT NULL,
    ALTER COLUMN runtime_id SET NOT NULL,
    ALTER COLUMN agent_id SET NOT NULL;

CREATE INDEX idx_task_usage_runtime_id_created_at ON task_usage (runtime_id, created_at);
CREATE INDEX idx_task_usage_workspace_id_created_at ON task_usage (workspace_id, created_at);

-- INVARIANT: (workspace_id, runtime_id, agent_id) of a usage row are those of its task (the
-- workspace being the task's agent's). Whatever a client writes there is replaced.
CREATE FUNCTION fill_usage_keys()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.workspace_id, t.runtime_id, t.agent_id
    INTO NEW.workspace_id, NEW.runtime_id, NEW.agent_id
    FROM agent_task_queue t
    JOIN agent a ON a.id = t.agent_id
    WHERE t.id = NEW.task_id;
    IF NOT FOUND THEN
        -- The foreign key would say so after this trigger; say it the same way first.
        RAISE EXCEPTION 'task % of task_usage does not exist', NEW.task_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER trg_task_usage_keys
BEFORE INSERT OR UPDATE OF task_id, workspace_id, runtime_id, agent_id ON task_usage
FOR EACH ROW EXECUTE FUNCTION fill_usage_keys();

-- A task moved to another runtime or agent takes its usage along. (Touching a key column
-- is enough: trg_task_usage_keys rewrites all three from the task.)
CREATE FUNCTION move_task_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_usage SET runtime_id = NEW.runtime_id WHERE task_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_task_queue_move_usage
AFTER UPDATE OF runtime_id, agent_id ON agent_task_queue
FOR EACH ROW
WHEN (OLD.runtime_id IS DISTINCT FROM NEW.runtime_id OR OLD.agent_id IS DISTINCT FROM NEW.agent_id)
EXECUTE FUNCTION move_task_usage();

-- An agent moved to another workspace takes its tasks' usage along.
CREATE FUNCTION move_agent_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_usage SET workspace_id = NEW.workspace_id
    WHERE task_id IN (SELECT t.id FROM agent_task_queue t WHERE t.agent_id = NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_move_usage
AFTER UPDATE OF workspace_id ON agent
FOR EACH ROW
WHEN (OLD.workspace_id IS DISTINCT FROM NEW.workspace_id)
EXECUTE FUNCTION move_agent_usage();
