-- Release 0.2.0: token sums that never overflow, runtimes only their owners merge, reports
-- that read their own scope's task-count corrections only, a tick that one workspace's
-- rows cannot stop, at most 16 offsets added by one workspace's reports, sessions of the
-- pages.
--
-- Token sums that never overflow. The rollup's buckets sum tokens as numeric
-- (a bigint sum overflowed past 9.2e18 and stopped every report of the workspace and every
-- tick), reports return numeric sums, and the bigint cost shortcut applies only where its
-- products cannot overflow.

ALTER TABLE usage_rollup
    ALTER COLUMN input_tokens TYPE numeric,
    ALTER COLUMN output_tokens TYPE numeric,
    ALTER COLUMN cache_read_tokens TYPE numeric,
    ALTER COLUMN cache_write_tokens TYPE numeric;

ALTER TABLE usage_rollup_ws
    ALTER COLUMN input_tokens TYPE numeric,
    ALTER COLUMN output_tokens TYPE numeric,
    ALTER COLUMN cache_read_tokens TYPE numeric,
    ALTER COLUMN cache_write_tokens TYPE numeric;

ALTER TABLE usage_day
    ALTER COLUMN input_tokens TYPE numeric,
    ALTER COLUMN output_tokens TYPE numeric,
    ALTER COLUMN cache_read_tokens TYPE numeric,
    ALTER COLUMN cache_write_tokens TYPE numeric;

ALTER TABLE usage_day_ws
    ALTER COLUMN input_tokens TYPE numeric,
    ALTER COLUMN output_tokens TYPE numeric,
    ALTER COLUMN cache_read_tokens TYPE numeric,
    ALTER COLUMN cache_write_tokens TYPE numeric;

ALTER TABLE usage_head_ws
    ALTER COLUMN input_tokens TYPE numeric,
    ALTER COLUMN output_tokens TYPE numeric,
    ALTER COLUMN cache_read_tokens TYPE numeric,
    ALTER COLUMN cache_write_tokens TYPE numeric;

DROP AGGREGATE usage_sum(bigint);

DROP FUNCTION usage_unpriced_tokens(numeric, bigint, bigint, bigint, bigint, token_price);

DROP FUNCTION usage_report(timestamptz, text, uuid, uuid, uuid, boolean, boolean, boolean,
                           boolean, boolean, boolean, boolean);

DROP FUNCTION usage_report_raw(timestamptz, text, uuid, uuid, uuid, boolean, boolean,
                               boolean, boolean, boolean, boolean);

DROP FUNCTION usage_report_rollup(timestamptz, text, uuid, uuid, boolean, boolean,
                                  boolean, boolean, boolean, timestamptz, text);

-- The cost of usage in 1e-10 USD, as usage_cost_units(numeric, ...) has it, for token
-- counts as stored: in bigint arithmetic (a numeric product per token kind cost 0.6 ms of
-- a 90-day report) where it cannot overflow: every count below 2^30 and every price below
-- 2^31 units ($214,748 per million tokens) keep each product below 2^61 and their sum
-- below 2^63. Any other usage (and usage without a price, priced at 0) goes to the
-- numeric function.
CREATE OR REPLACE FUNCTION usage_cost_units(p_reported numeric,
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

-- A row of a usage report, whichever function reads it: its keys (NULL where not chosen),
-- token sums, distinct tasks, cost in 1e-10 USD, tokens no price covered, the reported
-- costs alone, and the tokens of rows without a reported cost.
CREATE TYPE usage_report_row AS (
    date date, hour integer, agent_id uuid, provider text, model text,
    input_tokens numeric, output_tokens numeric,
    cache_read_tokens numeric, cache_write_tokens numeric,
    task_count bigint, cost_units numeric, unpriced_tokens numeric,
    reported_units numeric, uncosted_input_tokens numeric,
    uncosted_output_tokens numeric, uncosted_cache_read_tokens numeric,
    uncosted_cache_write_tokens numeric
);

-- Usage since p_since: from the rollup when p_rollup (and p_since starts a quarter hour, as
-- every local midnight since 1980 does: see usage_bin), else raw (usage_report_raw). The
-- rollup path reads a runtime's day buckets from its first local midnight at or after
-- p_since on, in p_tz when the runtime has ready buckets there, else (a read without dates)
-- in any of its ready zones, where that midnight is a segment cut. It runs one plan made
-- once per session: a custom plan cost more to make (3-4 ms) than most reads take to run,
-- and the generic one measured as fast. The raw path is planned for its arguments on every
-- call. Segments are not whole hours, so a runtime's report by hour and model reads its rows
-- on the rollup path too, in usage_by_hour; an issue is not a key of the rollup, so an
-- issue's report always reads raw.
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
                                        p_rollup boolean DEFAULT false,
                                        p_project_id uuid DEFAULT NULL)
RETURNS SETOF usage_report_row
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_zone      text;
    v_days_from timestamptz;
BEGIN
    IF p_rollup AND p_by_hour AND p_by_model AND p_count_tasks AND p_runtime_id IS NOT NULL
       AND NOT (p_by_date OR p_by_agent OR p_by_provider) THEN
        RETURN QUERY SELECT * FROM usage_by_hour(p_since, p_tz, p_runtime_id);
        RETURN;
    END IF;
    -- The rollup path reads queued deltas from p_since on, which it must be a bin start for.
    IF NOT p_rollup OR isfinite(p_since) AND usage_bin(p_since) <> p_since THEN
        RETURN QUERY EXECUTE
            'SELECT * FROM usage_report_raw($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)'
            USING p_since, p_tz, p_runtime_id, p_workspace_id, p_issue_id, p_by_date,
                  p_by_hour, p_by_agent, p_by_provider, p_by_model, p_count_tasks,
                  p_project_id;
        RETURN;
    END IF;
    -- Statements of their own: a function with a subquery in its arguments is not inlined.
    IF p_runtime_id IS NOT NULL AND isfinite(p_since) THEN
        v_zone := (SELECT z.zone FROM usage_day_zone z
                   WHERE z.runtime_id = p_runtime_id AND z.ready
                   ORDER BY z.zone = p_tz DESC, z.zone
                   LIMIT 1);
    END IF;
    IF v_zone = p_tz OR (v_zone IS NOT NULL AND NOT p_by_date) THEN
        v_days_from := (((p_since - interval '1 microsecond') AT TIME ZONE v_zone)::date + 1)
                       ::timestamp AT TIME ZONE v_zone;
        IF NOT ((v_days_from - interval '1 microsecond') AT TIME ZONE v_zone)::date
               < (v_days_from AT TIME ZONE v_zone)::date  -- not the first instant of its date
           OR (v_days_from <> p_since
               AND (p_by_date OR NOT EXISTS (
                   SELECT FROM usage_offset o
                   WHERE o.state = 'ready'
                     AND o.offset_s = extract(epoch FROM (v_days_from AT TIME ZONE v_zone)
                                                         - (v_days_from AT TIME ZONE 'UTC')))))
        THEN
            v_days_from := NULL;
        END IF;
    END IF;
    RETURN QUERY
    SELECT * FROM usage_report_rollup(p_since, p_tz, p_runtime_id, p_workspace_id,
                                      p_by_date, p_by_agent, p_by_provider, p_by_model,
                                      p_count_tasks, v_days_from, v_zone);
END
$$;

