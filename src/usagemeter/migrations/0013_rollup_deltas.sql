-- The queue carries row deltas, not keys, so a tick costs O(changed rows) whatever the
-- history, and reads add the queued deltas to the segments instead of reading whole
-- (runtime, UTC day) keys raw. Workspace reports read their own segments without the
-- agent dimension.
--
-- Why deltas (ROLLUP.md suggests queueing keys and recomputing them): a key is a whole
-- runtime's UTC day, so recomputing it costs O(rows of that day), which grows with how busy
-- the runtime is, and one changed row made its whole day read raw until the next tick.
-- Segments are sums, and a sum takes a delta exactly: -old and +new of every changed row.
-- Recompute (a re-cut for new offsets, backfill) stays, as "task_usage minus the deltas
-- still queued" in one statement, which is the folded state at that snapshot.

-- No writer may commit between folding the old key queue and the new triggers.
LOCK TABLE task_usage IN SHARE MODE;
SELECT rollup_lock(true);
SELECT rollup_recompute(array_agg(runtime_id), array_agg(day))
FROM (SELECT DISTINCT runtime_id, day FROM usage_dirty) k;
DROP TABLE usage_dirty;

-- INVARIANT: for every segment key, usage_rollup + the deltas still queued = the sums of
-- task_usage, at every snapshot (writers queue, ticks fold, in one transaction each).
-- A delta is -1 times an old row or +1 times a new row, append-only (plain inserts, so
-- writers never contend on it).
CREATE TABLE usage_dirty (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runtime_id         uuid NOT NULL,
    workspace_id       uuid NOT NULL,
    agent_id           uuid NOT NULL,
    task_id            uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    created_at         timestamptz NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               smallint NOT NULL CHECK (rows IN (-1, 1)),
    queued_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_usage_dirty_runtime_id_created_at ON usage_dirty (runtime_id, created_at);
CREATE INDEX idx_usage_dirty_workspace_id_created_at ON usage_dirty (workspace_id, created_at);

CREATE OR REPLACE FUNCTION queue_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, task_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, task_id, provider, model, created_at,
               input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, 1
        FROM new_usage;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, task_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, task_id, provider, model, created_at,
               -input_tokens, -output_tokens, -cache_read_tokens, -cache_write_tokens,
               -cost_usd, -1
        FROM old_usage;
    ELSE
        -- Rows whose counted values changed (a repeated report only bumps updated_at).
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, task_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT d.*
        FROM old_usage o
        JOIN new_usage n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES
            (o.runtime_id, o.workspace_id, o.agent_id, o.task_id, o.provider, o.model,
             o.created_at, -o.input_tokens, -o.output_tokens, -o.cache_read_tokens,
             -o.cache_write_tokens, -o.cost_usd, -1),
            (n.runtime_id, n.workspace_id, n.agent_id, n.task_id, n.provider, n.model,
             n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
             n.cache_write_tokens, n.cost_usd, 1)) d
        WHERE (o.runtime_id, o.workspace_id, o.agent_id, o.task_id, o.provider, o.model,
               o.created_at, o.input_tokens, o.output_tokens, o.cache_read_tokens,
               o.cache_write_tokens, o.cost_usd)
              IS DISTINCT FROM
              (n.runtime_id, n.workspace_id, n.agent_id, n.task_id, n.provider, n.model,
               n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
               n.cache_write_tokens, n.cost_usd);
    END IF;
    RETURN NULL;
END
$$;

-- A delta may move usage between workspaces (an agent moved), so the workspace is a key.
ALTER TABLE usage_rollup DROP CONSTRAINT usage_rollup_pkey;
ALTER TABLE usage_rollup
    ADD PRIMARY KEY (runtime_id, seg_start, workspace_id, agent_id, provider, model, reported);
DROP INDEX idx_usage_rollup_workspace_id_seg_start;
-- Segments folded down to no rows, deleted by the tick without scanning the table.
CREATE INDEX idx_usage_rollup_empty ON usage_rollup (runtime_id) WHERE rows = 0;

