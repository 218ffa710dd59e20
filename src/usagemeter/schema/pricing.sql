-- Pricing: effective-dated prices, global or per workspace, and the exact cost of usage.
--
-- A cost is whole units of 1e-10 USD: a price of at most 4 decimals per million tokens is
-- a whole number of units per token, so every cost is a sum of integer products, rendered
-- by usd() without rounding. A provider-reported cost (task_usage.cost_usd) wins over the
-- estimate; tokens with neither are counted as unpriced, never as $0.

-- A price in 1e-10 USD per token (whole numbers: list prices have 4 decimals per million).
CREATE TYPE token_price AS (input bigint, output bigint, cache_read bigint, cache_write bigint);

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

-- The default catalogue: global list prices (USD per million tokens, any provider) of
-- current claude and gpt/o-series models, in force for all usage since 2000-01-01.
-- A later change of list price is a new dated row (a release's migration), so it never
-- reprices the past. OpenAI bills no cache writes separately: they cost the input price.
INSERT INTO model_price (model, effective_from, input_per_mtok, output_per_mtok,
                         cache_read_per_mtok, cache_write_per_mtok)
SELECT model, DATE '2000-01-01', input, output, cache_read, cache_write
FROM (VALUES
    ('claude-opus-4-5',   5.00, 25.00, 0.50,  6.25),
    ('claude-opus-4-1',  15.00, 75.00, 1.50, 18.75),
    ('claude-opus-4',    15.00, 75.00, 1.50, 18.75),
    ('claude-sonnet-4-6', 3.00, 15.00, 0.30,  3.75),
    ('claude-sonnet-4-5', 3.00, 15.00, 0.30,  3.75),
    ('claude-sonnet-4',   3.00, 15.00, 0.30,  3.75),
    ('claude-3-7-sonnet', 3.00, 15.00, 0.30,  3.75),
    ('claude-haiku-4-5',  1.00,  5.00, 0.10,  1.25),
    ('claude-3-5-haiku',  0.80,  4.00, 0.08,  1.00),
    ('gpt-5.1',           1.25, 10.00, 0.125, 1.25),
    ('gpt-5',             1.25, 10.00, 0.125, 1.25),
    ('gpt-5-codex',       1.25, 10.00, 0.125, 1.25),
    ('gpt-5-mini',        0.25,  2.00, 0.025, 0.25),
    ('gpt-5-nano',        0.05,  0.40, 0.005, 0.05),
    ('gpt-4.1',           2.00,  8.00, 0.50,  2.00),
    ('gpt-4.1-mini',      0.40,  1.60, 0.10,  0.40),
    ('gpt-4.1-nano',      0.10,  0.40, 0.025, 0.10),
    ('gpt-4o',            2.50, 10.00, 1.25,  2.50),
    ('gpt-4o-mini',       0.15,  0.60, 0.075, 0.15),
    ('o3',                2.00,  8.00, 0.50,  2.00),
    ('o3-mini',           1.10,  4.40, 0.55,  1.10),
    ('o4-mini',           1.10,  4.40, 0.275, 1.10),
    ('o1',               15.00, 60.00, 7.50, 15.00)
) AS catalogue (model, input, output, cache_read, cache_write);

-- The id a dated or `-latest` model id stands for: gpt-5-2025-08-07 → gpt-5.
CREATE FUNCTION model_base(p_model text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT regexp_replace(p_model, '-([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{8}|latest)$', '')
$$;

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

-- The cost in USD of unreported tokens at a price (NULL: no price): a bucket's cost.
CREATE FUNCTION priced_usd(p_input numeric, p_output numeric, p_cache_read numeric,
                           p_cache_write numeric, p_price token_price)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_price IS NOT NULL
                THEN usage_cost_units(NULL, p_input, p_output, p_cache_read, p_cache_write,
                                      p_price) * 0.0000000001 END
$$;

-- The cost of usage in 1e-10 USD, as usage_cost_units(numeric, ...) has it, for token
-- counts as stored: in bigint arithmetic (a numeric product per token kind cost 0.6 ms of
-- a 90-day report) where it cannot overflow: every count below 2^30 and every price below
-- 2^31 units ($214,748 per million tokens) keep each product below 2^61 and their sum
-- below 2^63. Any other usage (and usage without a price, priced at 0) goes to the
-- numeric function.
CREATE FUNCTION usage_cost_units(p_reported numeric,
                                 p_input bigint, p_output bigint,
                                 p_cache_read bigint, p_cache_write bigint,
                                 p_price token_price)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(p_reported * 10000000000,
                    CASE WHEN greatest(p_input, p_output, p_cache_read, p_cache_write)
                              < 1073741824
                          AND greatest((p_price).input, (p_price).output,
                                       (p_price).cache_read, (p_price).cache_write)
                              < 2147483648
                         THEN p_input * (p_price).input + p_output * (p_price).output
                              + p_cache_read * (p_price).cache_read
                              + p_cache_write * (p_price).cache_write END,
                    usage_cost_units(NULL, p_input::numeric, p_output::numeric,
                                     p_cache_read::numeric, p_cache_write::numeric, p_price))
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

-- After any change of prices: re-price the buckets the entries changed may apply to, under
-- the rollup lock (waiting for a running tick: its buckets, priced at the prices it saw,
-- are then committed and re-priced here). Only in READ COMMITTED, where the re-pricing, a
-- statement after the lock, sees every bucket committed before it; a snapshot taken before
-- the lock would miss buckets a tick folded meanwhile.
CREATE FUNCTION model_price_reprice()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'prices can only change in READ COMMITTED transactions';
    END IF;
    PERFORM rollup_lock(true);
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM day_reprice(ARRAY(SELECT DISTINCT model FROM usage_day), '-infinity');
    ELSIF TG_OP = 'INSERT' THEN
        PERFORM day_reprice(array_agg(model), min(effective_from)) FROM new_prices;
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM day_reprice(array_agg(model), min(effective_from)) FROM old_prices;
    ELSE
        PERFORM day_reprice(array_agg(model), min(effective_from))
        FROM (SELECT model, effective_from FROM old_prices
              UNION ALL
              SELECT model, effective_from FROM new_prices) c;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_model_price_insert_reprice
AFTER INSERT ON model_price REFERENCING NEW TABLE AS new_prices
FOR EACH STATEMENT EXECUTE FUNCTION model_price_reprice();

CREATE TRIGGER trg_model_price_update_reprice
AFTER UPDATE ON model_price REFERENCING OLD TABLE AS old_prices NEW TABLE AS new_prices
FOR EACH STATEMENT EXECUTE FUNCTION model_price_reprice();

CREATE TRIGGER trg_model_price_delete_reprice
AFTER DELETE ON model_price REFERENCING OLD TABLE AS old_prices
FOR EACH STATEMENT EXECUTE FUNCTION model_price_reprice();

CREATE TRIGGER trg_model_price_truncate_reprice
AFTER TRUNCATE ON model_price
FOR EACH STATEMENT EXECUTE FUNCTION model_price_reprice();

-- Re-price the day buckets of unreported usage from UTC day p_from on, of the models that
-- prices of p_models may apply to (the model itself, or its dated and -latest ids). A price
-- entry decides prices from its effective_from on only. Callers hold the rollup lock.
CREATE FUNCTION day_reprice(p_models text[], p_from date)
RETURNS void
LANGUAGE sql AS $$
    SELECT day_add(ARRAY(
        SELECT ROW(x.runtime_id, x.day, x.utc_day, x.workspace_id, x.agent_id, x.provider,
                   x.model, false, 0, 0, 0, 0, NULL, 0, x.zone)::usage_day
        FROM usage_day x
        WHERE NOT x.reported AND x.utc_day >= p_from
          AND (x.model = ANY (p_models) OR model_base(x.model) = ANY (p_models))));
$$;
