-- Usage records of the agent CLIs' own accounts (records.py): staged by COPY, then written as
-- one task and one usage row each under fixed task ids, so that writing them again changes
-- nothing but what grew; a session is counted from one source only (sources.sql).

-- name: runtime
-- One runtime per machine and agent CLI, made on first sight (its zone and owner then);
-- found without locking it, so writers of one machine do not wait on each other.
WITH found AS (
    SELECT id FROM agent_runtime
    WHERE workspace_id = %(workspace_id)s AND daemon_id = %(daemon_id)s
      AND provider = %(provider)s
), made AS (
    INSERT INTO agent_runtime (workspace_id, daemon_id, name, runtime_mode, provider,
                               device_info, metadata, timezone, owner_id)
    SELECT %(workspace_id)s, %(daemon_id)s, %(name)s, 'local', %(provider)s, %(device_info)s,
           jsonb_build_object('source', %(source)s::text), %(timezone)s,
           (SELECT m.user_id FROM member m JOIN "user" u ON u.id = m.user_id
            WHERE m.workspace_id = %(workspace_id)s AND u.email = lower(btrim(%(email)s)))
    WHERE NOT EXISTS (SELECT FROM found)
    ON CONFLICT (workspace_id, daemon_id, provider) DO NOTHING
    RETURNING id
)
SELECT id FROM found UNION ALL SELECT id FROM made;

-- name: agent
-- An agent by name, made on first sight on the runtime; its runtime tells whether it is one
-- of this source's (a person may have made one of the same name elsewhere).
WITH found AS (
    SELECT id, runtime_id FROM agent WHERE workspace_id = %(workspace_id)s AND name = %(name)s
), made AS (
    INSERT INTO agent (workspace_id, name, runtime_id, owner_id)
    SELECT %(workspace_id)s, %(name)s, %(runtime_id)s, r.owner_id
    FROM agent_runtime r
    WHERE r.id = %(runtime_id)s AND NOT EXISTS (SELECT FROM found)
    ON CONFLICT (workspace_id, name) DO NOTHING
    RETURNING id, runtime_id
)
SELECT id, runtime_id FROM found UNION ALL SELECT id, runtime_id FROM made;

-- name: create_staging
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS record_staging (
    key                text NOT NULL,  -- workspace, source and the record's identity
    task_id            uuid GENERATED ALWAYS AS (md5(key)::uuid) STORED,
    runtime_id         uuid NOT NULL,
    agent_id           uuid NOT NULL,
    session_id         text NULL,
    at                 timestamptz NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cache_write_1h_tokens bigint NOT NULL,
    estimated_cost_usd numeric NULL
) ON COMMIT DELETE ROWS;
TRUNCATE record_staging;  -- a dry run's chunks are savepoints of one transaction

-- name: copy_staging
-- Binary: no value is written out as text and parsed again (a quarter of the CPU per record
-- less, server and database together, bench/RESULTS.md).
COPY record_staging (key, runtime_id, agent_id, session_id, at, provider, model, input_tokens,
                     output_tokens, cache_read_tokens, cache_write_tokens,
                     cache_write_1h_tokens, estimated_cost_usd) FROM STDIN (FORMAT BINARY);

-- name: lock_shared
SELECT pg_advisory_xact_lock_shared(session_lock(%(workspace_id)s));

-- name: lock_alone
SELECT pg_advisory_xact_lock(session_lock(%(workspace_id)s));

-- name: sessions_with
-- Which of the sessions have tasks in the workspace from one of the sources (or, with
-- `daemon`, from a daemon): each an index probe (session, source) that stops at the first.
SELECT s.session_id
FROM unnest(%(sessions)s::text[]) s(session_id)
WHERE EXISTS (SELECT FROM agent_task_queue t
              JOIN agent a ON a.id = t.agent_id
              WHERE t.session_id = s.session_id AND t.source = ANY(%(sources)s)
                AND a.workspace_id = %(workspace_id)s)
   OR (%(daemon)s AND EXISTS (SELECT FROM agent_task_queue t
                              JOIN agent a ON a.id = t.agent_id
                              WHERE t.session_id = s.session_id AND t.source IS NULL
                                AND a.workspace_id = %(workspace_id)s));

-- name: drop_sessions
-- The tasks of lower sources of sessions a higher one now counts (their usage goes with them).
DELETE FROM agent_task_queue t
USING agent a
WHERE a.id = t.agent_id AND a.workspace_id = %(workspace_id)s
  AND t.session_id = ANY(%(sessions)s) AND t.source = ANY(%(sources)s);

-- name: insert_tasks
-- Records that are the same whenever they come again (OpenTelemetry's): new ones only.
INSERT INTO agent_task_queue (id, agent_id, runtime_id, status, started_at, completed_at,
                              created_at, session_id, source)
SELECT s.task_id, s.agent_id, s.runtime_id, 'completed', s.at, s.at, s.at, s.session_id,
       %(source)s
FROM record_staging s
ORDER BY s.task_id
ON CONFLICT (id) DO NOTHING;

-- name: insert_usage
INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                        estimated_cost_usd, created_at, updated_at, workspace_id, runtime_id,
                        agent_id)
SELECT s.task_id, s.provider, s.model, s.input_tokens, s.output_tokens, s.cache_read_tokens,
       s.cache_write_tokens, s.cache_write_1h_tokens, s.estimated_cost_usd, s.at, now(),
       %(workspace_id)s, s.runtime_id, s.agent_id
FROM record_staging s
ORDER BY s.task_id, s.provider, s.model
ON CONFLICT (task_id, model, provider) DO NOTHING;

-- name: write_tasks
-- Records that may come again grown or earlier (a log's): one completed task per request, at the request's time; a record found again at an earlier
-- time (the first line of its response) moves its task there.
INSERT INTO agent_task_queue (id, agent_id, runtime_id, status, started_at, completed_at,
                              created_at, session_id, source)
SELECT s.task_id, s.agent_id, s.runtime_id, 'completed', s.at, s.at, s.at, s.session_id,
       %(source)s
FROM record_staging s
ORDER BY s.task_id
ON CONFLICT (id) DO UPDATE
SET started_at = excluded.started_at, completed_at = excluded.completed_at,
    created_at = excluded.created_at
WHERE excluded.created_at < agent_task_queue.created_at;

-- name: write_usage
-- INVARIANT: a record written again replaces its tokens only with more of them (a response's
-- last line over its placeholder; equal totals in the order of logs.Record.values) and its
-- time only with an earlier one, so that every order of reading gives one result. A task
-- holds one record's usage: a record found again under another model (a replay without its
-- turn's context) is not written again.
-- Answers what changed: records new and grown, tokens, cost (1e-10 USD) and unpriced tokens.
WITH old AS (
    SELECT u.task_id, u.provider, u.model, u.created_at, u.input_tokens, u.output_tokens,
           u.cache_read_tokens, u.cache_write_tokens
    FROM task_usage u
    WHERE u.task_id IN (SELECT task_id FROM record_staging)
), written AS (
    INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,
                            cache_read_tokens, cache_write_tokens, cache_write_1h_tokens,
                            estimated_cost_usd, created_at, updated_at, workspace_id,
                            runtime_id, agent_id)
    SELECT s.task_id, s.provider, s.model, s.input_tokens, s.output_tokens,
           s.cache_read_tokens, s.cache_write_tokens, s.cache_write_1h_tokens,
           s.estimated_cost_usd, s.at, now(), %(workspace_id)s, s.runtime_id, s.agent_id
    FROM record_staging s
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
