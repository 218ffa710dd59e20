-- The rollup (ROLLUP.md): exact, real-time usage buckets that reports read instead of
-- task_usage.
--
-- Buckets are *segments* of UTC days. Each UTC day is cut at 00:00 UTC and at the local
-- midnight of every UTC offset in use (the offsets of runtimes' and viewers' zones). A
-- segment holds the sums of one (runtime, agent, provider, model, reported-or-not) between
-- two consecutive cuts. So for a zone whose offsets are all cuts, every local day is an
-- exact union of segments, DST days included, and the local date of a segment is the local
-- date of its start; every segment lies in one UTC day, which has one price. A day has
-- about as many non-empty segments per key as there are cuts inside its busy hours, so the
-- storage grows with the offsets in use far slower than one day-bucket table per offset.

-- UTC offsets (seconds east) whose local midnights are cuts. 'new' offsets are cut by
-- every recompute; a rebuild round re-cuts the older days ('building') and then they are
-- 'ready' for reads.
CREATE TABLE usage_offset (
    offset_s integer PRIMARY KEY CHECK (offset_s > -86400 AND offset_s < 86400),
    state    text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'building', 'ready')),
    added_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO usage_offset (offset_s, state) VALUES (0, 'ready');

CREATE TABLE usage_rollup (
    runtime_id         uuid NOT NULL,
    seg_start          timestamptz NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    workspace_id       uuid NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,   -- sum of the reported costs (reported segments)
    rows               integer NOT NULL,
    PRIMARY KEY (runtime_id, seg_start, agent_id, provider, model, reported)
);
CREATE INDEX idx_usage_rollup_workspace_id_seg_start ON usage_rollup (workspace_id, seg_start);

-- INVARIANT: every committed change to task_usage commits, in the same transaction, an
-- entry naming the (workspace, runtime, UTC day) of each old and new row. Append-only:
-- plain inserts, duplicates allowed, so writers never contend on it.
CREATE TABLE usage_dirty (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL,
    runtime_id   uuid NOT NULL,
    day          date NOT NULL,
    queued_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_usage_dirty_runtime_id_day ON usage_dirty (runtime_id, day);
CREATE INDEX idx_usage_dirty_workspace_id_day ON usage_dirty (workspace_id, day);

-- (runtime, UTC day) keys still to be re-cut for offsets being built. Not pending for
-- reads: their segments are exact for the ready offsets.
CREATE TABLE usage_rebuild (
    runtime_id uuid NOT NULL,
    day        date NOT NULL,
    PRIMARY KEY (runtime_id, day)
);

-- (task, model) pairs reported under more than one provider (normally none). Segments
-- count rows; a read counts such a task once per group from its raw rows. Found by the
-- tick (which sees every committed row of a key it recomputes), so no writer races.
CREATE TABLE usage_multi_provider (
    task_id uuid NOT NULL REFERENCES agent_task_queue (id) ON DELETE CASCADE,
    model   text NOT NULL,
    PRIMARY KEY (task_id, model)
);

-- Health of the tick (one row).
CREATE TABLE rollup_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    ticks        bigint NOT NULL DEFAULT 0,
    last_tick_at timestamptz NULL,
    last_keys    integer NOT NULL DEFAULT 0
);
INSERT INTO rollup_state DEFAULT VALUES;

-- The activity histogram (started tasks per local hour of started_at, all time) of every
-- runtime, kept per zone in use: an hour of day is not a union of UTC buckets for every
-- zone and date, but a count is additive, so changes are queued as +1/-1 deltas and folded.
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
    delta      smallint NOT NULL
);
CREATE INDEX idx_activity_dirty_runtime_id ON activity_dirty (runtime_id);

CREATE FUNCTION queue_activity()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, started_at, 1 FROM new_task WHERE started_at IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, started_at, -1 FROM old_task WHERE started_at IS NOT NULL;
    ELSE
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT d.runtime_id, d.started_at, d.delta
        FROM old_task o
        JOIN new_task n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.runtime_id, o.started_at, -1),
                                   (n.runtime_id, n.started_at, 1)) d(runtime_id, started_at, delta)
        WHERE (o.runtime_id, o.started_at) IS DISTINCT FROM (n.runtime_id, n.started_at)
          AND d.started_at IS NOT NULL;
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

