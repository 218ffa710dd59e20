-- Day buckets hold their cost: a bucket of unreported usage is priced when it is folded,
-- at the price in force on its UTC day, and again whenever prices change. A runtime report
-- read from day buckets (the usual one: its own zone, or no dates) then looks up no price
-- and prices nothing: at 10M usage rows, the 90-day report of 728 buckets took 0.5-0.6 ms
-- less (of 4-7 ms), the 30-day by-agent report 0.25-0.45 ms less (of 1-2 ms), measured
-- side by side. Segments and raw rows are still priced when read.
--
-- INVARIANT (replaces the cost part of usage_day's): a bucket's cost_usd is the sum of its
-- rows' reported costs when `reported`, else its tokens at the price in force for (its
-- workspace, provider, model) on utc_day, NULL when there is none. Buckets change only
-- under the rollup lock, and a change of prices takes that lock and re-prices the buckets
-- of its models in its own transaction, so every snapshot sees buckets priced at the
-- prices it sees.

-- The cost in USD of unreported tokens at a price (NULL: no price): a bucket's cost.
CREATE FUNCTION priced_usd(p_input numeric, p_output numeric, p_cache_read numeric,
                           p_cache_write numeric, p_price token_price)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_price IS NOT NULL
                THEN usage_cost_units(NULL, p_input, p_output, p_cache_read, p_cache_write,
                                      p_price) * 0.0000000001 END
$$;

-- Add signed rows (negative to subtract) to the day buckets and delete the buckets left all
-- zero. Each bucket named in p_rows, even by a row of zeros, is set to its new sums and its
-- cost priced from all its tokens when unreported (the cost_usd of such rows in p_rows is
-- ignored), so a recompute repairs costs as it repairs tokens, and zero rows re-price.
-- Buckets whose sums and cost stay the same are not written. Callers hold the rollup lock
-- (buckets are read, then written).
CREATE OR REPLACE FUNCTION day_add(p_rows usage_day[])
RETURNS void
LANGUAGE sql AS $$
    WITH b AS (
        SELECT runtime_id, day, utc_day, workspace_id, agent_id, provider, model, reported,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens,
               sum(cache_write_tokens) AS cache_write_tokens,
               CASE WHEN reported THEN sum(cost_usd) ELSE 0 END AS cost_usd, sum(rows) AS rows
        FROM unnest(p_rows)
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
    ), n AS (
        SELECT b.runtime_id, b.day, b.utc_day, b.workspace_id, b.agent_id, b.provider,
               b.model, b.reported,
               coalesce(r.input_tokens, 0) + b.input_tokens AS input_tokens,
               coalesce(r.output_tokens, 0) + b.output_tokens AS output_tokens,
               coalesce(r.cache_read_tokens, 0) + b.cache_read_tokens AS cache_read_tokens,
               coalesce(r.cache_write_tokens, 0) + b.cache_write_tokens AS cache_write_tokens,
               coalesce(r.cost_usd, 0) + b.cost_usd AS cost_usd,
               coalesce(r.rows, 0) + b.rows AS rows
        FROM b
        LEFT JOIN usage_day r
            ON (r.runtime_id, r.day, r.utc_day, r.workspace_id, r.agent_id, r.provider,
                r.model, r.reported)
               = (b.runtime_id, b.day, b.utc_day, b.workspace_id, b.agent_id, b.provider,
                  b.model, b.reported)
        WHERE r.runtime_id IS NOT NULL
           OR (b.rows, b.input_tokens, b.output_tokens, b.cache_read_tokens,
               b.cache_write_tokens, b.cost_usd) <> (0, 0, 0, 0, 0, 0)
    ), price AS MATERIALIZED (  -- once, not per bucket
        SELECT k.workspace_id, k.provider, k.model, s.valid, s.price
        FROM (SELECT DISTINCT workspace_id, provider, model FROM n WHERE NOT reported) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    )
    INSERT INTO usage_day AS r
    SELECT n.runtime_id, n.day, n.utc_day, n.workspace_id, n.agent_id, n.provider, n.model,
           n.reported, n.input_tokens, n.output_tokens, n.cache_read_tokens,
           n.cache_write_tokens,
           CASE WHEN n.reported THEN n.cost_usd
                ELSE priced_usd(n.input_tokens, n.output_tokens, n.cache_read_tokens,
                                n.cache_write_tokens, p.price) END,
           n.rows
    FROM n
    LEFT JOIN price p ON NOT n.reported AND p.valid @> n.utc_day
        AND (p.workspace_id, p.provider, p.model) = (n.workspace_id, n.provider, n.model)
    ON CONFLICT (runtime_id, day, utc_day, workspace_id, agent_id, provider, model, reported)
    DO UPDATE SET input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
                  cache_read_tokens = excluded.cache_read_tokens,
                  cache_write_tokens = excluded.cache_write_tokens,
                  cost_usd = excluded.cost_usd, rows = excluded.rows
    WHERE (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
           r.cost_usd, r.rows)
          IS DISTINCT FROM (excluded.input_tokens, excluded.output_tokens,
                            excluded.cache_read_tokens, excluded.cache_write_tokens,
                            excluded.cost_usd, excluded.rows);

    DELETE FROM usage_day
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
$$;

