-- The rollup's tables: exact sums that reports read instead of task_usage.
--
-- Every table here is kept by the tick (tick.sql) from the deltas that capture.sql queues,
-- and each has the same invariant: its rows plus the deltas still queued equal the sums of
-- task_usage at every snapshot, so a read that adds the queued deltas is exact whatever
-- the tick has done. Rows folded down to nothing are deleted by the next tick through the
-- partial "empty" indexes, without scanning a table. See docs/rollup.md.
--
-- INVARIANT: token sums are numeric, so a bucket holds the exact sum of any rows task_usage
-- can store (each value up to 2^63 - 1, any number of them) and a fold never overflows: one
-- workspace's rows can neither fail a report nor stop the tick for everyone.

-- Segments: sums per (runtime, segment start, workspace, agent, provider, model, whether
-- the rows' cost was reported). The workspace is part of the key because a change may move
-- usage between workspaces (an agent moved).
-- INVARIANT: for every key, usage_rollup + the deltas still queued in usage_dirty = the
-- sums of task_usage, at every snapshot (writers queue, ticks fold, each in one
-- transaction). cost_usd sums the reported costs (reported rows only).
CREATE TABLE usage_rollup (
    runtime_id         uuid NOT NULL,
    seg_start          timestamptz NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    workspace_id       uuid NOT NULL,
    input_tokens       numeric NOT NULL,
    output_tokens      numeric NOT NULL,
    cache_read_tokens  numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cost_usd           numeric NULL,   -- sum of the reported costs (reported segments)
    rows               integer NOT NULL,
    PRIMARY KEY (runtime_id, seg_start, workspace_id, agent_id, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
);

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
    input_tokens       numeric NOT NULL,
    output_tokens      numeric NOT NULL,
    cache_read_tokens  numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, seg_start, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
);

CREATE INDEX idx_usage_rollup_ws_empty ON usage_rollup_ws (workspace_id) WHERE rows = 0;

-- The zones each runtime's day buckets are cut in: its own, its former own ones, and
-- those its daily report was read in (at most 8, see register_runtime_zone). ready: that
-- zone's buckets hold every folded row of the runtime; false from the zone's registration
-- until a tick has built them (reads in the meantime use the segments).
CREATE TABLE usage_day_zone (
    runtime_id uuid NOT NULL,
    zone       text NOT NULL,
    ready      boolean NOT NULL,
    PRIMARY KEY (runtime_id, zone)
);

-- Day buckets: a runtime's sums per local date in one of its zones and UTC day (prices
-- are per UTC day, so a local date is one or two buckets per key; the daily rhythm is in
-- the runtime's zone and its nights, where UTC midnight falls for most zones, are quiet).
-- A runtime report by date in that zone reads one bucket per key and date instead of the
-- day's segments.
-- INVARIANT: for a ready (runtime, zone), usage_day + the deltas still queued = the sums of
-- task_usage per key, at every snapshot (the tick folds both in one transaction).
CREATE TABLE usage_day (
    runtime_id         uuid NOT NULL,
    day                date NOT NULL,   -- local date in `zone`
    utc_day            date NOT NULL,
    workspace_id       uuid NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       numeric NOT NULL,
    output_tokens      numeric NOT NULL,
    cache_read_tokens  numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    zone               text NOT NULL,
    PRIMARY KEY (runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
);

CREATE INDEX idx_usage_day_empty ON usage_day (runtime_id) WHERE rows = 0;

-- INVARIANT: usage_day_ws = the sums of usage_rollup_ws per (workspace, UTC day of the
-- segment, provider, model, reported): 00:00 UTC is always a cut, so a segment lies in one
-- UTC day. rollup_add, which writes both, keeps it.
CREATE TABLE usage_day_ws (
    workspace_id       uuid NOT NULL,
    day                date NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       numeric NOT NULL,
    output_tokens      numeric NOT NULL,
    cache_read_tokens  numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, day, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows)
);

CREATE INDEX idx_usage_day_ws_empty ON usage_day_ws (workspace_id) WHERE rows = 0;

-- INVARIANT: for every cut in usage_head_cut, usage_head_ws = the sums of usage_rollup_ws
-- per (workspace, UTC day of the segment, provider, model, reported) over the segments
-- whose day_second is below the cut. rollup_add, which writes the segments, keeps it.
CREATE TABLE usage_head_ws (
    workspace_id       uuid NOT NULL,
    cut                integer NOT NULL,
    day                date NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       numeric NOT NULL,
    output_tokens      numeric NOT NULL,
    cache_read_tokens  numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, cut, day, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows)
);

CREATE INDEX idx_usage_head_ws_empty ON usage_head_ws (workspace_id) WHERE rows = 0;

-- (runtime, UTC day) keys still to be re-cut for offsets being built. Not pending for
-- reads: their segments are exact for the ready offsets.
CREATE TABLE usage_rebuild (
    runtime_id uuid NOT NULL,
    day        date NOT NULL,
    PRIMARY KEY (runtime_id, day)
);

-- (task, model) pairs reported under more than one provider (normally none). Segments
-- count rows; a read counts such a task once per group from its raw rows.
-- INVARIANT: at every snapshot this lists exactly the pairs of task_usage with two or more
-- providers, with the runtime_id and workspace_id of their rows (so that a report reads the
-- pairs of its own scope only): every write to task_usage syncs the pairs it touched, in its
-- own transaction (queue_usage).
CREATE TABLE usage_multi_provider (
    task_id      uuid NOT NULL REFERENCES agent_task_queue (id) ON DELETE CASCADE,
    model        text NOT NULL,
    runtime_id   uuid NOT NULL,
    workspace_id uuid NOT NULL,
    PRIMARY KEY (task_id, model)
);

CREATE INDEX idx_usage_multi_provider_runtime_id ON usage_multi_provider (runtime_id);

CREATE INDEX idx_usage_multi_provider_workspace_id ON usage_multi_provider (workspace_id);

-- Bring usage_multi_provider up to date for some (task, model) pairs: a pair is listed
-- while task_usage has it under two or more providers. Called by writers only (queue_usage),
-- holding the pairs' tasks locked: a sync from any other snapshot could undo a writer's.
CREATE FUNCTION multi_provider_sync(p_task_ids uuid[], p_models text[])
RETURNS void
LANGUAGE sql AS $$
    WITH pair AS (
        SELECT k.task_id, k.model, o.providers > 1 AS multi, o.runtime_id, o.workspace_id
        FROM (SELECT DISTINCT * FROM unnest(p_task_ids, p_models)) k(task_id, model)
        CROSS JOIN LATERAL (
            -- every row of a task has the task's runtime and workspace
            SELECT count(DISTINCT o.provider) AS providers,
                   (array_agg(o.runtime_id))[1] AS runtime_id,
                   (array_agg(o.workspace_id))[1] AS workspace_id
            FROM task_usage o
            WHERE o.task_id = k.task_id AND o.model = k.model
        ) o
    ), removed AS (
        DELETE FROM usage_multi_provider m
        USING pair p
        WHERE NOT p.multi AND (m.task_id, m.model) = (p.task_id, p.model)
    )
    INSERT INTO usage_multi_provider (task_id, model, runtime_id, workspace_id)
    SELECT task_id, model, runtime_id, workspace_id FROM pair WHERE multi
    ON CONFLICT (task_id, model) DO UPDATE
    SET runtime_id = excluded.runtime_id, workspace_id = excluded.workspace_id
    WHERE (usage_multi_provider.runtime_id, usage_multi_provider.workspace_id)
          IS DISTINCT FROM (excluded.runtime_id, excluded.workspace_id);
$$;