-- 00:00 UTC of a date.
CREATE FUNCTION utc_start(p_day date)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_day::timestamp AT TIME ZONE 'UTC'
$$;

-- The UTC offsets (seconds) of a zone at every local midnight and noon of the dates from
-- p_from - 1 to p_to + 1: every offset at which its local date changes in that span.
CREATE FUNCTION zone_offsets(p_zone text, p_from date, p_to date)
RETURNS SETOF integer
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT extract(epoch FROM t.local - (t.local AT TIME ZONE p_zone) AT TIME ZONE 'UTC')::int
    FROM generate_series((p_from - 1)::timestamp, (p_to + 1)::timestamp, interval '12 hours') t(local)
$$;

-- Make a zone's offsets (over a year either side of today) cuts from now on.
CREATE FUNCTION register_zone(p_zone text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_offset (offset_s)
    SELECT o FROM zone_offsets(p_zone, utc_day(now()) - 366, utc_day(now()) + 366) o
    ON CONFLICT DO NOTHING;
    INSERT INTO activity_zone (zone) VALUES (p_zone) ON CONFLICT DO NOTHING;
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

-- Where segments may serve a read in p_tz from p_since: up to local midnight after
-- tomorrow, when every offset of p_tz at a date change in that span is ready; else
-- nowhere (returns p_since). Usage at or after the returned instant is read raw.
CREATE FUNCTION rollup_end(p_tz text, p_since timestamptz, p_enabled boolean)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_enabled AND isfinite(p_since) AND NOT EXISTS (
                    SELECT FROM zone_offsets(p_tz, (p_since AT TIME ZONE p_tz)::date, e.d) o
                    WHERE NOT EXISTS (SELECT FROM usage_offset x
                                      WHERE x.offset_s = o AND x.state = 'ready'))
                THEN greatest(p_since, e.d::timestamp AT TIME ZONE p_tz)
                ELSE p_since END
    FROM (SELECT (now() AT TIME ZONE p_tz)::date + 2 AS d) e
$$;

-- Queue the keys of changed usage rows.
CREATE FUNCTION queue_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO usage_dirty (workspace_id, runtime_id, day)
        SELECT DISTINCT workspace_id, runtime_id, utc_day(created_at) FROM new_usage;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO usage_dirty (workspace_id, runtime_id, day)
        SELECT DISTINCT workspace_id, runtime_id, utc_day(created_at) FROM old_usage;
    ELSE
        INSERT INTO usage_dirty (workspace_id, runtime_id, day)
        SELECT workspace_id, runtime_id, utc_day(created_at) FROM old_usage
        UNION
        SELECT workspace_id, runtime_id, utc_day(created_at) FROM new_usage;
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
    DELETE FROM usage_dirty;
    DELETE FROM usage_rebuild;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_task_usage_truncate
AFTER TRUNCATE ON task_usage
FOR EACH STATEMENT EXECUTE FUNCTION clear_rollup();

-- Recompute the segments of (runtime, UTC day) keys from task_usage, cut by every
-- registered offset, and note multi-provider (task, model) pairs among their rows.
-- Callers hold the rollup lock (rollup_lock): two recomputes of one key from different
-- snapshots could otherwise write the older answer last.
CREATE FUNCTION rollup_recompute(p_runtime_ids uuid[], p_days date[])
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_rollup r
    USING unnest(p_runtime_ids, p_days) k(runtime_id, day)
    WHERE r.runtime_id = k.runtime_id
      AND r.seg_start >= utc_start(k.day) AND r.seg_start < utc_start(k.day + 1);

    INSERT INTO usage_rollup (runtime_id, seg_start, agent_id, provider, model, reported,
                              workspace_id, input_tokens, output_tokens, cache_read_tokens,
                              cache_write_tokens, cost_usd, rows)
    -- The cuts of a day in seconds after 00:00 UTC, ascending (0 first); a row's segment
    -- starts at the last cut at or before it.
    WITH cut AS (
        SELECT array_agg(DISTINCT (86400 - offset_s) % 86400 ORDER BY (86400 - offset_s) % 86400)
               AS s
        FROM usage_offset
    )
    SELECT u.runtime_id,
           utc_start(k.day) + c.s[width_bucket(
               floor(extract(epoch FROM u.created_at - utc_start(k.day)))::int, c.s)]
               * interval '1 second' AS seg_start,
           u.agent_id, u.provider, u.model, u.cost_usd IS NOT NULL,
           u.workspace_id, sum(u.input_tokens), sum(u.output_tokens),
           sum(u.cache_read_tokens), sum(u.cache_write_tokens), sum(u.cost_usd), count(*)
    FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
    JOIN task_usage u ON u.runtime_id = k.runtime_id
        AND u.created_at >= utc_start(k.day) AND u.created_at < utc_start(k.day + 1)
    CROSS JOIN cut c
    GROUP BY 1, 2, 3, 4, 5, 6, 7;

    INSERT INTO usage_multi_provider (task_id, model)
    SELECT DISTINCT u.task_id, u.model
    FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
    JOIN task_usage u ON u.runtime_id = k.runtime_id
        AND u.created_at >= utc_start(k.day) AND u.created_at < utc_start(k.day + 1)
    WHERE EXISTS (SELECT FROM task_usage o
                  WHERE o.task_id = u.task_id AND o.model = u.model AND o.provider <> u.provider)
    ON CONFLICT DO NOTHING;

    RETURN cardinality(p_runtime_ids);
END
$$;

-- The one lock under which the rollup is written (transaction-scoped: a cancelled
-- statement cannot leak it).
CREATE FUNCTION rollup_lock(p_wait boolean)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_wait THEN
        PERFORM pg_advisory_xact_lock(hashtext('usagemeter rollup'));
        RETURN true;
    END IF;
    RETURN pg_try_advisory_xact_lock(hashtext('usagemeter rollup'));
END
$$;

-- One tick: recompute the keys of up to p_limit queue entries (oldest first), then up to
-- p_limit rebuild keys, and advance offset states. Returns the keys recomputed, or NULL
-- when another tick holds the lock.
CREATE FUNCTION rollup(p_limit integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_runtime_ids uuid[];
    v_days date[];
    v_keys integer := 0;
BEGIN
    IF NOT rollup_lock(false) THEN
        RETURN NULL;
    END IF;

    WITH batch AS (
        DELETE FROM usage_dirty
        WHERE id IN (SELECT id FROM usage_dirty ORDER BY id LIMIT p_limit)
        RETURNING runtime_id, day
    )
    SELECT array_agg(runtime_id), array_agg(day) INTO v_runtime_ids, v_days
    FROM (SELECT DISTINCT runtime_id, day FROM batch) k;
    v_keys := v_keys + coalesce(rollup_recompute(v_runtime_ids, v_days), 0);

    WITH batch AS (
        DELETE FROM usage_rebuild
        WHERE (runtime_id, day) IN (SELECT runtime_id, day FROM usage_rebuild LIMIT p_limit)
        RETURNING runtime_id, day
    )
    SELECT array_agg(runtime_id), array_agg(day) INTO v_runtime_ids, v_days FROM batch;
    v_keys := v_keys + coalesce(rollup_recompute(v_runtime_ids, v_days), 0);

    IF NOT EXISTS (SELECT FROM usage_rebuild) THEN
        UPDATE usage_offset SET state = 'ready' WHERE state = 'building';
        -- Start a round for new offsets: re-cut every key that has segments (a key with
        -- usage but no segments is queued and will be cut with them).
        IF EXISTS (SELECT FROM usage_offset WHERE state = 'new') THEN
            UPDATE usage_offset SET state = 'building' WHERE state = 'new';
            INSERT INTO usage_rebuild (runtime_id, day)
            SELECT DISTINCT runtime_id, utc_day(seg_start) FROM usage_rollup;
        END IF;
    END IF;

    PERFORM activity_tick(p_limit);

    UPDATE rollup_state SET ticks = ticks + 1, last_tick_at = now(), last_keys = v_keys;
    RETURN v_keys;
END
$$;

-- Segments for the usage and zones already present.
SELECT register_zone(z) FROM (SELECT timezone FROM agent_runtime
                              UNION SELECT timezone FROM "user" WHERE timezone IS NOT NULL) t(z);
UPDATE usage_offset SET state = 'ready';
SELECT activity_tick(0);
SELECT rollup_recompute(array_agg(runtime_id), array_agg(day))
FROM (SELECT DISTINCT runtime_id, utc_day(created_at) AS day FROM task_usage) k;