-- Re-price the buckets of unreported usage from UTC day p_from on of the models that
-- prices of p_models may apply to (the model itself, or its dated and -latest ids). A price
-- entry decides prices from its effective_from on only. Callers hold the rollup lock.
CREATE FUNCTION day_reprice(p_models text[], p_from date)
RETURNS void
LANGUAGE sql AS $$
    SELECT day_add(ARRAY(
        SELECT ROW(x.runtime_id, x.day, x.utc_day, x.workspace_id, x.agent_id, x.provider,
                   x.model, false, 0, 0, 0, 0, NULL, 0)::usage_day
        FROM usage_day x
        WHERE NOT x.reported AND x.utc_day >= p_from
          AND (x.model = ANY (p_models) OR model_base(x.model) = ANY (p_models))));
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

SELECT rollup_lock(true);
SELECT day_reprice(ARRAY(SELECT DISTINCT model FROM usage_day), '-infinity');

-- Day buckets come priced: only segments and raw rows of unreported usage look up prices.
CREATE OR REPLACE FUNCTION usage_report_rollup(p_since timestamptz, p_tz text,
                                               p_runtime_id uuid, p_workspace_id uuid,
                                               p_by_date boolean, p_by_agent boolean,
                                               p_by_provider boolean, p_by_model boolean,
                                               p_count_tasks boolean,
                                               p_days_from timestamptz, p_day_zone text)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
