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
-- workspace being the task's agent's). A writer may leave them out (plain SQL does): a row
-- trigger fills them. A writer that knows them (the ingest upsert, from the join it makes
-- anyway) passes them and skips that per-row lookup, which costs ~40% of insert
-- throughput; one join per statement then checks every written row.
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
BEFORE INSERT ON task_usage
FOR EACH ROW
WHEN (NEW.workspace_id IS NULL OR NEW.runtime_id IS NULL OR NEW.agent_id IS NULL)
EXECUTE FUNCTION fill_usage_keys();

CREATE TRIGGER trg_task_usage_keys_new_task
BEFORE UPDATE OF task_id ON task_usage
FOR EACH ROW
WHEN (OLD.task_id IS DISTINCT FROM NEW.task_id)
EXECUTE FUNCTION fill_usage_keys();

CREATE FUNCTION check_usage_keys()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid;
BEGIN
    SELECT n.task_id INTO v_task
    FROM written_usage n
    JOIN agent_task_queue t ON t.id = n.task_id
    JOIN agent a ON a.id = t.agent_id
    WHERE (n.workspace_id, n.runtime_id, n.agent_id)
          IS DISTINCT FROM (a.workspace_id, t.runtime_id, t.agent_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'usage of task % names another workspace, runtime or agent than its task',
            v_task USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_task_usage_keys_check_insert
AFTER INSERT ON task_usage
REFERENCING NEW TABLE AS written_usage
FOR EACH STATEMENT EXECUTE FUNCTION check_usage_keys();

CREATE TRIGGER trg_task_usage_keys_check_update
AFTER UPDATE ON task_usage
REFERENCING NEW TABLE AS written_usage
FOR EACH STATEMENT EXECUTE FUNCTION check_usage_keys();

-- A task moved to another runtime or agent takes its usage along.
CREATE FUNCTION move_task_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_usage
    SET runtime_id = NEW.runtime_id,
        agent_id = NEW.agent_id,
        workspace_id = (SELECT a.workspace_id FROM agent a WHERE a.id = NEW.agent_id)
    WHERE task_id = NEW.id;
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