-- INVARIANT: usage_rollup_ws = the sums of usage_rollup per (workspace, segment start,
-- provider, model, reported), kept by the same folds and recomputes. Workspace reports
-- read it: about a tenth of the rows (no agent and runtime dimension).
CREATE TABLE usage_rollup_ws (
    workspace_id       uuid NOT NULL,
    seg_start          timestamptz NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, seg_start, provider, model, reported)
);
CREATE INDEX idx_usage_rollup_ws_empty ON usage_rollup_ws (workspace_id) WHERE rows = 0;

INSERT INTO usage_rollup_ws
SELECT workspace_id, seg_start, provider, model, reported, sum(input_tokens),
       sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd),
       sum(rows)
FROM usage_rollup
GROUP BY 1, 2, 3, 4, 5;

CREATE OR REPLACE FUNCTION clear_rollup()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_rollup;
    DELETE FROM usage_rollup_ws;
    DELETE FROM usage_dirty;
    DELETE FROM usage_rebuild;
    RETURN NULL;
END
$$;

-- The cuts of every UTC day in seconds after 00:00 UTC, ascending (0 first).
CREATE FUNCTION usage_cuts()
RETURNS integer[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(DISTINCT (86400 - offset_s) % 86400 ORDER BY (86400 - offset_s) % 86400)
    FROM usage_offset
$$;

-- The start of the segment of an instant: the last cut at or before it.
CREATE FUNCTION seg_start(p_at timestamptz, p_cuts integer[])
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT utc_start(utc_day(p_at)) + p_cuts[width_bucket(
        floor(extract(epoch FROM p_at - utc_start(utc_day(p_at))))::int, p_cuts)]
        * interval '1 second'
$$;

-- Add signed rows (each a usage_rollup row: a segment key and sums, negative to subtract)
-- to both segment tables, and delete the segments left empty. Callers hold the rollup
-- lock.
CREATE FUNCTION rollup_add(p_rows usage_rollup[])
RETURNS void
LANGUAGE sql AS $$
    WITH s AS (
        SELECT runtime_id, seg_start, agent_id, provider, model, reported, workspace_id,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens,
               sum(cache_write_tokens) AS cache_write_tokens, sum(cost_usd) AS cost_usd,
               sum(rows) AS rows
        FROM unnest(p_rows)
        GROUP BY 1, 2, 3, 4, 5, 6, 7
        HAVING (sum(rows), sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
                sum(cache_write_tokens), coalesce(sum(cost_usd), 0)) <> (0, 0, 0, 0, 0, 0)
    ), seg AS (
        INSERT INTO usage_rollup AS r
        SELECT * FROM s
        ON CONFLICT (runtime_id, seg_start, workspace_id, agent_id, provider, model, reported)
        DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                      output_tokens = r.output_tokens + excluded.output_tokens,
                      cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                      cost_usd = r.cost_usd + excluded.cost_usd,
                      rows = r.rows + excluded.rows
    )
    INSERT INTO usage_rollup_ws AS r
    SELECT workspace_id, seg_start, provider, model, reported, sum(input_tokens),
           sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens), sum(cost_usd),
           sum(rows)
    FROM s
    GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (workspace_id, seg_start, provider, model, reported)
    DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                  output_tokens = r.output_tokens + excluded.output_tokens,
                  cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                  cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                  cost_usd = r.cost_usd + excluded.cost_usd,
                  rows = r.rows + excluded.rows;

    -- Only segments that are all zero: while a new offset is being built, a row folded
    -- before it was cut may be subtracted from a later segment, which then holds no rows
    -- but not nothing until the re-cut (reads stay exact: both segments lie in one local
    -- day of every ready offset).
    DELETE FROM usage_rollup
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
    DELETE FROM usage_rollup_ws
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
$$;

