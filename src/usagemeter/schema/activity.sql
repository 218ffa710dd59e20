-- Activity: started tasks per local hour of started_at, all time, per runtime (the
-- /activity report).

-- The activity histogram (started tasks per local hour of started_at, all time) of every
-- runtime, kept per zone in use: an hour of day is not a union of UTC buckets for every
-- zone and date, but a count is additive, so changes are queued as deltas and folded: per
-- statement, runtime and quarter hour (usage_bin; every zone's hours are unions of them), the
-- tasks started less those gone.
-- INVARIANT: for a 'ready' zone, activity_rollup + the deltas still queued = the count of
-- started tasks, at every snapshot (writers queue, ticks fold, in one transaction each).
CREATE TABLE activity_zone (
    zone  text PRIMARY KEY,
    state text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'ready'))
);

CREATE TABLE activity_rollup (
    runtime_id uuid NOT NULL,
    zone       text NOT NULL,
    hour       smallint NOT NULL,
    tasks      bigint NOT NULL,
    PRIMARY KEY (runtime_id, zone, hour)
);

-- Counts folded down to 0, deleted by the next tick without scanning the table.
CREATE INDEX idx_activity_rollup_zero ON activity_rollup (runtime_id) WHERE tasks = 0;

CREATE TABLE activity_dirty (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runtime_id uuid NOT NULL,
    started_at timestamptz NOT NULL,
    delta      integer NOT NULL
);

CREATE INDEX idx_activity_dirty_runtime_id ON activity_dirty (runtime_id);

CREATE FUNCTION queue_activity()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, usage_bin(started_at), count(*)
        FROM new_task WHERE started_at IS NOT NULL
        GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, usage_bin(started_at), -count(*)
        FROM old_task WHERE started_at IS NOT NULL
        GROUP BY 1, 2;
    ELSE
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT d.runtime_id, usage_bin(d.started_at), sum(d.delta)
        FROM old_task o
        JOIN new_task n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.runtime_id, o.started_at, -1),
                                   (n.runtime_id, n.started_at, 1)) d(runtime_id, started_at, delta)
        WHERE (o.runtime_id, o.started_at) IS DISTINCT FROM (n.runtime_id, n.started_at)
          AND d.started_at IS NOT NULL
        GROUP BY 1, 2
        HAVING sum(d.delta) <> 0;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_task_queue_activity_insert
AFTER INSERT ON agent_task_queue
REFERENCING NEW TABLE AS new_task
FOR EACH STATEMENT EXECUTE FUNCTION queue_activity();

CREATE TRIGGER trg_agent_task_queue_activity_update
AFTER UPDATE ON agent_task_queue
REFERENCING OLD TABLE AS old_task NEW TABLE AS new_task
FOR EACH STATEMENT EXECUTE FUNCTION queue_activity();

CREATE TRIGGER trg_agent_task_queue_activity_delete
AFTER DELETE ON agent_task_queue
REFERENCING OLD TABLE AS old_task
FOR EACH STATEMENT EXECUTE FUNCTION queue_activity();

-- Fold up to p_limit queued deltas into every ready zone, then build new zones from the
-- tasks minus the deltas still queued (one statement, one snapshot).
CREATE FUNCTION activity_tick(p_limit integer)
RETURNS void
LANGUAGE sql AS $$
    WITH batch AS (
        DELETE FROM activity_dirty
        WHERE id IN (SELECT id FROM activity_dirty ORDER BY id LIMIT p_limit)
        RETURNING runtime_id, started_at, delta
    )
    INSERT INTO activity_rollup AS r (runtime_id, zone, hour, tasks)
    SELECT b.runtime_id, z.zone, extract(hour FROM b.started_at AT TIME ZONE z.zone), sum(b.delta)
    FROM batch b, activity_zone z
    WHERE z.state = 'ready'
    GROUP BY 1, 2, 3
    ON CONFLICT (runtime_id, zone, hour) DO UPDATE SET tasks = r.tasks + excluded.tasks;

    DELETE FROM activity_rollup WHERE tasks = 0;

    INSERT INTO activity_rollup (runtime_id, zone, hour, tasks)
    SELECT s.runtime_id, z.zone, extract(hour FROM s.started_at AT TIME ZONE z.zone),
           sum(s.delta)
    FROM (SELECT runtime_id, started_at, 1 AS delta FROM agent_task_queue
          WHERE started_at IS NOT NULL
          UNION ALL
          SELECT runtime_id, started_at, -delta FROM activity_dirty) s,
         activity_zone z
    WHERE z.state = 'new'
    GROUP BY 1, 2, 3
    HAVING sum(s.delta) <> 0;

    UPDATE activity_zone SET state = 'ready' WHERE state = 'new';
$$;