-- Usage since p_since of one runtime, else one workspace, else one issue, else one project,
-- read from task_usage, grouped by the chosen keys (a key not chosen is NULL): local date
-- and hour in p_tz, agent, provider, model. task_count (with p_count_tasks, else 0) counts
-- distinct tasks per group. A row without a reported cost is priced with the price in force on its
-- UTC day in its workspace. Money is exact 1e-10 USD.
CREATE FUNCTION usage_report_raw(p_since timestamptz, p_tz text, p_runtime_id uuid,
                                 p_workspace_id uuid, p_issue_id uuid,
                                 p_by_date boolean, p_by_hour boolean, p_by_agent boolean,
                                 p_by_provider boolean, p_by_model boolean,
                                 p_count_tasks boolean, p_project_id uuid DEFAULT NULL)
RETURNS SETOF usage_report_row
LANGUAGE sql STABLE AS $$
    WITH src AS (
        -- One branch per kind of scope, so that the scope is an index condition even when
        -- it comes from an outer query (GET /api/runtimes).
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NOT NULL AND u.runtime_id = p_runtime_id
          AND u.created_at >= p_since
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND u.workspace_id = p_workspace_id
          AND u.created_at >= p_since
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND p_workspace_id IS NULL
          AND u.task_id IN (SELECT t.id FROM agent_task_queue t WHERE t.issue_id = p_issue_id)
          AND u.created_at >= p_since
        UNION ALL
        SELECT u.* FROM task_usage u
        WHERE p_runtime_id IS NULL AND p_workspace_id IS NULL AND p_issue_id IS NULL
          AND u.task_id IN (SELECT t.id FROM agent_task_queue t
                            JOIN issue i ON i.id = t.issue_id
                            WHERE i.project_id = p_project_id)
          AND u.created_at >= p_since
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM src WHERE cost_usd IS NULL) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    )
    SELECT CASE WHEN p_by_date THEN (s.created_at AT TIME ZONE p_tz)::date END,
           CASE WHEN p_by_hour THEN extract(hour FROM s.created_at AT TIME ZONE p_tz)::int END,
           CASE WHEN p_by_agent THEN s.agent_id END,
           CASE WHEN p_by_provider THEN s.provider END,
           CASE WHEN p_by_model THEN s.model END,
           sum(s.input_tokens), sum(s.output_tokens),
           sum(s.cache_read_tokens), sum(s.cache_write_tokens),
           CASE WHEN p_count_tasks THEN count(DISTINCT s.task_id) ELSE 0 END,
           sum(usage_cost_units(s.cost_usd, s.input_tokens, s.output_tokens,
                                s.cache_read_tokens, s.cache_write_tokens, p.price)),
           sum(usage_unpriced_tokens(s.cost_usd, s.input_tokens, s.output_tokens,
                                     s.cache_read_tokens, s.cache_write_tokens, p.price)),
           round(coalesce(sum(s.cost_usd), 0) * 10000000000),
           coalesce(sum(s.input_tokens) FILTER (WHERE s.cost_usd IS NULL), 0),
           coalesce(sum(s.output_tokens) FILTER (WHERE s.cost_usd IS NULL), 0),
           coalesce(sum(s.cache_read_tokens) FILTER (WHERE s.cost_usd IS NULL), 0),
           coalesce(sum(s.cache_write_tokens) FILTER (WHERE s.cost_usd IS NULL), 0)
    FROM src s
    LEFT JOIN price p ON s.cost_usd IS NULL AND p.valid @> utc_day(s.created_at)
        AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
    GROUP BY 1, 2, 3, 4, 5
$$;

-- The (task, model) pairs usage_multi_provider lists in a runtime's (else a workspace's)
-- scope. Planned for its arguments on every call: a generic plan counts on the table's
-- share of an average scope and scanned every tenant's pairs for a small one.
CREATE FUNCTION multi_provider_pairs(p_runtime_id uuid, p_workspace_id uuid)
RETURNS TABLE (task_id uuid, model text)
LANGUAGE plpgsql STABLE ROWS 10
SET plan_cache_mode = force_custom_plan AS $$
BEGIN
    IF p_runtime_id IS NOT NULL THEN
        RETURN QUERY SELECT m.task_id, m.model FROM usage_multi_provider m
                     WHERE m.runtime_id = p_runtime_id;
    ELSE
        RETURN QUERY SELECT m.task_id, m.model FROM usage_multi_provider m
                     WHERE m.workspace_id = p_workspace_id;
    END IF;
END
$$;

-- By local hour of day in p_tz and model: the usage of one runtime since p_since, as
-- usage_report_raw answers it (date, agent and provider NULL), with tasks counted as the
-- rollup counts them. Rows are summed per cell (hour, UTC day, provider, model, reported or
-- not) before a cell is priced, and a group's tasks are its rows, corrected for the
-- (task, model) pairs reported under several providers (usage_report_rollup): no sort or
-- hash of every row's task. 1.8x faster than the raw statement at 10M (bench/RESULTS.md).
CREATE FUNCTION usage_by_hour(p_since timestamptz, p_tz text, p_runtime_id uuid)
RETURNS SETOF usage_report_row
LANGUAGE sql STABLE AS $$
    WITH cell AS (
        SELECT date_part('hour', u.created_at AT TIME ZONE p_tz)::int AS hour,
               utc_day(u.created_at) AS day, u.workspace_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS priced, sum(u.cost_usd) AS cost_usd,
               sum(u.input_tokens) AS input_tokens, sum(u.output_tokens) AS output_tokens,
               sum(u.cache_read_tokens) AS cache_read_tokens,
               sum(u.cache_write_tokens) AS cache_write_tokens, count(*) AS tasks
        FROM task_usage u
        WHERE u.runtime_id = p_runtime_id AND u.created_at >= p_since
        GROUP BY 1, 2, 3, 4, 5, 6
    ), price AS (
        SELECT k.workspace_id, k.provider, k.model, s.*
        FROM (SELECT DISTINCT workspace_id, provider, model FROM cell WHERE NOT priced) k
        CROSS JOIN LATERAL price_segments(k.workspace_id, k.provider, k.model) s
    ), part AS (
        SELECT c.hour, c.model, c.input_tokens, c.output_tokens, c.cache_read_tokens,
               c.cache_write_tokens, c.tasks,
               usage_cost_units(c.cost_usd, c.input_tokens, c.output_tokens,
                                c.cache_read_tokens, c.cache_write_tokens, p.price) AS cost,
               usage_unpriced_tokens(c.cost_usd, c.input_tokens, c.output_tokens,
                                     c.cache_read_tokens, c.cache_write_tokens,
                                     p.price) AS unpriced,
               c.priced, c.cost_usd AS reported
        FROM cell c
        LEFT JOIN price p ON NOT c.priced AND p.valid @> c.day
            AND (p.workspace_id, p.provider, p.model) = (c.workspace_id, c.provider, c.model)
        UNION ALL
        SELECT date_part('hour', u.created_at AT TIME ZONE p_tz)::int, u.model, 0, 0, 0, 0,
               count(DISTINCT u.task_id) - count(*), 0, 0, true, 0
        FROM multi_provider_pairs(p_runtime_id, NULL) m
        JOIN task_usage u ON u.task_id = m.task_id AND u.model = m.model
        WHERE u.runtime_id = p_runtime_id AND u.created_at >= p_since
        GROUP BY 1, 2
    )
    SELECT NULL::date, r.hour, NULL::uuid, NULL::text, r.model,
           sum(r.input_tokens), sum(r.output_tokens),
           sum(r.cache_read_tokens), sum(r.cache_write_tokens), sum(r.tasks)::bigint,
           sum(r.cost), sum(r.unpriced), round(coalesce(sum(r.reported), 0) * 10000000000),
           coalesce(sum(r.input_tokens) FILTER (WHERE NOT r.priced), 0),
           coalesce(sum(r.output_tokens) FILTER (WHERE NOT r.priced), 0),
           coalesce(sum(r.cache_read_tokens) FILTER (WHERE NOT r.priced), 0),
           coalesce(sum(r.cache_write_tokens) FILTER (WHERE NOT r.priced), 0)
    FROM part r
    GROUP BY r.hour, r.model
