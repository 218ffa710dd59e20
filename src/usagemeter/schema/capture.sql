-- Capture: what every write to usage and tasks leaves for the rollup, in the writer's own
-- transaction.
--
-- Usage rows carry the keys of their task (filled and checked here, moved when a task or
-- agent moves), every change to them queues deltas (statement-level triggers: a per-row
-- trigger cost about five times the ingest throughput), and the zones that reports are
-- asked in are registered so the tick builds their cuts and buckets.

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
    CROSS JOIN LATERAL (SELECT a.workspace_id, t.runtime_id, t.agent_id  -- an index probe
                        FROM agent_task_queue t
                        JOIN agent a ON a.id = t.agent_id
                        WHERE t.id = n.task_id
                        LIMIT 1) k
    WHERE (n.workspace_id, n.runtime_id, n.agent_id)
          IS DISTINCT FROM (k.workspace_id, k.runtime_id, k.agent_id)
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

-- The queue of usage deltas. INVARIANT: every committed change to task_usage commits, in
-- the same transaction, -1 times each old row and +1 times each new row here, summed per
-- statement, key and usage_bin (a quarter hour): so every bucket plus the deltas still
-- queued equals the sums of task_usage at every snapshot, and a batch of 10,000 rows of a
-- few agents and models queues a few rows. created_at: the bin; rows: the rows added less
-- those removed. Append-only (plain inserts, duplicates allowed), so writers never contend
-- on it.
CREATE TABLE usage_dirty (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runtime_id         uuid NOT NULL,
    workspace_id       uuid NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    created_at         timestamptz NOT NULL,
    input_tokens       numeric NOT NULL,
    output_tokens      numeric NOT NULL,
    cache_read_tokens  numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cost_usd           numeric NULL,
    rows               bigint NOT NULL,
    queued_at          timestamptz NOT NULL DEFAULT now(),
    -- Set by a tick that could not fold this workspace's deltas (rollup_state.last_error
    -- says why): later ticks pass them by until rollup_retry_held(); reads count them from
    -- the queue as any other, so they stay exact.
    held               boolean NOT NULL DEFAULT false
);

CREATE INDEX idx_usage_dirty_runtime_id_created_at ON usage_dirty (runtime_id, created_at);

CREATE INDEX idx_usage_dirty_workspace_id_created_at ON usage_dirty (workspace_id, created_at);

