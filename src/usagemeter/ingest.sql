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

-- name: first_foreign_entry
-- The first staged entry whose task is not in the workspace (through its agent).
SELECT s.ord
FROM usage_staging s
WHERE NOT EXISTS (
    SELECT 1 FROM agent_task_queue t JOIN agent a ON a.id = t.agent_id
    WHERE t.id = s.task_id AND a.workspace_id = %(workspace_id)s
)
ORDER BY s.ord
LIMIT 1;

-- name: upsert_staged
-- INVARIANT: a repeated (task_id, provider, model) replaces the four token values and the
-- reported cost, and bumps updated_at; created_at never changes. Within one request the last entry wins.
-- Rows are written in key order so concurrent batches lock in the same order.
INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, cost_usd, created_at, updated_at)
SELECT task_id, provider, model, input_tokens, output_tokens,
       cache_read_tokens, cache_write_tokens, cost_usd, coalesce(created_at, now()), now()
FROM (
    SELECT DISTINCT ON (task_id, provider, model) *
    FROM usage_staging
    ORDER BY task_id, provider, model, ord DESC
) s
ORDER BY task_id, provider, model
ON CONFLICT (task_id, provider, model) DO UPDATE
SET input_tokens = excluded.input_tokens,
    output_tokens = excluded.output_tokens,
    cache_read_tokens = excluded.cache_read_tokens,
    cache_write_tokens = excluded.cache_write_tokens,
    cost_usd = excluded.cost_usd,
    updated_at = now();