$$;

-- Usage since p_since of one runtime, else one workspace, as usage_report_raw has it (no
-- hours), from the rollup. Spans, each read from one source, plus the deltas still queued
-- in the spans that buckets serve:
--   [p_since, seg_end)       segments (seg_end: where segments serve p_tz, rollup_end(),
--                            at most p_days_from); a workspace whose dates each start at a
--                            cut with heads reads its whole UTC days from usage_day_ws and
--                            the part of a day before each such instant from usage_head_ws
--                            instead;
--   [seg_end, p_days_from)   raw rows (normally empty: today's rows are folded);
--   [p_days_from, infinity)  the runtime's day buckets in p_day_zone, from p_days_from's
--                            local date on (p_days_from: the first instant of that date, a
--                            cut; NULL: no day buckets, and the raw span is unbounded).
-- INVARIANT: a tick deletes deltas and adds them to the buckets in one transaction, so at
-- any snapshot every usage row is counted exactly once. A group is returned when it has
-- rows (a delta counts +1 or -1).
--
-- task_count (with p_count_tasks, which requires p_by_model): every usage row counts as a
-- task (one row per task, provider and model). The rows of (task, model) pairs reported
-- under several providers are corrected per group: -1 each, +1 per distinct task. The
-- pairs are those usage_multi_provider lists in the report's scope (all of them, at every
-- snapshot), so the correction's cost depends on the scope's own pairs only.
CREATE FUNCTION usage_report_rollup(p_since timestamptz, p_tz text,
                                               p_runtime_id uuid, p_workspace_id uuid,
                                               p_by_date boolean, p_by_agent boolean,
                                               p_by_provider boolean, p_by_model boolean,
                                               p_count_tasks boolean,
                                               p_days_from timestamptz, p_day_zone text)
RETURNS SETOF usage_report_row
LANGUAGE sql STABLE AS $$
    WITH span AS (
        -- seg_end, raw_end, the local midnights of the dates from p_since's to seg_end's
        -- where each is the first instant of its date (else NULL: dates are then converted),
        -- and the instants at which a workspace report reads heads (NULL: it reads
        -- segments), which it may when it has no dates or each of its dates starts at its
        -- midnight: p_since, seg_end and the midnights between, but those at 00:00 UTC
        -- (whose heads are empty).
        SELECT e.seg_end, e.raw_end, m.first, m.midnights,
               CASE WHEN p_runtime_id IS NULL AND e.seg_end > p_since
                         AND (NOT p_by_date OR m.midnights IS NOT NULL)
                    THEN ARRAY(SELECT DISTINCT t.t
                               FROM unnest(ARRAY[p_since, e.seg_end] || m.midnights) t(t)
                               WHERE t.t >= p_since AND t.t <= e.seg_end
                                 AND day_second(t.t) <> 0) END AS heads
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
        -- Rows, queued deltas and segments, which are priced here. at: an instant of the
        -- row's local date; day: its UTC day; priced: cost_usd is the reported cost.
        -- Time bounds are read by scalar subqueries (a join with span would filter a scan
        -- of every row instead of bounding an index scan).
        SELECT u.created_at AS at, utc_day(u.created_at) AS day,
               u.workspace_id, u.agent_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS priced, u.cost_usd,
               u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
               1 AS rows
        FROM usage_rows_between(p_runtime_id, p_workspace_id, (SELECT s.seg_end FROM span s),
                                (SELECT s.raw_end FROM span s)) u
        UNION ALL
        -- The deltas (each at its quarter hour, usage_bin), summed per key before they are
        -- priced: a read costs what its groups cost, not its queue.
        SELECT d.created_at, utc_day(d.created_at), d.workspace_id,
               CASE WHEN p_by_agent THEN d.agent_id END, d.provider, d.model,
               d.cost_usd IS NOT NULL, sum(d.cost_usd), sum(d.input_tokens),
               sum(d.output_tokens), sum(d.cache_read_tokens), sum(d.cache_write_tokens),
               sum(d.rows)
        FROM (SELECT * FROM usage_dirty d
              WHERE p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
                AND d.created_at >= p_since
                AND (d.created_at < (SELECT s.seg_end FROM span s)
                     OR d.created_at >= (SELECT s.raw_end FROM span s))
              UNION ALL
              SELECT * FROM usage_dirty d
              WHERE p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
                AND d.created_at >= p_since
                AND (d.created_at < (SELECT s.seg_end FROM span s)
                     OR d.created_at >= (SELECT s.raw_end FROM span s))) d
        GROUP BY d.created_at, d.workspace_id, CASE WHEN p_by_agent THEN d.agent_id END,
                 d.provider, d.model, d.cost_usd IS NOT NULL
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, x.agent_id,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup x
        WHERE p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup_ws x
        WHERE p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND (SELECT s.heads FROM span s) IS NULL
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        -- With heads: the UTC days from p_since's to seg_end's, each at its last instant
        -- (its local date is the date of its last part),
        SELECT utc_start(x.day + 1) - interval '1 microsecond', x.day, x.workspace_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_day_ws x
        WHERE p_runtime_id IS NULL AND x.workspace_id = p_workspace_id
          AND (SELECT s.heads FROM span s) IS NOT NULL
          AND x.day >= utc_day(p_since) AND x.day < utc_day((SELECT s.seg_end FROM span s))
        UNION ALL
        -- and the head of each instant's UTC day up to it, moved from the instant's date to
        -- the date before (the part of a day before p_since is subtracted, the part of a
        -- day before seg_end added).
        SELECT v.at, x.day, x.workspace_id, NULL, x.provider, x.model, x.reported,
               v.sign * x.cost_usd, v.sign * x.input_tokens, v.sign * x.output_tokens,
               v.sign * x.cache_read_tokens, v.sign * x.cache_write_tokens, v.sign * x.rows
        FROM unnest((SELECT s.heads FROM span s)) h(at)
        JOIN usage_head_ws x ON x.workspace_id = p_workspace_id
            AND x.cut = day_second(h.at) AND x.day = utc_day(h.at)
        CROSS JOIN LATERAL (VALUES (h.at - interval '1 microsecond', 1), (h.at, -1)) v(at, sign)
        WHERE p_runtime_id IS NULL
          AND CASE v.sign WHEN 1 THEN h.at > p_since
                          ELSE h.at < (SELECT s.seg_end FROM span s) END
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
        FROM multi_provider_pairs(p_runtime_id, p_workspace_id) m
        CROSS JOIN LATERAL (
            SELECT u.created_at, u.agent_id, u.provider, u.model, u.task_id
            FROM task_usage u
            WHERE u.task_id = m.task_id AND u.model = m.model AND u.created_at >= p_since
              AND u.runtime_id = coalesce(p_runtime_id, u.runtime_id)
              AND u.workspace_id = coalesce(p_workspace_id, u.workspace_id)
            OFFSET 0) u  -- by pair, whatever the statistics say of the pairs
        WHERE p_count_tasks
        GROUP BY 1, 2, 3, 4
    ), part AS (
        SELECT CASE WHEN NOT p_by_date THEN NULL
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
                                     p.price) AS unpriced,
               CASE WHEN s.priced THEN s.cost_usd ELSE 0 END AS reported,
               CASE WHEN s.priced THEN 0 ELSE s.input_tokens END AS uncosted_input,
               CASE WHEN s.priced THEN 0 ELSE s.output_tokens END AS uncosted_output,
               CASE WHEN s.priced THEN 0 ELSE s.cache_read_tokens END AS uncosted_cache_read,
               CASE WHEN s.priced THEN 0 ELSE s.cache_write_tokens END AS uncosted_cache_write
        FROM src s
        LEFT JOIN price p ON NOT s.priced AND p.valid @> s.day
            AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
        UNION ALL
        SELECT f.date, f.agent_id, f.provider, f.model, 0, 0, 0, 0, 0, f.tasks, 0, 0,
               0, 0, 0, 0, 0
        FROM fix f
        UNION ALL
        -- Day buckets, priced when folded (a bucket without a price has no cost).
        SELECT CASE WHEN p_by_date THEN x.day END,
               CASE WHEN p_by_agent THEN x.agent_id END,
               CASE WHEN p_by_provider THEN x.provider END,
               CASE WHEN p_by_model THEN x.model END,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows, x.rows,
               usage_cost_units(x.cost_usd, x.input_tokens, x.output_tokens,
                                x.cache_read_tokens, x.cache_write_tokens, NULL),
               usage_unpriced_tokens(x.cost_usd, x.input_tokens, x.output_tokens,
                                     x.cache_read_tokens, x.cache_write_tokens, NULL),
               CASE WHEN x.reported THEN x.cost_usd ELSE 0 END,
               CASE WHEN x.reported THEN 0 ELSE x.input_tokens END,
               CASE WHEN x.reported THEN 0 ELSE x.output_tokens END,
               CASE WHEN x.reported THEN 0 ELSE x.cache_read_tokens END,
               CASE WHEN x.reported THEN 0 ELSE x.cache_write_tokens END
        FROM usage_day x
        WHERE p_days_from IS NOT NULL AND x.runtime_id = p_runtime_id AND x.zone = p_day_zone
          AND x.day >= (p_days_from AT TIME ZONE p_day_zone)::date
    )
    SELECT r.date, NULL::integer, r.agent_id, r.provider, r.model,
           sum(r.input_tokens), sum(r.output_tokens),
           sum(r.cache_read_tokens), sum(r.cache_write_tokens),
           CASE WHEN p_count_tasks THEN sum(r.tasks)::bigint ELSE 0 END,
           sum(r.cost), sum(r.unpriced), round(sum(r.reported) * 10000000000),
           sum(r.uncosted_input), sum(r.uncosted_output), sum(r.uncosted_cache_read),
           sum(r.uncosted_cache_write)
    FROM part r
    GROUP BY r.date, r.agent_id, r.provider, r.model
    HAVING sum(r.rows) <> 0
