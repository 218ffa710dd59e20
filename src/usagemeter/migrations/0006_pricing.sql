-- Cost: effective-dated prices (global or per workspace), provider-reported cost on usage.

-- INVARIANT: a price is in force from 00:00 UTC of effective_from until the next entry of
-- the same (workspace, provider, model), so every 15-minute UTC bucket has one price.
CREATE TABLE model_price (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id         uuid NULL REFERENCES workspace (id) ON DELETE CASCADE, -- NULL: global
    provider             text NULL CHECK (provider <> ''),                      -- NULL: any
    model                text NOT NULL CHECK (model <> ''),
    effective_from       date NOT NULL,
    -- USD per million tokens; 4 decimals make the per-token price a whole 1e-10 USD.
    input_per_mtok       numeric(14, 4) NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok      numeric(14, 4) NOT NULL CHECK (output_per_mtok >= 0),
    cache_read_per_mtok  numeric(14, 4) NOT NULL CHECK (cache_read_per_mtok >= 0),
    cache_write_per_mtok numeric(14, 4) NOT NULL CHECK (cache_write_per_mtok >= 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_price_key UNIQUE NULLS NOT DISTINCT
        (workspace_id, provider, model, effective_from)
);
CREATE INDEX idx_model_price_model ON model_price (model);

-- A cost the provider reported for the row (USD); NULL means estimate it from prices.
ALTER TABLE task_usage
    ADD COLUMN cost_usd numeric(22, 10) NULL CHECK (cost_usd >= 0);

-- The UTC date of an instant: the unit of price validity.
CREATE FUNCTION utc_day(p_at timestamptz)
RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT (p_at AT TIME ZONE 'UTC')::date
$$;

-- The id a dated or `-latest` model id stands for: gpt-5-2025-08-07 → gpt-5.
CREATE FUNCTION model_base(p_model text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(p_model, '-([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}|latest)$', '')
$$;

-- A price in 1e-10 USD per token (whole numbers: list prices have 4 decimals per million).
CREATE TYPE token_price AS (input bigint, output bigint, cache_read bigint, cache_write bigint);

-- The prices that apply to usage of (p_provider, p_model) in a workspace, as consecutive
-- UTC date ranges. At each date the entry in force is chosen by: exact model id over its
-- base id, (provider, model) over model-only, workspace over global, then the latest
-- effective_from. Dates before the first entry have no row (unpriced).
CREATE FUNCTION price_segments(p_workspace_id uuid, p_provider text, p_model text)
RETURNS TABLE (valid daterange, price token_price)
LANGUAGE sql STABLE ROWS 2 AS $$
    WITH candidate AS (
        SELECT p.*
        FROM model_price p
        WHERE p.model IN (p_model, model_base(p_model))
          AND (p.workspace_id IS NULL OR p.workspace_id = p_workspace_id)
          AND (p.provider IS NULL OR p.provider = p_provider)
    ), edge AS (
        SELECT DISTINCT effective_from AS d FROM candidate
    )
    SELECT daterange(e.d, lead(e.d) OVER (ORDER BY e.d)), w.price
    FROM edge e
    CROSS JOIN LATERAL (
        SELECT ROW((c.input_per_mtok * 10000)::bigint, (c.output_per_mtok * 10000)::bigint,
                   (c.cache_read_per_mtok * 10000)::bigint,
                   (c.cache_write_per_mtok * 10000)::bigint)::token_price AS price
        FROM candidate c
        WHERE c.effective_from <= e.d
        ORDER BY c.model = p_model DESC, c.provider IS NOT NULL DESC,
                 c.workspace_id IS NOT NULL DESC, c.effective_from DESC
        LIMIT 1
    ) w
$$;

-- The cost of usage in 1e-10 USD (exact integers): the reported cost where there is one,
-- else the tokens at the price (NULL: no price known, cost 0).
-- Reports sum usage into cells of one (workspace, provider, model, UTC day, reported or
-- not) first and price each cell, so a price is looked up per cell, not per row.
CREATE FUNCTION usage_cost_units(p_reported numeric,
                                 p_input numeric, p_output numeric,
                                 p_cache_read numeric, p_cache_write numeric,
                                 p_price token_price)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(p_reported * 10000000000,
                    p_input * (p_price).input + p_output * (p_price).output
                    + p_cache_read * (p_price).cache_read
                    + p_cache_write * (p_price).cache_write,
                    0)
$$;

-- The tokens of usage that nothing priced: no reported cost and no price in force.
CREATE FUNCTION usage_unpriced_tokens(p_reported numeric,
                                      p_input numeric, p_output numeric,
                                      p_cache_read numeric, p_cache_write numeric,
                                      p_price token_price)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_reported IS NULL AND p_price IS NULL
                THEN p_input + p_output + p_cache_read + p_cache_write ELSE 0 END
$$;

-- 1e-10 USD units as a USD amount without trailing zeros (0.0045, 12, 0).
CREATE FUNCTION usd(p_units numeric)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT trim_scale(coalesce(p_units, 0) * 0.0000000001)
$$;