-- Bring usage_multi_provider up to date for some (task, model) pairs: a pair is listed
-- while task_usage has it under two or more providers. The tick passes the pairs of the
-- deltas it folds and a recompute those of its keys' rows: of two rows of a pair, the one
-- handled last sees the other committed (a read finds pairs among queued deltas itself).
CREATE FUNCTION multi_provider_sync(p_task_ids uuid[], p_models text[])
RETURNS void
LANGUAGE sql AS $$
    WITH pair AS (
        SELECT k.task_id, k.model,
               (SELECT count(DISTINCT o.provider) FROM task_usage o
                WHERE o.task_id = k.task_id AND o.model = k.model) > 1 AS multi
        FROM (SELECT DISTINCT * FROM unnest(p_task_ids, p_models)) k(task_id, model)
    ), removed AS (
        DELETE FROM usage_multi_provider m
        USING pair p
        WHERE NOT p.multi AND (m.task_id, m.model) = (p.task_id, p.model)
    )
    INSERT INTO usage_multi_provider (task_id, model)
    SELECT task_id, model FROM pair WHERE multi
    ON CONFLICT DO NOTHING;
$$;

-- Recompute the segments of (runtime, UTC day) keys, cut by every registered offset, as
-- task_usage minus the deltas still queued (the folded state at this one snapshot), and
-- add the difference to the segments as they are; syncs the multi-provider (task, model)
-- pairs among the keys' rows. Callers hold the rollup lock (rollup_lock): two recomputes
-- of one key from different snapshots could otherwise write the older answer last.
CREATE OR REPLACE FUNCTION rollup_recompute(p_runtime_ids uuid[], p_days date[])
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM rollup_add(ARRAY(
        WITH k AS (
            SELECT k.runtime_id, utc_start(k.day) AS lo, utc_start(k.day + 1) AS hi
            FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
        ), cut AS MATERIALIZED (  -- once, not per row
            SELECT usage_cuts() AS s
        )
        SELECT ROW(u.runtime_id, seg_start(u.created_at, cut.s), u.agent_id, u.provider,
                   u.model, u.cost_usd IS NOT NULL, u.workspace_id, u.input_tokens,
                   u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cost_usd,
                   1)::usage_rollup
        FROM k
        JOIN task_usage u ON u.runtime_id = k.runtime_id
            AND u.created_at >= k.lo AND u.created_at < k.hi
        CROSS JOIN cut
        UNION ALL
        SELECT ROW(d.runtime_id, seg_start(d.created_at, cut.s), d.agent_id, d.provider,
                   d.model, d.cost_usd IS NOT NULL, d.workspace_id, -d.input_tokens,
                   -d.output_tokens, -d.cache_read_tokens, -d.cache_write_tokens, -d.cost_usd,
                   -d.rows)::usage_rollup
        FROM k
        JOIN usage_dirty d ON d.runtime_id = k.runtime_id
            AND d.created_at >= k.lo AND d.created_at < k.hi
        CROSS JOIN cut
        UNION ALL
        SELECT ROW(r.runtime_id, r.seg_start, r.agent_id, r.provider, r.model, r.reported,
                   r.workspace_id, -r.input_tokens, -r.output_tokens, -r.cache_read_tokens,
                   -r.cache_write_tokens, -r.cost_usd, -r.rows)::usage_rollup
        FROM k
        JOIN usage_rollup r ON r.runtime_id = k.runtime_id
            AND r.seg_start >= k.lo AND r.seg_start < k.hi
    ));

    PERFORM multi_provider_sync(array_agg(u.task_id), array_agg(u.model))
    FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
    JOIN task_usage u ON u.runtime_id = k.runtime_id
        AND u.created_at >= utc_start(k.day) AND u.created_at < utc_start(k.day + 1);

    RETURN cardinality(p_runtime_ids);
END
$$;