$$;

-- A register merges only runtimes without an owner or owned by its caller.
DROP FUNCTION merge_legacy_runtimes(uuid, text[]);

-- INVARIANT: only rows of the same workspace and provider merge, and only those with no
-- owner or owned by p_owner_id (NULL, a daemon token: ownerless ones only), so no caller
-- merges away a runtime someone else owns; agents and tasks move to the new row before the
-- old row is deleted, so its cascade removes nothing.
CREATE FUNCTION merge_legacy_runtimes(p_runtime_id uuid, p_legacy_ids text[], p_owner_id uuid)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_new agent_runtime%ROWTYPE;
    v_old record;
    v_merged integer := 0;
BEGIN
    SELECT * INTO STRICT v_new FROM agent_runtime WHERE id = p_runtime_id;
    FOR v_old IN
        SELECT r.id, r.daemon_id
        FROM agent_runtime r
        WHERE r.workspace_id = v_new.workspace_id
          AND r.provider = v_new.provider
          AND r.id <> p_runtime_id
          AND (r.owner_id IS NULL OR r.owner_id = p_owner_id)
          AND lower(r.daemon_id) IN (SELECT lower(x) FROM unnest(p_legacy_ids) AS x)
        ORDER BY r.created_at, r.id
        FOR UPDATE
    LOOP
        UPDATE agent SET runtime_id = p_runtime_id, updated_at = now() WHERE runtime_id = v_old.id;
        UPDATE agent_task_queue SET runtime_id = p_runtime_id WHERE runtime_id = v_old.id;
        UPDATE agent_runtime SET legacy_daemon_id = v_old.daemon_id, updated_at = now()
        WHERE id = p_runtime_id;
        DELETE FROM agent_runtime WHERE id = v_old.id;
        v_merged := v_merged + 1;
    END LOOP;
    RETURN v_merged;
END
$$;

-- Reports read the task-count corrections (multi-provider pairs) of their own scope only,
-- and the rows of a (task, model) pair by index whatever the task's size.
ALTER TABLE task_usage
    DROP CONSTRAINT task_usage_task_id_provider_model_key,
    ADD CONSTRAINT task_usage_task_id_model_provider_key UNIQUE (task_id, model, provider);

ALTER TABLE usage_multi_provider ADD COLUMN runtime_id uuid, ADD COLUMN workspace_id uuid;

UPDATE usage_multi_provider m
SET runtime_id = u.runtime_id, workspace_id = u.workspace_id
FROM (SELECT DISTINCT ON (task_id) task_id, runtime_id, workspace_id FROM task_usage
      ORDER BY task_id) u
WHERE u.task_id = m.task_id;

DELETE FROM usage_multi_provider WHERE runtime_id IS NULL;  -- pairs without rows

ALTER TABLE usage_multi_provider
    ALTER COLUMN runtime_id SET NOT NULL,
    ALTER COLUMN workspace_id SET NOT NULL;

CREATE INDEX idx_usage_multi_provider_runtime_id ON usage_multi_provider (runtime_id);

CREATE INDEX idx_usage_multi_provider_workspace_id ON usage_multi_provider (workspace_id);

-- Bring usage_multi_provider up to date for some (task, model) pairs: a pair is listed
-- while task_usage has it under two or more providers. The tick passes the pairs of the
-- deltas it folds and a recompute those of its keys' rows: of two rows of a pair, the one
-- handled last sees the other committed (a read finds pairs among queued deltas itself).
CREATE OR REPLACE FUNCTION multi_provider_sync(p_task_ids uuid[], p_models text[])
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

-- A tick folds one workspace at a time when a batch fails, and holds the deltas of a
-- workspace that still fails (reported in rollup_state) instead of stopping everyone's.
ALTER TABLE usage_dirty ADD COLUMN held boolean NOT NULL DEFAULT false;

ALTER TABLE rollup_state ADD COLUMN last_error text NULL, ADD COLUMN last_error_at timestamptz NULL;

-- Fold the queued deltas of p_ids into the segments and into the day buckets of every zone
-- of their runtime, deleting them from the queue; returns how many. Callers hold the
-- rollup lock.
CREATE FUNCTION rollup_fold(p_ids bigint[])
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_rows usage_rollup[];
    v_day_rows usage_day[];
BEGIN
    WITH batch AS (
        -- = ANY(...): probes by primary key, never a scan of a queue full of rows deleted
        -- by earlier ticks and not yet vacuumed.
        DELETE FROM usage_dirty WHERE id = ANY (p_ids)
        RETURNING *
    ), cut AS MATERIALIZED (  -- once, not per row
        SELECT usage_cuts() AS s
    ), seg AS (
        SELECT array_agg(ROW(b.runtime_id, seg_start(b.created_at, cut.s), b.agent_id,
                             b.provider, b.model, b.cost_usd IS NOT NULL, b.workspace_id,
                             b.input_tokens, b.output_tokens, b.cache_read_tokens,
                             b.cache_write_tokens, b.cost_usd, b.rows)::usage_rollup) AS rows
        FROM batch b
        CROSS JOIN cut
    ), day AS (  -- a row for each zone of the runtime
        SELECT array_agg(ROW(b.runtime_id, (b.created_at AT TIME ZONE z.zone)::date,
                             utc_day(b.created_at), b.workspace_id, b.agent_id, b.provider,
                             b.model, b.cost_usd IS NOT NULL, b.input_tokens, b.output_tokens,
                             b.cache_read_tokens, b.cache_write_tokens, b.cost_usd, b.rows,
                             z.zone)::usage_day) AS rows
        FROM batch b
        JOIN usage_day_zone z ON z.runtime_id = b.runtime_id
    )
    SELECT seg.rows, day.rows INTO v_rows, v_day_rows FROM seg, day;
    PERFORM rollup_add(v_rows);
    PERFORM day_add(v_day_rows);
    RETURN coalesce(cardinality(v_rows), 0);
