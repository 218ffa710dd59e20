-- Log import (docs/import.md): a run's records are COPYed into a staging table, then written
-- as one task and one usage row each, under fixed task ids, so writing them again changes
-- nothing but what grew.

-- name: workspace_id
SELECT id FROM workspace WHERE slug = %(slug)s;

-- name: create_workspace
INSERT INTO workspace (name, slug) VALUES (%(name)s, %(slug)s)
ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug
RETURNING id;

-- name: files_imported
SELECT path, size, mtime_ns FROM import_file
WHERE workspace_id = %(workspace_id)s AND source = %(source)s;

-- name: record_file
INSERT INTO import_file (workspace_id, source, path, size, mtime_ns)
VALUES (%(workspace_id)s, %(source)s, %(path)s, %(size)s, %(mtime_ns)s)
ON CONFLICT (workspace_id, source, path) DO UPDATE
SET size = excluded.size, mtime_ns = excluded.mtime_ns, imported_at = now();

-- name: runtime
-- One runtime per machine and agent CLI; its zone, the machine's, is set when it is made.
INSERT INTO agent_runtime (workspace_id, daemon_id, name, runtime_mode, provider, device_info,
                           metadata, timezone)
VALUES (%(workspace_id)s, %(daemon_id)s, %(name)s, 'local', %(provider)s, %(device_info)s,
        jsonb_build_object('source', %(source)s::text), %(timezone)s)
ON CONFLICT (workspace_id, daemon_id, provider) DO UPDATE SET updated_at = now()
RETURNING id;

-- name: agent
INSERT INTO agent (workspace_id, name, runtime_id)
VALUES (%(workspace_id)s, %(name)s, %(runtime_id)s)
ON CONFLICT (workspace_id, name) DO UPDATE SET updated_at = agent.updated_at
RETURNING id, runtime_id;

-- name: create_staging
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS import_staging (
    key                text NOT NULL,  -- workspace, source and the record's identity
    task_id            uuid GENERATED ALWAYS AS (md5(key)::uuid) STORED,
    agent_id           uuid NOT NULL,
    session_id         text NOT NULL,
    at                 timestamptz NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cache_write_1h_tokens bigint NOT NULL
) ON COMMIT DELETE ROWS;
TRUNCATE import_staging;  -- a dry run's chunks are savepoints of one transaction

-- name: copy_staging
COPY import_staging (key, agent_id, session_id, at, provider, model, input_tokens,
                     output_tokens, cache_read_tokens, cache_write_tokens,
                     cache_write_1h_tokens) FROM STDIN;

-- name: lock_workspace
-- Imports into a workspace write side by side; a daemon naming a session waits for them.
SELECT pg_advisory_xact_lock_shared(import_lock(%(workspace_id)s));

-- name: reported_sessions
-- INVARIANT: a session a daemon reported a task of is counted from the daemon's usage only:
-- its imported records are not written (and a daemon naming a session later deletes the
-- imported tasks of it, tasks.sql: drop_imported_session).
SELECT DISTINCT t.session_id
FROM agent_task_queue t
JOIN agent a ON a.id = t.agent_id
WHERE t.session_id = ANY(%(sessions)s) AND t.source IS NULL
  AND a.workspace_id = %(workspace_id)s;

-- name: write_tasks
-- One completed task per request, at the request's time; a record found again at an earlier
-- time (the first line of its response) moves its task there.
INSERT INTO agent_task_queue (id, agent_id, runtime_id, status, started_at, completed_at,
                              created_at, session_id, source)
SELECT s.task_id, s.agent_id, %(runtime_id)s, 'completed', s.at, s.at, s.at, s.session_id,
       %(source)s
FROM import_staging s
ORDER BY s.task_id
ON CONFLICT (id) DO UPDATE
SET started_at = excluded.started_at, completed_at = excluded.completed_at,
    created_at = excluded.created_at
WHERE excluded.created_at < agent_task_queue.created_at;