LANGUAGE sql STABLE AS $$
    WITH span AS (
        -- seg_end, raw_end, and the local midnights of the dates from p_since's to
        -- seg_end's where each is the first instant of its date (else NULL: dates are then
        -- converted).
        SELECT e.seg_end, e.raw_end, m.first, m.midnights
        FROM (SELECT least(CASE WHEN p_days_from = p_since THEN p_since
                                ELSE rollup_end(p_tz, p_since, true) END,
                           p_days_from) AS seg_end,
                     coalesce(p_days_from, 'infinity') AS raw_end
              OFFSET 0) e  -- once
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
    ), src AS (
        -- at: an instant of the row's local date (unless ldate gives it); day: its UTC day;
        -- task_id: set on rows not folded yet (their multi-provider pairs are not listed);
        -- priced: cost_usd is the cost (reported, or a day bucket's, priced when folded: a
        -- bucket without a price has none).
        -- Time bounds are read by scalar subqueries (a join with span would filter a scan
        -- of every row instead of bounding an index scan).
        SELECT u.created_at AS at, NULL::date AS ldate, utc_day(u.created_at) AS day,
               u.workspace_id, u.agent_id, u.task_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS priced, u.cost_usd,
               u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
               1 AS rows
        FROM usage_rows_between(p_runtime_id, p_workspace_id, (SELECT s.seg_end FROM span s),
                                (SELECT s.raw_end FROM span s)) u
        UNION ALL
        SELECT d.created_at, NULL, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT d.created_at, NULL, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT x.seg_start, NULL, utc_day(x.seg_start), x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup x
        WHERE p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT NULL, x.day, x.utc_day, x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, true, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_day x
        WHERE p_days_from IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.day >= (p_days_from AT TIME ZONE p_day_zone)::date
        UNION ALL
        SELECT x.seg_start, NULL, utc_day(x.seg_start), x.workspace_id, NULL, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup_ws x
        WHERE p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM src WHERE NOT priced) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    ), fix AS (
        SELECT CASE WHEN p_by_date THEN (u.created_at AT TIME ZONE p_tz)::date END AS date,
               CASE WHEN p_by_agent THEN u.agent_id END AS agent_id,
               CASE WHEN p_by_provider THEN u.provider END AS provider,
               CASE WHEN p_by_model THEN u.model END AS model,
               count(DISTINCT u.task_id) - count(*) AS tasks
        FROM (SELECT m.task_id, m.model FROM usage_multi_provider m
              UNION
              SELECT s.task_id, s.model FROM src s
              WHERE s.task_id IS NOT NULL AND s.rows > 0
                AND EXISTS (SELECT FROM task_usage o
                            WHERE o.task_id = s.task_id AND o.model = s.model
                              AND o.provider <> s.provider)) m
        JOIN task_usage u ON u.task_id = m.task_id AND u.model = m.model
        WHERE p_count_tasks AND u.created_at >= p_since
          AND u.runtime_id = coalesce(p_runtime_id, u.runtime_id)
          AND u.workspace_id = coalesce(p_workspace_id, u.workspace_id)
        GROUP BY 1, 2, 3, 4
    ), part AS (
        SELECT CASE WHEN NOT p_by_date THEN NULL
                    WHEN s.ldate IS NOT NULL THEN s.ldate
                    WHEN s.at < (SELECT sp.seg_end FROM span sp)
                         AND (SELECT sp.midnights FROM span sp) IS NOT NULL
                    THEN (SELECT sp.first FROM span sp)
                         + width_bucket(s.at, (SELECT sp.midnights FROM span sp)) - 1
                    ELSE (s.at AT TIME ZONE p_tz)::date END AS date,
               CASE WHEN p_by_agent THEN s.agent_id END AS agent_id,
               CASE WHEN p_by_provider THEN s.provider END AS provider,
               CASE WHEN p_by_model THEN s.model END AS model,
               s.input_tokens, s.output_tokens, s.cache_read_tokens, s.cache_write_tokens,
               s.rows, s.rows AS tasks,
               usage_cost_units(s.cost_usd, s.input_tokens, s.output_tokens,
                                s.cache_read_tokens, s.cache_write_tokens, p.price) AS cost,
               usage_unpriced_tokens(s.cost_usd, s.input_tokens, s.output_tokens,
                                     s.cache_read_tokens, s.cache_write_tokens,
                                     p.price) AS unpriced
        FROM src s
        LEFT JOIN price p ON NOT s.priced AND p.valid @> s.day
            AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
        UNION ALL
        SELECT f.date, f.agent_id, f.provider, f.model, 0, 0, 0, 0, 0, f.tasks, 0, 0
        FROM fix f
    )
    SELECT r.date, NULL::integer, r.agent_id, r.provider, r.model,
           sum(r.input_tokens)::bigint, sum(r.output_tokens)::bigint,
           sum(r.cache_read_tokens)::bigint, sum(r.cache_write_tokens)::bigint,
           CASE WHEN p_count_tasks THEN sum(r.tasks) ELSE 0 END::bigint,
           sum(r.cost), sum(r.unpriced)::bigint
    FROM part r
    GROUP BY r.date, r.agent_id, r.provider, r.model
    HAVING sum(r.rows) <> 0
$$;
