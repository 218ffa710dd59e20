-- Usage ingest: entries are COPYed into a per-session staging table, checked, then
-- upserted into task_usage in one statement.

-- name: create_staging
SET LOCAL client_min_messages = warning;
CREATE TEMP TABLE IF NOT EXISTS usage_staging (
    ord                integer NOT NULL,
    task_id            uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    created_at         timestamptz NULL
) ON COMMIT DELETE ROWS;

-- name: copy_staging
COPY usage_staging (ord, task_id, provider, model, input_tokens, output_tokens,
                    cache_read_tokens, cache_write_tokens, cost_usd, created_at) FROM STDIN;

-- name: lock_tasks
-- Hold the staged entries' tasks until commit, in id order: a task moved to another runtime
-- meanwhile would otherwise move its usage rows without these uncommitted ones. The lock
-- the capture trigger takes after the upsert (schema/capture.sql), taken first.
SELECT 1 FROM agent_task_queue
WHERE id IN (SELECT task_id FROM usage_staging)
ORDER BY id
FOR NO KEY UPDATE;

-- name: first_foreign_entry
-- The first staged entry whose task is not in the workspace (through its agent), NULL when
-- none is. Each task is looked up once, however many entries it has.
SELECT min(s.ord) AS ord
FROM usage_staging s
WHERE s.task_id IN (
    SELECT k.task_id FROM (SELECT DISTINCT task_id FROM usage_staging) k
    WHERE NOT EXISTS (
        SELECT 1 FROM agent_task_queue t JOIN agent a ON a.id = t.agent_id
        WHERE t.id = k.task_id AND a.workspace_id = %(workspace_id)s
    )
);

-- name: upsert_staged
-- INVARIANT: a repeated (task_id, provider, model) replaces the four token values and the
-- reported cost, and bumps updated_at; created_at never changes. Within one request the
-- last entry wins.
-- Rows are written in key order so concurrent batches lock in the same order.
INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, cost_usd, created_at, updated_at,
                        workspace_id, runtime_id, agent_id)
SELECT s.task_id, s.provider, s.model, s.input_tokens, s.output_tokens,
       s.cache_read_tokens, s.cache_write_tokens, s.cost_usd, coalesce(s.created_at, now()),
       now(), a.workspace_id, t.runtime_id, t.agent_id
FROM (
    SELECT DISTINCT ON (task_id, provider, model) *
    FROM usage_staging
    ORDER BY task_id, provider, model, ord DESC
) s
-- The keys come with the join (see trg_task_usage_keys); a task deleted meanwhile has
-- none, and its row fails its foreign key.
LEFT JOIN agent_task_queue t ON t.id = s.task_id
LEFT JOIN agent a ON a.id = t.agent_id
ORDER BY s.task_id, s.provider, s.model
ON CONFLICT (task_id, provider, model) DO UPDATE
SET input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens,
    cache_read_tokens = excluded.cache_read_tokens,
    cache_write_tokens = excluded.cache_write_tokens,
    cost_usd = excluded.cost_usd,
    updated_at = now();