-- name: write_usage
-- INVARIANT: a record written again replaces its tokens only with more of them (a response's
-- last line over its placeholder; equal totals in the order of logs.Record.values) and its
-- time only with an earlier one, so that every order of reading gives one result. A task holds one record's usage: a record found again under
-- another model (a replay without its turn's context) is not written again.
-- Answers what changed: records new and grown, tokens, cost (1e-10 USD) and unpriced tokens.
WITH old AS (
    SELECT u.task_id, u.provider, u.model, u.created_at, u.input_tokens, u.output_tokens,
           u.cache_read_tokens, u.cache_write_tokens
    FROM task_usage u
    WHERE u.task_id IN (SELECT task_id FROM import_staging)
), written AS (
    INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,
                            cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                            created_at, updated_at, workspace_id, runtime_id, agent_id)
    SELECT s.task_id, s.provider, s.model, s.input_tokens, s.output_tokens,
           s.cache_read_tokens, s.cache_write_tokens, s.cache_write_1h_tokens, s.at, now(),
           %(workspace_id)s, %(runtime_id)s, s.agent_id
    FROM import_staging s
    WHERE NOT EXISTS (SELECT FROM old o
                      WHERE o.task_id = s.task_id AND (o.provider, o.model) <> (s.provider, s.model))
    ORDER BY s.task_id, s.provider, s.model
    ON CONFLICT (task_id, model, provider) DO UPDATE
    SET (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
         cache_write_1h_tokens)
        = (SELECT i, o, r, w, h
           FROM (VALUES (excluded.input_tokens, excluded.output_tokens,
                         excluded.cache_read_tokens, excluded.cache_write_tokens,
                         excluded.cache_write_1h_tokens),
                        (task_usage.input_tokens, task_usage.output_tokens,
                         task_usage.cache_read_tokens, task_usage.cache_write_tokens,
                         task_usage.cache_write_1h_tokens)) v(i, o, r, w, h)
           ORDER BY i + o + r + w DESC, o DESC, i DESC, r DESC, h DESC  -- Record.values
           LIMIT 1),
        created_at = least(task_usage.created_at, excluded.created_at),
        updated_at = now()
    WHERE (excluded.input_tokens + excluded.output_tokens + excluded.cache_read_tokens
           + excluded.cache_write_tokens, excluded.output_tokens, excluded.input_tokens,
           excluded.cache_read_tokens, excluded.cache_write_1h_tokens)
        > (task_usage.input_tokens + task_usage.output_tokens + task_usage.cache_read_tokens
           + task_usage.cache_write_tokens, task_usage.output_tokens, task_usage.input_tokens,
           task_usage.cache_read_tokens, task_usage.cache_write_1h_tokens)
       OR excluded.created_at < task_usage.created_at
    RETURNING task_id, provider, model, created_at, input_tokens, output_tokens,
              cache_read_tokens, cache_write_tokens, xmax = 0 AS inserted
), change AS (
    SELECT w.provider, w.model, w.created_at, w.input_tokens, w.output_tokens,
           w.cache_read_tokens, w.cache_write_tokens, w.inserted, true AS written
    FROM written w
    UNION ALL
    SELECT o.provider, o.model, o.created_at, -o.input_tokens, -o.output_tokens,
           -o.cache_read_tokens, -o.cache_write_tokens, false, false
    FROM old o
    JOIN written w USING (task_id, provider, model)
), price AS (
    SELECT k.provider, k.model, s.*
    FROM (SELECT DISTINCT provider, model FROM change) k
    CROSS JOIN LATERAL price_segments(%(workspace_id)s, k.provider, k.model) s
)
SELECT count(*) FILTER (WHERE c.written AND c.inserted) AS new,
       count(*) FILTER (WHERE c.written AND NOT c.inserted) AS grown,
       coalesce(sum(c.input_tokens + c.output_tokens + c.cache_read_tokens
                    + c.cache_write_tokens), 0) AS tokens,
       coalesce(sum(usage_cost_units(NULL, c.input_tokens, c.output_tokens,
                                     c.cache_read_tokens, c.cache_write_tokens, p.price)),
                0) AS cost_units,
       coalesce(sum(usage_unpriced_tokens(NULL, c.input_tokens, c.output_tokens,
                                          c.cache_read_tokens, c.cache_write_tokens, p.price)),
                0) AS unpriced_tokens
FROM change c
LEFT JOIN price p ON p.valid @> utc_day(c.created_at)
    AND (p.provider, p.model) = (c.provider, c.model);