-- Each writer also keeps usage_multi_provider exact for the (task, model) pairs it wrote
-- (buckets.sql), so that no read has to look for them among the deltas. Writers of one task
-- take turns: the trigger locks the written tasks (in id order), then, in statements of
-- their own, whose snapshots see every row an earlier writer of those tasks committed (READ
-- COMMITTED, as every writer of usagemeter's own runs), finds the pairs that may have
-- changed and syncs them.
CREATE FUNCTION queue_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_task_ids uuid[];
    v_models text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, provider, model, usage_bin(created_at),
               sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
               sum(cache_write_tokens), sum(cost_usd), count(*)
        FROM new_usage
        GROUP BY 1, 2, 3, 4, 5, 6, cost_usd IS NOT NULL;
        -- Index probes, whatever the planner guesses of the tables' sizes (a hash join
        -- scanning task_usage whole made every insert cost as much as the table had rows).
        PERFORM FROM agent_task_queue
        WHERE id = ANY(ARRAY(SELECT task_id FROM new_usage)) ORDER BY id
        FOR NO KEY UPDATE;
        -- A new row makes its pair multi-provider only if another provider has it.
        SELECT array_agg(n.task_id), array_agg(n.model) INTO v_task_ids, v_models
        FROM new_usage n
        CROSS JOIN LATERAL (SELECT FROM task_usage o
                            WHERE o.task_id = n.task_id AND o.model = n.model
                              AND o.provider <> n.provider
                            LIMIT 1) other;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, provider, model, usage_bin(created_at),
               -sum(input_tokens), -sum(output_tokens), -sum(cache_read_tokens),
               -sum(cache_write_tokens), -sum(cost_usd), -count(*)
        FROM old_usage
        GROUP BY 1, 2, 3, 4, 5, 6, cost_usd IS NOT NULL;
        PERFORM FROM agent_task_queue
        WHERE id = ANY(ARRAY(SELECT task_id FROM old_usage)) ORDER BY id
        FOR NO KEY UPDATE;
        -- A row gone can only end a pair that is listed.
        SELECT array_agg(o.task_id), array_agg(o.model) INTO v_task_ids, v_models
        FROM old_usage o
        WHERE EXISTS (SELECT FROM usage_multi_provider m
                      WHERE m.task_id = o.task_id AND m.model = o.model);
    ELSE
        -- Rows whose counted values changed (a repeated report only bumps updated_at).
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT d.runtime_id, d.workspace_id, d.agent_id, d.provider, d.model,
               usage_bin(d.created_at), sum(d.input_tokens), sum(d.output_tokens),
               sum(d.cache_read_tokens), sum(d.cache_write_tokens), sum(d.cost_usd),
               sum(d.rows)
        FROM old_usage o
        JOIN new_usage n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES
            (o.runtime_id, o.workspace_id, o.agent_id, o.provider, o.model,
             o.created_at, -o.input_tokens, -o.output_tokens, -o.cache_read_tokens,
             -o.cache_write_tokens, -o.cost_usd, -1),
            (n.runtime_id, n.workspace_id, n.agent_id, n.provider, n.model,
             n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
             n.cache_write_tokens, n.cost_usd, 1))
            d(runtime_id, workspace_id, agent_id, provider, model, created_at, input_tokens,
              output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
        WHERE (o.runtime_id, o.workspace_id, o.agent_id, o.provider, o.model,
               o.created_at, o.input_tokens, o.output_tokens, o.cache_read_tokens,
               o.cache_write_tokens, o.cost_usd)
              IS DISTINCT FROM
              (n.runtime_id, n.workspace_id, n.agent_id, n.provider, n.model,
               n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
               n.cache_write_tokens, n.cost_usd)
        GROUP BY 1, 2, 3, 4, 5, 6, d.cost_usd IS NOT NULL;
        -- The pairs of rows that changed task, provider, model or scope, before and after.
        SELECT array_agg(p.task_id), array_agg(p.model) INTO v_task_ids, v_models
        FROM old_usage o
        JOIN new_usage n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.task_id, o.model), (n.task_id, n.model)) p(task_id, model)
        WHERE (o.task_id, o.provider, o.model, o.runtime_id, o.workspace_id)
              IS DISTINCT FROM (n.task_id, n.provider, n.model, n.runtime_id, n.workspace_id);
        PERFORM FROM agent_task_queue WHERE id IN (SELECT unnest(v_task_ids)) ORDER BY id
        FOR NO KEY UPDATE;
    END IF;
    IF v_task_ids IS NOT NULL THEN
        PERFORM multi_provider_sync(v_task_ids, v_models);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_task_usage_queue_insert
AFTER INSERT ON task_usage
REFERENCING NEW TABLE AS new_usage
FOR EACH STATEMENT EXECUTE FUNCTION queue_usage();

CREATE TRIGGER trg_task_usage_queue_update
AFTER UPDATE ON task_usage
REFERENCING OLD TABLE AS old_usage NEW TABLE AS new_usage
FOR EACH STATEMENT EXECUTE FUNCTION queue_usage();

CREATE TRIGGER trg_task_usage_queue_delete
AFTER DELETE ON task_usage
REFERENCING OLD TABLE AS old_usage
FOR EACH STATEMENT EXECUTE FUNCTION queue_usage();

CREATE FUNCTION clear_rollup()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_rollup;
    DELETE FROM usage_rollup_ws;
    DELETE FROM usage_day_ws;
    DELETE FROM usage_head_ws;
    DELETE FROM usage_day;
    UPDATE usage_day_zone SET ready = true WHERE NOT ready;  -- nothing left to rebuild
    DELETE FROM usage_dirty;
    DELETE FROM usage_rebuild;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_task_usage_truncate
AFTER TRUNCATE ON task_usage
FOR EACH STATEMENT EXECUTE FUNCTION clear_rollup();