END
$$;

-- Let ticks fold the held deltas again, once what failed them is fixed; returns how many.
CREATE FUNCTION rollup_retry_held()
RETURNS integer
LANGUAGE sql AS $$
    WITH released AS (UPDATE usage_dirty SET held = false WHERE held RETURNING 1)
    SELECT count(*)::integer FROM released;
$$;

-- One tick: fold up to p_limit queued deltas (oldest first, but held ones) into the segments
-- and into the day buckets of every zone of their runtime (rollup_fold; if that fails, one
-- workspace at a time, holding the deltas of a workspace that still fails: one tenant's rows
-- never stop the others'), re-cut up to p_limit / 100 rebuild keys (a key
-- is a runtime's UTC day: many rows), advance offset states, build the day buckets of
-- zones not ready (whole runtimes, until about p_limit usage rows are read), and fold the
-- activity queue. Returns the deltas folded plus the keys re-cut plus the zones built, or
-- NULL when another tick holds the lock. At most a million deltas per tick: a batch is held
-- in arrays, and an array must stay under 1 GB.
CREATE OR REPLACE FUNCTION rollup(p_limit integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql
-- Its statements' costs are guesses (the batch size is unknown when planned), and JIT
-- compiling them cost more than running them.
SET jit = off AS $$
DECLARE
    v_ids bigint[];
    v_workspace_id uuid;
    v_error text;
    v_runtime_ids uuid[];
    v_days date[];
    v_zone usage_day_zone;
    v_read bigint := 0;
    v_done integer := 0;
BEGIN
    IF NOT rollup_lock(false) THEN
        RETURN NULL;
    END IF;
    p_limit := least(p_limit, 1000000);

    v_ids := ARRAY(SELECT id FROM usage_dirty WHERE NOT held ORDER BY id LIMIT p_limit);
    BEGIN
        v_done := rollup_fold(v_ids);
    EXCEPTION WHEN OTHERS THEN
        FOR v_workspace_id IN SELECT DISTINCT workspace_id FROM usage_dirty
                              WHERE id = ANY (v_ids) LOOP
            BEGIN
                v_done := v_done + rollup_fold(ARRAY(
                    SELECT id FROM usage_dirty
                    WHERE id = ANY (v_ids) AND workspace_id = v_workspace_id));
            EXCEPTION WHEN OTHERS THEN
                GET STACKED DIAGNOSTICS v_error = MESSAGE_TEXT;
                UPDATE usage_dirty SET held = true
                WHERE id = ANY (v_ids) AND workspace_id = v_workspace_id;
                UPDATE rollup_state
                SET last_error = format('workspace %s: %s', v_workspace_id, v_error),
                    last_error_at = now();
            END;
        END LOOP;
    END;

    WITH batch AS (
        DELETE FROM usage_rebuild
        WHERE (runtime_id, day) IN (SELECT runtime_id, day FROM usage_rebuild
                                    LIMIT greatest(1, p_limit / 100))
        RETURNING runtime_id, day
    )
    SELECT array_agg(runtime_id), array_agg(day) INTO v_runtime_ids, v_days FROM batch;
    -- Segments only: day buckets do not depend on the offsets.
    v_done := v_done + coalesce(segment_recompute(v_runtime_ids, v_days), 0);

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

    -- Build the buckets of zones asked for since (a runtime's new zone, a viewer's), whole
    -- runtimes, until about p_limit usage rows are read.
    FOR v_zone IN SELECT * FROM usage_day_zone WHERE NOT ready ORDER BY runtime_id, zone
                  FOR UPDATE LOOP
        EXIT WHEN v_read >= p_limit;
        v_read := v_read + day_recompute(ARRAY[v_zone.runtime_id], ARRAY[NULL::date],
                                         v_zone.zone);
        UPDATE usage_day_zone SET ready = true
        WHERE (runtime_id, zone) = (v_zone.runtime_id, v_zone.zone);
        v_done := v_done + 1;
    END LOOP;
    -- Zones of deleted runtimes, once their last deltas are folded (their buckets are gone).
    DELETE FROM usage_day_zone z
    WHERE NOT EXISTS (SELECT FROM agent_runtime r WHERE r.id = z.runtime_id)
      AND NOT EXISTS (SELECT FROM usage_dirty d WHERE d.runtime_id = z.runtime_id);

    PERFORM activity_tick(p_limit);

    UPDATE rollup_state SET ticks = ticks + 1, last_tick_at = now(), last_keys = v_done;
    RETURN v_done;
END
$$;

-- The offsets a workspace's reports added to the cuts (new offsets re-cut every tenant's
-- days, so one workspace may add at most 16: users in 8 zones with summer time fit).
CREATE TABLE usage_offset_workspace (
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    offset_s     integer NOT NULL,
    PRIMARY KEY (workspace_id, offset_s)
);

-- Register a zone a workspace's report was asked in, unless its offsets not registered
-- yet would take the workspace past 16 added offsets; false then (the zone's reads stay
-- exact, from segments and raw rows). Reports' zones in use already cost nothing.
CREATE FUNCTION register_report_zone(p_zone text, p_workspace_id uuid)
RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    v_new integer[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('usagemeter zones'),
                                  hashtext(p_workspace_id::text));
    v_new := ARRAY(SELECT o FROM zone_offsets(p_zone, utc_day(now()) - 366,
                                              utc_day(now()) + 366) o
                   WHERE NOT EXISTS (SELECT FROM usage_offset u WHERE u.offset_s = o));
    IF cardinality(v_new) > 0 THEN
        IF (SELECT count(*) FROM usage_offset_workspace w
            WHERE w.workspace_id = p_workspace_id) + cardinality(v_new) > 16 THEN
            RETURN false;
        END IF;
        INSERT INTO usage_offset_workspace (workspace_id, offset_s)
        SELECT p_workspace_id, o FROM unnest(v_new) o
        ON CONFLICT DO NOTHING;
    END IF;
    PERFORM register_zone(p_zone);
    RETURN true;
END
$$;

-- A browser signed in to the pages with a personal access token: the cookie holds a random
-- token, the row its hash. Revoking the access token (its row deleted) ends its sessions.
-- INVARIANT: a session authorises pages only; /api/* reads the Authorization header alone.
CREATE TABLE web_session (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    token_hash bytea NOT NULL UNIQUE,
    token_id   uuid NOT NULL REFERENCES api_token (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,  -- every form of the session carries it
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);

CREATE INDEX idx_web_session_token_id ON web_session (token_id);

CREATE INDEX idx_web_session_expires_at ON web_session (expires_at);

-- A runtime's cost over the 7 local days before today in its zone, and over the 7 days
-- before those, with their unpriced tokens: what the runtimes list shows of each runtime.
CREATE FUNCTION runtime_week_cost(p_runtime_id uuid, p_tz text, p_rollup boolean)
RETURNS TABLE (cost_7d_usd numeric, cost_prev_7d_usd numeric,
               unpriced_7d_tokens numeric, unpriced_prev_7d_tokens numeric)
LANGUAGE sql STABLE AS $$
    SELECT usd(sum(u.cost_units) FILTER (WHERE u.date >= d.today - 7)),
           usd(sum(u.cost_units) FILTER (WHERE u.date < d.today - 7)),
           coalesce(sum(u.unpriced_tokens) FILTER (WHERE u.date >= d.today - 7), 0),
           coalesce(sum(u.unpriced_tokens) FILTER (WHERE u.date < d.today - 7), 0)
    FROM (SELECT (now() AT TIME ZONE p_tz)::date AS today) d
    LEFT JOIN usage_report(usage_since(now(), p_tz, 14), p_tz, p_runtime_id => p_runtime_id,
                           p_by_date => true, p_rollup => p_rollup) u ON u.date < d.today
$$;

-- Today's Multica: runtimes carry a display name set by a person, a visibility and the
-- runtime profile they are an instance of.
ALTER TABLE agent_runtime
    ADD COLUMN custom_name text NULL,
    ADD COLUMN visibility text NOT NULL DEFAULT 'private'
        CHECK (visibility IN ('private', 'public')),
    ADD COLUMN profile_id uuid NULL;

CREATE OR REPLACE FUNCTION runtime_json(r agent_runtime)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', r.id,
        'workspace_id', r.workspace_id,
        'daemon_id', r.daemon_id,
        'name', r.name,
        'custom_name', r.custom_name,
        'runtime_mode', r.runtime_mode,
        'provider', r.provider,
        'launch_header', launch_header(r.provider),
        'status', r.status,
        'device_info', r.device_info,
        'metadata', coalesce(r.metadata, '{}'::jsonb),
        'owner_id', r.owner_id,
        'visibility', r.visibility,
        'profile_id', r.profile_id,
        'timezone', r.timezone,
        'last_seen_at', rfc3339(r.last_seen_at),
        'created_at', rfc3339(r.created_at),
        'updated_at', rfc3339(r.updated_at)
    )
$$;

-- The rollup queue holds each statement's changes summed per key and quarter hour, and no
-- task ids: reports read a few rows per batch instead of one per usage row, and no longer
-- look among them for (task, model) pairs under several providers, since every writer keeps
-- usage_multi_provider exact in its own transaction (the tick no longer syncs pairs). The
-- pairs of deltas still queued are synced once here, writers held off meanwhile; the queued
-- deltas move to the new queue as they are (each at its own instant).
LOCK TABLE task_usage IN SHARE MODE;
SELECT multi_provider_sync(array_agg(task_id), array_agg(model)) FROM usage_dirty;
CREATE TEMP TABLE usage_dirty_0_1 ON COMMIT DROP AS SELECT * FROM usage_dirty;
DROP TABLE usage_dirty;

-- The queue of usage deltas. INVARIANT: every committed change to task_usage commits, in
-- the same transaction, -1 times each old row and +1 times each new row here, summed per
-- statement, key and usage_bin (a quarter hour): so every bucket plus the deltas still
-- queued equals the sums of task_usage at every snapshot, and a batch of 10,000 rows of a
-- few agents and models queues a few rows. created_at: the bin; rows: the rows added less
-- those removed. Append-only (plain inserts, duplicates allowed), so writers never contend
-- on it.
CREATE TABLE usage_dirty (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runtime_id         uuid NOT NULL,
    workspace_id       uuid NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    created_at         timestamptz NOT NULL,
    input_tokens       numeric NOT NULL,
    output_tokens      numeric NOT NULL,
    cache_read_tokens  numeric NOT NULL,
    cache_write_tokens numeric NOT NULL,
    cost_usd           numeric NULL,
    rows               bigint NOT NULL,
    queued_at          timestamptz NOT NULL DEFAULT now(),
    -- Set by a tick that could not fold this workspace's deltas (rollup_state.last_error
    -- says why): later ticks pass them by until rollup_retry_held(); reads count them from
    -- the queue as any other, so they stay exact.
    held               boolean NOT NULL DEFAULT false
);

CREATE INDEX idx_usage_dirty_runtime_id_created_at ON usage_dirty (runtime_id, created_at);

CREATE INDEX idx_usage_dirty_workspace_id_created_at ON usage_dirty (workspace_id, created_at);

INSERT INTO usage_dirty (id, runtime_id, workspace_id, agent_id, provider, model, created_at,
                         input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                         cost_usd, rows, queued_at, held)
OVERRIDING SYSTEM VALUE
SELECT id, runtime_id, workspace_id, agent_id, provider, model, created_at, input_tokens,
       output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows, queued_at, held
FROM usage_dirty_0_1;
SELECT setval(pg_get_serial_sequence('usage_dirty', 'id'), max(id)) FROM usage_dirty_0_1
HAVING count(*) > 0;


-- The instant a queued change is kept at (capture.sql): its quarter hour (UTC) from 1980 on,
-- else its own instant. Every zone's offset has been a whole number of quarter hours since
-- 1979 (checked every 6 hours from 1980 to 2040 for every zone the server knows), so no
-- quarter hour from then on spans two UTC days, two local dates in any zone, or a cut.
CREATE FUNCTION usage_bin(p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_at >= timestamptz '1980-01-01 00:00Z'
                THEN date_bin('15 minutes', p_at, timestamptz '1980-01-01 00:00Z')
                ELSE p_at END
$$;

-- The capture triggers probe indexes for the rows a statement wrote, whatever the tables' size.
CREATE OR REPLACE FUNCTION check_usage_keys()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid;
BEGIN
    SELECT n.task_id INTO v_task
    FROM written_usage n
    CROSS JOIN LATERAL (SELECT a.workspace_id, t.runtime_id, t.agent_id  -- an index probe
                        FROM agent_task_queue t
                        JOIN agent a ON a.id = t.agent_id
                        WHERE t.id = n.task_id
                        LIMIT 1) k
    WHERE (n.workspace_id, n.runtime_id, n.agent_id)
          IS DISTINCT FROM (k.workspace_id, k.runtime_id, k.agent_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'usage of task % names another workspace, runtime or agent than its task',
            v_task USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

-- Each writer also keeps usage_multi_provider exact for the (task, model) pairs it wrote
-- (buckets.sql), so that no read has to look for them among the deltas. Writers of one task
-- take turns: the trigger locks the written tasks (in id order), then, in statements of
-- their own, whose snapshots see every row an earlier writer of those tasks committed (READ
-- COMMITTED, as every writer of usagemeter's own runs), finds the pairs that may have
-- changed and syncs them.
CREATE OR REPLACE FUNCTION queue_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_task_ids uuid[];
    v_models text[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, provider, model, usage_bin(created_at),
               sum(input_tokens), sum(output_tokens), sum(cache_read_tokens),
               sum(cache_write_tokens), sum(cost_usd), count(*)
        FROM new_usage
        GROUP BY 1, 2, 3, 4, 5, 6, cost_usd IS NOT NULL;
        -- Index probes, whatever the planner guesses of the tables' sizes (a hash join
        -- scanning task_usage whole made every insert cost as much as the table had rows).
        PERFORM FROM agent_task_queue
        WHERE id = ANY(ARRAY(SELECT task_id FROM new_usage)) ORDER BY id
        FOR NO KEY UPDATE;
        -- A new row makes its pair multi-provider only if another provider has it.
        SELECT array_agg(n.task_id), array_agg(n.model) INTO v_task_ids, v_models
        FROM new_usage n
        CROSS JOIN LATERAL (SELECT FROM task_usage o
                            WHERE o.task_id = n.task_id AND o.model = n.model
                              AND o.provider <> n.provider
                            LIMIT 1) other;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, provider, model, usage_bin(created_at),
               -sum(input_tokens), -sum(output_tokens), -sum(cache_read_tokens),
               -sum(cache_write_tokens), -sum(cost_usd), -count(*)
        FROM old_usage
        GROUP BY 1, 2, 3, 4, 5, 6, cost_usd IS NOT NULL;
        PERFORM FROM agent_task_queue
        WHERE id = ANY(ARRAY(SELECT task_id FROM old_usage)) ORDER BY id
        FOR NO KEY UPDATE;
        -- A row gone can only end a pair that is listed.
        SELECT array_agg(o.task_id), array_agg(o.model) INTO v_task_ids, v_models
        FROM old_usage o
        WHERE EXISTS (SELECT FROM usage_multi_provider m
                      WHERE m.task_id = o.task_id AND m.model = o.model);
    ELSE
        -- Rows whose counted values changed (a repeated report only bumps updated_at).
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT d.runtime_id, d.workspace_id, d.agent_id, d.provider, d.model,
               usage_bin(d.created_at), sum(d.input_tokens), sum(d.output_tokens),
               sum(d.cache_read_tokens), sum(d.cache_write_tokens), sum(d.cost_usd),
               sum(d.rows)
        FROM old_usage o
        JOIN new_usage n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES
            (o.runtime_id, o.workspace_id, o.agent_id, o.provider, o.model,
             o.created_at, -o.input_tokens, -o.output_tokens, -o.cache_read_tokens,
             -o.cache_write_tokens, -o.cost_usd, -1),
            (n.runtime_id, n.workspace_id, n.agent_id, n.provider, n.model,
             n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
             n.cache_write_tokens, n.cost_usd, 1))
            d(runtime_id, workspace_id, agent_id, provider, model, created_at, input_tokens,
              output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
        WHERE (o.runtime_id, o.workspace_id, o.agent_id, o.provider, o.model,
               o.created_at, o.input_tokens, o.output_tokens, o.cache_read_tokens,
               o.cache_write_tokens, o.cost_usd)
              IS DISTINCT FROM
              (n.runtime_id, n.workspace_id, n.agent_id, n.provider, n.model,
               n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
               n.cache_write_tokens, n.cost_usd)
        GROUP BY 1, 2, 3, 4, 5, 6, d.cost_usd IS NOT NULL;
        -- The pairs of rows that changed task, provider, model or scope, before and after.
        SELECT array_agg(p.task_id), array_agg(p.model) INTO v_task_ids, v_models
        FROM old_usage o
        JOIN new_usage n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.task_id, o.model), (n.task_id, n.model)) p(task_id, model)
        WHERE (o.task_id, o.provider, o.model, o.runtime_id, o.workspace_id)
              IS DISTINCT FROM (n.task_id, n.provider, n.model, n.runtime_id, n.workspace_id);
        PERFORM FROM agent_task_queue WHERE id IN (SELECT unnest(v_task_ids)) ORDER BY id
        FOR NO KEY UPDATE;
    END IF;
    IF v_task_ids IS NOT NULL THEN
        PERFORM multi_provider_sync(v_task_ids, v_models);
    END IF;
    RETURN NULL;
END
$$;

-- Recompute the segments of (runtime, UTC day) keys, cut by every registered offset, as
-- task_usage minus the deltas still queued (the folded state at this one snapshot), and
-- add the difference to the segments as they are. Callers hold the rollup lock (rollup_lock): two recomputes
-- of one key from different snapshots could otherwise write the older answer last.
CREATE OR REPLACE FUNCTION segment_recompute(p_runtime_ids uuid[], p_days date[])
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    -- Summed per segment first: the array holds segments, not rows (an array must stay
    -- under 1 GB).
    PERFORM rollup_add(ARRAY(
        WITH k AS (
            SELECT k.runtime_id, utc_start(k.day) AS lo, utc_start(k.day + 1) AS hi
            FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
        ), cut AS MATERIALIZED (  -- once, not per row
            SELECT usage_cuts() AS s
        ), delta AS (
            SELECT ROW(u.runtime_id, seg_start(u.created_at, cut.s), u.agent_id, u.provider,
                       u.model, u.cost_usd IS NOT NULL, u.workspace_id, u.input_tokens,
                       u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cost_usd,
                       1)::usage_rollup AS r
            FROM k
            JOIN task_usage u ON u.runtime_id = k.runtime_id
                AND u.created_at >= k.lo AND u.created_at < k.hi
            CROSS JOIN cut
            UNION ALL
            SELECT ROW(d.runtime_id, seg_start(d.created_at, cut.s), d.agent_id, d.provider,
                       d.model, d.cost_usd IS NOT NULL, d.workspace_id, -d.input_tokens,
                       -d.output_tokens, -d.cache_read_tokens, -d.cache_write_tokens,
                       -d.cost_usd, -d.rows)::usage_rollup
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
        )
        SELECT ROW((r).runtime_id, (r).seg_start, (r).agent_id, (r).provider, (r).model,
                   (r).reported, (r).workspace_id, sum((r).input_tokens),
                   sum((r).output_tokens), sum((r).cache_read_tokens),
                   sum((r).cache_write_tokens), sum((r).cost_usd),
                   sum((r).rows))::usage_rollup
        FROM delta
        GROUP BY (r).runtime_id, (r).seg_start, (r).agent_id, (r).provider, (r).model,
                 (r).reported, (r).workspace_id
    ));

    RETURN cardinality(p_runtime_ids);
END
$$;

-- Today's Multica: a failed task may say why (POST /api/tasks/{id}/fail), and the dashboard
-- counts failures by reason.
ALTER TABLE agent_task_queue ADD COLUMN failure_reason text NULL;

-- Today's Multica: issues may belong to a project, and its dashboard reports one project.
CREATE TABLE project (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    name         text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_project_workspace_id ON project (workspace_id);

ALTER TABLE issue ADD COLUMN project_id uuid NULL REFERENCES project (id) ON DELETE SET NULL;

CREATE INDEX idx_issue_project_id ON issue (project_id);

-- The tasks of a workspace (of one project's issues, when given) that ended (completed,
-- failed or cancelled) from p_since on: what today's Multica dashboard counts run time and
-- failures of.
CREATE FUNCTION ended_tasks(p_workspace_id uuid, p_since timestamptz, p_project_id uuid)
RETURNS SETOF agent_task_queue
LANGUAGE sql STABLE AS $$
    SELECT t.*
    FROM agent_task_queue t
    JOIN agent a ON a.id = t.agent_id
    WHERE a.workspace_id = p_workspace_id
      AND t.status IN ('completed', 'failed', 'cancelled')
      AND t.completed_at >= p_since
      AND (p_project_id IS NULL
           OR t.issue_id IN (SELECT i.id FROM issue i WHERE i.project_id = p_project_id))
$$;

-- Usage from the agent CLIs' own accounts: tasks carry their agent CLI's session and, when
-- imported or sent over OpenTelemetry, their source; usage keeps its hour-long cache writes
-- and the agent CLI's own cost estimate apart; the files imported and the cumulative
-- counters seen are remembered.
ALTER TABLE agent_task_queue
    ADD COLUMN session_id text NULL,
    ADD COLUMN source text NULL CHECK (source IN ('import:claude-code', 'import:codex',
                                                'otlp:log', 'otlp:metric'));

CREATE INDEX idx_agent_task_queue_session_id ON agent_task_queue (session_id, source)
    WHERE session_id IS NOT NULL;

-- Imported tasks have no issue, and no query looks for tasks without one.
DROP INDEX idx_agent_task_queue_issue_id;
CREATE INDEX idx_agent_task_queue_issue_id ON agent_task_queue (issue_id)
    WHERE issue_id IS NOT NULL;

ALTER TABLE task_usage ADD COLUMN cache_write_1h_tokens bigint NOT NULL DEFAULT 0
    CHECK (cache_write_1h_tokens BETWEEN 0 AND cache_write_tokens),
    ADD COLUMN estimated_cost_usd numeric(22, 10) NULL CHECK (estimated_cost_usd >= 0);

-- The files `usagemeter import` has read, so that a file unchanged since is not read again.
-- A changed file is read whole again: every record it holds has a fixed task id, so writing
-- it again changes nothing but what is new.
CREATE TABLE import_file (
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    source       text NOT NULL CHECK (source IN ('import:claude-code', 'import:codex')),
    path         text NOT NULL,
    size         bigint NOT NULL,
    mtime_ns     bigint NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, source, path)
);

-- The last point of each cumulative OpenTelemetry counter of usage, so that only what it
-- grew by counts: a series is a metric's attributes and start time, so a restarted exporter
-- starts a new one.
CREATE TABLE otlp_series (
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    series       text NOT NULL,  -- a digest of the metric, its attributes and start time
    time_ns      bigint NOT NULL,
    value        double precision NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, series)
);

-- INVARIANT: a session is counted from one source only, the highest of: a daemon, then
-- OpenTelemetry log events, then OpenTelemetry metrics, then an imported log. Writers of a
-- source share this lock per workspace; one that deletes a lower source's tasks of a session
-- (a daemon naming a session, OpenTelemetry seeing one first) takes it alone, so that no
-- lower source is writing that session meanwhile.
CREATE FUNCTION session_lock(p_workspace_id uuid)
RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('usagemeter sessions ' || p_workspace_id, 0)
$$;

-- Activity deltas are queued summed per statement, runtime and quarter hour: a statement
-- writing thousands of tasks queues a few rows.
ALTER TABLE activity_dirty ALTER COLUMN delta TYPE integer;

CREATE OR REPLACE FUNCTION queue_activity()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, usage_bin(started_at), count(*)
        FROM new_task WHERE started_at IS NOT NULL
        GROUP BY 1, 2;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, usage_bin(started_at), -count(*)
        FROM old_task WHERE started_at IS NOT NULL
        GROUP BY 1, 2;
    ELSE
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT d.runtime_id, usage_bin(d.started_at), sum(d.delta)
        FROM old_task o
        JOIN new_task n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.runtime_id, o.started_at, -1),
                                   (n.runtime_id, n.started_at, 1)) d(runtime_id, started_at, delta)
        WHERE (o.runtime_id, o.started_at) IS DISTINCT FROM (n.runtime_id, n.started_at)
          AND d.started_at IS NOT NULL
        GROUP BY 1, 2
        HAVING sum(d.delta) <> 0;
    END IF;
    RETURN NULL;
END
$$;

-- The seconds after 00:00 UTC of an instant (a cut, for the instants that are one).
CREATE OR REPLACE FUNCTION day_second(p_at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(date_part('epoch', p_at - date_bin('1 day', p_at,
                                                     timestamptz '2000-01-01 00:00Z')))::integer
$$;

-- The start of the segment of an instant: the last cut at or before it, of p_cuts
-- (usage_cuts()). Both functions are made of immutable parts only (date_bin, to_timestamp,
-- an interval's epoch), so that the planner inlines them: a timestamptz plus an interval is
-- only stable, and the SQL function built on it was called per row, 4 µs each, a sixth of
-- a tick (bench/RESULTS.md, 2026-12-03).
CREATE OR REPLACE FUNCTION seg_start(p_at timestamptz, p_cuts integer[])
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT date_bin('1 day', p_at,
                    to_timestamp(946684800 + p_cuts[width_bucket(day_second(p_at), p_cuts)]))
$$;

-- The workspace buckets and heads of a fold are summed from its workspace segments.
-- Add signed rows (each a usage_rollup row: a segment key and sums, negative to subtract)
-- to both segment tables, the workspace UTC day buckets and the heads of every cut after
-- the segment's start, and delete the rows left empty. Callers hold the rollup lock.
CREATE OR REPLACE FUNCTION rollup_add(p_rows usage_rollup[])
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
    ), w AS (  -- the workspace segments: what the workspace buckets and heads add up
        SELECT workspace_id, seg_start, provider, model, reported,
               sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens,
               sum(cache_write_tokens) AS cache_write_tokens, sum(cost_usd) AS cost_usd,
               sum(rows) AS rows
        FROM s
        GROUP BY 1, 2, 3, 4, 5
    ), ws AS (
        INSERT INTO usage_rollup_ws AS r
        SELECT * FROM w
        ON CONFLICT (workspace_id, seg_start, provider, model, reported)
        DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                      output_tokens = r.output_tokens + excluded.output_tokens,
                      cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                      cost_usd = r.cost_usd + excluded.cost_usd,
                      rows = r.rows + excluded.rows
    ), day AS (
        INSERT INTO usage_day_ws AS r
        SELECT workspace_id, utc_day(seg_start), provider, model, reported, sum(input_tokens),
               sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
               sum(cost_usd), sum(rows)
        FROM w
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (workspace_id, day, provider, model, reported)
        DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                      output_tokens = r.output_tokens + excluded.output_tokens,
                      cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                      cost_usd = r.cost_usd + excluded.cost_usd,
                      rows = r.rows + excluded.rows
    )
    -- From the workspace segments (a few per workspace, day and model), not from each
    -- runtime's: a row per segment and cut was most of a tick's time (bench/RESULTS.md).
    INSERT INTO usage_head_ws AS r
    SELECT w.workspace_id, c.cut, utc_day(w.seg_start), w.provider, w.model, w.reported,
           sum(w.input_tokens), sum(w.output_tokens), sum(w.cache_read_tokens),
           sum(w.cache_write_tokens), sum(w.cost_usd), sum(w.rows)
    FROM w
    JOIN usage_head_cut c ON day_second(w.seg_start) < c.cut
    GROUP BY 1, 2, 3, 4, 5, 6
    ON CONFLICT (workspace_id, cut, day, provider, model, reported)
    DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                  output_tokens = r.output_tokens + excluded.output_tokens,
                  cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                  cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                  cost_usd = r.cost_usd + excluded.cost_usd,
                  rows = r.rows + excluded.rows;

    -- Only rows that are all zero: while a new offset is being built, a row folded before it
    -- was cut may be subtracted from a later segment, which then holds no rows but not
    -- nothing until the re-cut (reads stay exact: both segments lie in one local day of
    -- every ready offset, in one UTC day, and on one side of every cut with heads).
    DELETE FROM usage_rollup
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
    DELETE FROM usage_rollup_ws
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
    DELETE FROM usage_day_ws
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
    DELETE FROM usage_head_ws
    WHERE rows = 0 AND (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,
                        coalesce(cost_usd, 0)) = (0, 0, 0, 0, 0);
$$;

-- A runtime with the caller's role, read by the authentication of a route that names a
-- runtime in the same statement (one statement less per runtime report).
CREATE FUNCTION runtime_access(p_id uuid, p_user_id uuid, p_daemon_workspace_id uuid)
RETURNS TABLE (id uuid, workspace_id uuid, timezone text, owner_id uuid, daemon_id text,
               visibility text, role text)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.workspace_id, r.timezone, r.owner_id, r.daemon_id, r.visibility,
           caller_role(r.workspace_id, p_user_id, p_daemon_workspace_id)
    FROM agent_runtime r
    WHERE r.id = p_id
$$;
