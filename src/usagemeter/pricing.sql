-- Prices (model_price): global entries and workspace overrides, USD per million tokens.
-- %(workspace_id)s NULL means the global catalogue.

-- name: list_prices
-- Global prices and the workspace's overrides, optionally only one model (and its base
-- id) or one entry.
SELECT p.id,
       CASE WHEN p.workspace_id IS NULL THEN 'global' ELSE 'workspace' END AS scope,
       p.provider, p.model, to_char(p.effective_from, 'YYYY-MM-DD') AS effective_from,
       trim_scale(p.input_per_mtok) AS input_per_mtok,
       trim_scale(p.output_per_mtok) AS output_per_mtok,
       trim_scale(p.cache_read_per_mtok) AS cache_read_per_mtok,
       trim_scale(p.cache_write_per_mtok) AS cache_write_per_mtok
FROM model_price p
WHERE (p.workspace_id IS NULL OR p.workspace_id = %(workspace_id)s)
  AND (%(model)s::text IS NULL OR p.model IN (%(model)s, model_base(%(model)s)))
  AND (%(id)s::uuid IS NULL OR p.id = %(id)s)
ORDER BY p.model COLLATE "C", p.provider COLLATE "C" NULLS FIRST, p.workspace_id NULLS FIRST,
         p.effective_from;

-- name: set_price
-- Create or replace the entry of (workspace, provider, model, effective_from); the date
-- defaults to today (UTC).
INSERT INTO model_price (workspace_id, provider, model, effective_from, input_per_mtok,
                         output_per_mtok, cache_read_per_mtok, cache_write_per_mtok)
VALUES (%(workspace_id)s, %(provider)s, %(model)s,
        coalesce(%(effective_from)s::date, utc_day(now())), %(input_per_mtok)s,
        %(output_per_mtok)s, %(cache_read_per_mtok)s, %(cache_write_per_mtok)s)
ON CONFLICT ON CONSTRAINT model_price_key DO UPDATE
SET input_per_mtok = excluded.input_per_mtok,
    output_per_mtok = excluded.output_per_mtok,
    cache_read_per_mtok = excluded.cache_read_per_mtok,
    cache_write_per_mtok = excluded.cache_write_per_mtok,
    updated_at = now()
RETURNING id;

-- name: price_scope
-- Which workspace an entry belongs to (NULL: global); no row when it does not exist.
SELECT workspace_id FROM model_price WHERE id = %(id)s;

-- name: delete_price
DELETE FROM model_price WHERE id = %(id)s;

-- name: find_price
-- The entry of (workspace, provider, model, effective_from), if any.
SELECT id FROM model_price
WHERE workspace_id IS NOT DISTINCT FROM %(workspace_id)s
  AND provider IS NOT DISTINCT FROM %(provider)s
  AND model = %(model)s AND effective_from = %(effective_from)s;

-- name: effective_prices
-- The prices that apply to usage of (provider, model) in the workspace, by UTC date range
-- (valid_to NULL: still in force).
SELECT to_char(lower(s.valid), 'YYYY-MM-DD') AS valid_from,
       to_char(upper(s.valid), 'YYYY-MM-DD') AS valid_to,
       trim_scale((s.price).input * 0.0001) AS input_per_mtok,
       trim_scale((s.price).output * 0.0001) AS output_per_mtok,
       trim_scale((s.price).cache_read * 0.0001) AS cache_read_per_mtok,
       trim_scale((s.price).cache_write * 0.0001) AS cache_write_per_mtok
FROM price_segments(%(workspace_id)s, %(provider)s, %(model)s) s
ORDER BY lower(s.valid);