-- One tick: fold up to p_limit queued deltas (oldest first) into the segments, re-cut up to
-- p_limit rebuild keys, and advance offset states. Returns the deltas folded plus the keys
-- re-cut, or NULL when another tick holds the lock.
CREATE OR REPLACE FUNCTION rollup(p_limit integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql
-- Its statements' costs are guesses (the batch size is unknown when planned), and JIT
-- compiling them cost more than running them.
SET jit = off AS $$
DECLARE
    v_rows usage_rollup[];
    v_task_ids uuid[];
    v_models text[];
    v_runtime_ids uuid[];
    v_days date[];
    v_done integer := 0;
BEGIN
    IF NOT rollup_lock(false) THEN
        RETURN NULL;
    END IF;

    WITH batch AS (
        -- = ANY(ARRAY(...)): probes by primary key, never a scan of a queue full of rows
        -- deleted by earlier ticks and not yet vacuumed.
        DELETE FROM usage_dirty
        WHERE id = ANY (ARRAY(SELECT id FROM usage_dirty ORDER BY id LIMIT p_limit))
        RETURNING *
    ), cut AS MATERIALIZED (  -- once, not per row
        SELECT usage_cuts() AS s
    )
    SELECT array_agg(ROW(b.runtime_id, seg_start(b.created_at, cut.s), b.agent_id, b.provider,
                         b.model, b.cost_usd IS NOT NULL, b.workspace_id, b.input_tokens,
                         b.output_tokens, b.cache_read_tokens, b.cache_write_tokens,
                         b.cost_usd, b.rows)::usage_rollup),
           array_agg(b.task_id), array_agg(b.model)
    INTO v_rows, v_task_ids, v_models
    FROM batch b, cut;
    PERFORM rollup_add(v_rows);
    PERFORM multi_provider_sync(v_task_ids, v_models);
    v_done := coalesce(cardinality(v_rows), 0);

    WITH batch AS (
        DELETE FROM usage_rebuild
        WHERE (runtime_id, day) IN (SELECT runtime_id, day FROM usage_rebuild LIMIT p_limit)
        RETURNING runtime_id, day
    )
    SELECT array_agg(runtime_id), array_agg(day) INTO v_runtime_ids, v_days FROM batch;
    v_done := v_done + coalesce(rollup_recompute(v_runtime_ids, v_days), 0);

    IF NOT EXISTS (SELECT FROM usage_rebuild) THEN
        UPDATE usage_offset SET state = 'ready' WHERE state = 'building';
        -- Start a round for new offsets: re-cut every key that has segments (deltas still
        -- queued are cut by every offset when they fold).
        IF EXISTS (SELECT FROM usage_offset WHERE state = 'new') THEN
            UPDATE usage_offset SET state = 'building' WHERE state = 'new';
            INSERT INTO usage_rebuild (runtime_id, day)
            SELECT DISTINCT runtime_id, utc_day(seg_start) FROM usage_rollup;
        END IF;
    END IF;

    PERFORM activity_tick(p_limit);

    UPDATE rollup_state SET ticks = ticks + 1, last_tick_at = now(), last_keys = v_done;
    RETURN v_done;
END
$$;

-- usage_report reads the queued deltas instead of whole pending days raw, workspace scopes
-- read usage_rollup_ws, and the local date of a segment or delta is found among the
-- window's local midnights (a binary search) instead of converting every instant.
DROP FUNCTION usage_report(timestamptz, text, uuid, uuid, uuid,
                           boolean, boolean, boolean, boolean, boolean, boolean, boolean);

-- Usage since p_since of one runtime, else one workspace, else one issue, grouped by the
-- chosen keys (a key not chosen is NULL): local date and hour in p_tz, agent, provider,
-- model.
--
-- Sources. Raw path (p_rollup false): every task_usage row in the window. Rollup path:
-- segments from p_since to rollup_end() plus the deltas queued in that span, and the raw
-- rows from rollup_end() on. A tick deletes deltas and adds them to segments in one
-- transaction, so at any snapshot every row is counted exactly once. p_rollup excludes
-- p_by_hour and p_issue_id (segments are not whole hours; an issue is not a key of them)
-- and, with p_count_tasks, requires p_by_model.
--
-- Pricing. Sources are summed into cells of one group, workspace, provider, model, UTC day
-- and "has a reported cost"; each cell is priced with the price in force on its UTC day in
-- its workspace, looked up once per (workspace, provider, model). Money is exact 1e-10 USD.
--
-- A group is returned when it has rows: k counts them (a delta counts +1 or -1).
-- task_count (with p_count_tasks, else 0) counts distinct tasks per group. A source row
-- carries n (tasks counted as rows) and task_id (counted once per group). Raw path: n = 0,
-- task_id set. Rollup path: every usage row counts as a task (one row per task, provider
-- and model; a delta counts +1 or -1), and the rows of multi-provider (task, model) pairs
-- are fixed up: -1 each, then +1 per task and group.
CREATE FUNCTION usage_report(p_since timestamptz, p_tz text,
                             p_runtime_id uuid DEFAULT NULL,
                             p_workspace_id uuid DEFAULT NULL,
                             p_issue_id uuid DEFAULT NULL,
                             p_by_date boolean DEFAULT false,
                             p_by_hour boolean DEFAULT false,
                             p_by_agent boolean DEFAULT false,
                             p_by_provider boolean DEFAULT false,
                             p_by_model boolean DEFAULT false,
                             p_count_tasks boolean DEFAULT false,
                             p_rollup boolean DEFAULT false)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
LANGUAGE sql STABLE AS $$
    WITH span AS (
        -- seg_end, and the local midnights of the dates from p_since's to seg_end's where
        -- each is the first instant of its date (else NULL: dates are then converted).
        SELECT e.seg_end, m.first, m.midnights
        FROM (SELECT rollup_end(p_tz, p_since, p_rollup) AS seg_end OFFSET 0) e  -- once
        CROSS JOIN LATERAL (
            SELECT min(d.d) AS first,
                   CASE WHEN bool_and((d.m AT TIME ZONE p_tz)::date = d.d
                                      AND ((d.m - interval '1 microsecond') AT TIME ZONE p_tz)::date
                                          = d.d - 1)
                        THEN array_agg(d.m ORDER BY d.d) END AS midnights
            FROM (SELECT CASE WHEN p_by_date AND e.seg_end > p_since
                              THEN (p_since AT TIME ZONE p_tz)::date END AS lo,
                         (e.seg_end AT TIME ZONE p_tz)::date AS hi) b
            CROSS JOIN LATERAL generate_series(0, b.hi - b.lo) g(i)
            CROSS JOIN LATERAL (SELECT b.lo + g.i AS d,
                                       (b.lo + g.i)::timestamp AT TIME ZONE p_tz AS m) d
        ) m
    ), raw AS (
        -- One branch per kind of scope, so that the scope is an index condition even when
        -- it comes from an outer query (GET /api/runtimes), and so is the time: span is
        -- read by scalar subqueries (a join with it would filter a scan of every row).
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NOT NULL AND u.runtime_id = p_runtime_id
          AND u.created_at >= greatest(p_since, (SELECT s.seg_end FROM span s))
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND u.workspace_id = p_workspace_id
          AND u.created_at >= greatest(p_since, (SELECT s.seg_end FROM span s))
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND p_workspace_id IS NULL
          AND u.task_id IN (SELECT t.id FROM agent_task_queue t WHERE t.issue_id = p_issue_id)
          AND u.created_at >= p_since
    ), queued AS (
        SELECT d.* FROM usage_dirty d
        WHERE p_rollup AND p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
          AND d.created_at >= p_since AND d.created_at < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT d.* FROM usage_dirty d
        WHERE p_rollup AND p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
          AND d.created_at >= p_since AND d.created_at < (SELECT s.seg_end FROM span s)
    ), multi AS (
        SELECT m.task_id, m.model FROM usage_multi_provider m WHERE p_rollup AND p_count_tasks
        UNION
        SELECT r.task_id, r.model
        FROM (SELECT task_id, provider, model FROM raw
              UNION ALL
              SELECT task_id, provider, model FROM queued WHERE rows > 0) r
        WHERE p_rollup AND p_count_tasks
          AND EXISTS (SELECT FROM task_usage o
                      WHERE o.task_id = r.task_id AND o.model = r.model
                        AND o.provider <> r.provider)
    ), source AS (
        SELECT r.created_at AS at, r.workspace_id, r.agent_id, r.provider, r.model,
               r.cost_usd IS NOT NULL AS reported, r.cost_usd,
               r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
               1 AS k,
               CASE WHEN p_rollup AND p_count_tasks THEN 1 ELSE 0 END AS n,
               CASE WHEN p_count_tasks AND NOT p_rollup THEN r.task_id END AS task_id
        FROM raw r
        UNION ALL
        SELECT d.created_at, d.workspace_id, d.agent_id, d.provider, d.model,
               d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows, CASE WHEN p_count_tasks THEN d.rows ELSE 0 END, NULL
        FROM queued d
        UNION ALL
        SELECT x.seg_start, x.workspace_id, x.agent_id, x.provider, x.model,
               x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows, CASE WHEN p_count_tasks THEN x.rows ELSE 0 END, NULL
        FROM usage_rollup x
        WHERE p_rollup AND p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT x.seg_start, x.workspace_id, NULL, x.provider, x.model,
               x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows, CASE WHEN p_count_tasks THEN x.rows ELSE 0 END, NULL
        FROM usage_rollup_ws x
        WHERE p_rollup AND p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT u.created_at, u.workspace_id, u.agent_id, u.provider, u.model,
               true, 0, 0, 0, 0, 0, 0, -1, u.task_id
        FROM multi m
        JOIN task_usage u ON u.task_id = m.task_id AND u.model = m.model
        WHERE u.created_at >= p_since
          AND u.runtime_id = coalesce(p_runtime_id, u.runtime_id)
          AND u.workspace_id = coalesce(p_workspace_id, u.workspace_id)
    ), keyed AS (
        SELECT s.*, utc_day(s.at) AS day,
               CASE WHEN NOT p_by_date THEN NULL
                    WHEN s.at < sp.seg_end AND sp.midnights IS NOT NULL
                    THEN sp.first + width_bucket(s.at, sp.midnights) - 1
                    ELSE (s.at AT TIME ZONE p_tz)::date END AS g_date,
               CASE WHEN p_by_hour THEN extract(hour FROM s.at AT TIME ZONE p_tz)::int
               END AS g_hour,
               CASE WHEN p_by_agent THEN s.agent_id END AS g_agent_id,
               CASE WHEN p_by_provider THEN s.provider END AS g_provider,
               CASE WHEN p_by_model THEN s.model END AS g_model
        FROM source s, span sp
    ), cell AS (
        SELECT r.g_date, r.g_hour, r.g_agent_id, r.g_provider, r.g_model,
               r.workspace_id, r.provider, r.model, r.day, r.reported,
               sum(r.input_tokens) AS input_tokens, sum(r.output_tokens) AS output_tokens,
               sum(r.cache_read_tokens) AS cache_read_tokens,
               sum(r.cache_write_tokens) AS cache_write_tokens,
               sum(r.cost_usd) AS cost_usd, sum(r.k) AS rows,
               sum(r.n) + count(*) FILTER (WHERE r.first) AS tasks
        FROM (
            SELECT k.*, false AS first FROM keyed k WHERE k.task_id IS NULL
            UNION ALL
            SELECT k.*, row_number() OVER (PARTITION BY k.g_date, k.g_hour, k.g_agent_id,
                                           k.g_provider, k.g_model, k.task_id) = 1
            FROM keyed k WHERE k.task_id IS NOT NULL
        ) r
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM cell) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    )
    SELECT c.g_date, c.g_hour, c.g_agent_id, c.g_provider, c.g_model,
           sum(c.input_tokens)::bigint, sum(c.output_tokens)::bigint,
           sum(c.cache_read_tokens)::bigint, sum(c.cache_write_tokens)::bigint,
           sum(c.tasks)::bigint,
           sum(usage_cost_units(c.cost_usd, c.input_tokens, c.output_tokens,
                                c.cache_read_tokens, c.cache_write_tokens, p.price)),
           sum(usage_unpriced_tokens(c.cost_usd, c.input_tokens, c.output_tokens,
                                     c.cache_read_tokens, c.cache_write_tokens, p.price))::bigint
    FROM cell c
    LEFT JOIN price p ON NOT c.reported AND p.valid @> c.day
        AND (p.workspace_id, p.provider, p.model) = (c.workspace_id, c.provider, c.model)
    GROUP BY c.g_date, c.g_hour, c.g_agent_id, c.g_provider, c.g_model
    HAVING sum(c.rows) <> 0
$$;