-- Zones: every zone a runtime or user has, or a report was asked in, has its offsets (over
-- a year either side of today) registered as cuts from now on, and an activity histogram.
-- A new offset is cut in new folds at once and in older days by the tick's next rebuild
-- round; until then, reads in its zones are exact from raw rows for the affected span.
CREATE FUNCTION register_zone(p_zone text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_offset (offset_s)
    SELECT o FROM zone_offsets(p_zone, utc_day(now()) - 366, utc_day(now()) + 366) o
    ON CONFLICT DO NOTHING;
    INSERT INTO activity_zone (zone) VALUES (p_zone) ON CONFLICT DO NOTHING;
$$;

-- The offsets a workspace's reports added to the cuts (new offsets re-cut every tenant's
-- days, so one workspace may add at most 16: users in 8 zones with summer time fit).
CREATE TABLE usage_offset_workspace (
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    offset_s     integer NOT NULL,
    PRIMARY KEY (workspace_id, offset_s)
);

-- Register a zone a workspace's report was asked in, unless its offsets not registered
-- yet would take the workspace past 16 added offsets; false then (the zone's reads stay
-- exact, from segments and raw rows). Reports' zones in use already cost nothing.
CREATE FUNCTION register_report_zone(p_zone text, p_workspace_id uuid)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_new integer[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('usagemeter zones'),
                                  hashtext(p_workspace_id::text));
    v_new := ARRAY(SELECT o FROM zone_offsets(p_zone, utc_day(now()) - 366,
                                              utc_day(now()) + 366) o
                   WHERE NOT EXISTS (SELECT FROM usage_offset u WHERE u.offset_s = o));
    IF cardinality(v_new) > 0 THEN
        IF (SELECT count(*) FROM usage_offset_workspace w
            WHERE w.workspace_id = p_workspace_id) + cardinality(v_new) > 16 THEN
            RETURN false;
        END IF;
        INSERT INTO usage_offset_workspace (workspace_id, offset_s)
        SELECT p_workspace_id, o FROM unnest(v_new) o
        ON CONFLICT DO NOTHING;
    END IF;
    PERFORM register_zone(p_zone);
    RETURN true;
END
$$;

CREATE FUNCTION register_row_zone()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS NOT NULL THEN
        PERFORM register_zone(NEW.timezone);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_runtime_zone
AFTER INSERT OR UPDATE OF timezone ON agent_runtime
FOR EACH ROW EXECUTE FUNCTION register_row_zone();

CREATE TRIGGER trg_user_zone
AFTER INSERT OR UPDATE OF timezone ON "user"
FOR EACH ROW EXECUTE FUNCTION register_row_zone();

-- A new runtime has no usage yet: its buckets are ready. A runtime's new zone waits for a
-- tick to build its buckets; those of its zones before stay (they may be read still).
CREATE FUNCTION runtime_day_zone()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_day_zone (runtime_id, zone, ready)
    VALUES (NEW.id, NEW.timezone, TG_OP = 'INSERT')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_runtime_day_zone
AFTER INSERT OR UPDATE OF timezone ON agent_runtime
FOR EACH ROW EXECUTE FUNCTION runtime_day_zone();

-- A read adds a zone to a runtime's day buckets only while the runtime has fewer than 8
-- (its own, its former own ones, and those its daily report was read in first; a zone
-- change always adds the new own zone). A read in any other zone is exact from the
-- segments, as is a read in a zone whose buckets are not built yet. Without a bound, a query parameter could have
-- every runtime's buckets cut in each of the ~600 zones there are, each adding about one row
-- per key and local date. First reads in new zones at the same instant may each add one past
-- it: the bound is on storage, not a count to keep exact.
CREATE FUNCTION register_runtime_zone(p_runtime_id uuid, p_zone text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_day_zone (runtime_id, zone, ready)
    SELECT r.id, p_zone, false FROM agent_runtime r
    WHERE r.id = p_runtime_id
      AND (SELECT count(*) FROM usage_day_zone z WHERE z.runtime_id = r.id) < 8
    ON CONFLICT DO NOTHING;
$$;
