-- The tick: folds queued deltas into the rollup, re-cuts days for new offsets, builds the
-- day buckets of new zones. One tick at a time, under rollup_lock, each in one transaction
-- with the queue rows it deletes, so every snapshot sees a delta either queued or folded,
-- never both and never neither. Run by `usagemeter serve` every few seconds, by
-- `usagemeter rollup`, and by pg_cron where it is loaded (health.sql); all may run at once.

-- The one lock under which the rollup is written (transaction-scoped: a cancelled
-- statement cannot leak it).
CREATE FUNCTION rollup_lock(p_wait boolean)
RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF p_wait THEN
        PERFORM pg_advisory_xact_lock(hashtext('usagemeter rollup'));
        RETURN true;
    END IF;
    RETURN pg_try_advisory_xact_lock(hashtext('usagemeter rollup'));
END
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
CREATE FUNCTION rollup(p_limit integer DEFAULT 10000)
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

-- Add signed rows (each a usage_rollup row: a segment key and sums, negative to subtract)
-- to both segment tables, the workspace UTC day buckets and the heads of every cut after
-- the segment's start, and delete the rows left empty. Callers hold the rollup lock.
CREATE FUNCTION rollup_add(p_rows usage_rollup[])
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

-- Add signed rows (negative to subtract) to the day buckets and delete the buckets left all
-- zero. Each bucket named in p_rows, even by a row of zeros, is set to its new sums and its
-- cost priced from all its tokens when unreported (the cost_usd of such rows in p_rows is
-- ignored), so a recompute repairs costs as it repairs tokens, and zero rows re-price.
-- Buckets whose sums and cost stay the same are not written. Callers hold the rollup lock
-- (buckets are read, then written).
CREATE FUNCTION day_add(p_rows usage_day[])
RETURNS void
LANGUAGE sql AS $$
    WITH b AS (
        SELECT runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model,
               reported, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
               sum(cache_read_tokens) AS cache_read_tokens,
               sum(cache_write_tokens) AS cache_write_tokens,
               CASE WHEN reported THEN sum(cost_usd) ELSE 0 END AS cost_usd, sum(rows) AS rows
        FROM unnest(p_rows)
        GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9
    ), n AS (
        SELECT b.runtime_id, b.zone, b.day, b.utc_day, b.workspace_id, b.agent_id, b.provider,
               b.model, b.reported,
               coalesce(r.input_tokens, 0) + b.input_tokens AS input_tokens,
               coalesce(r.output_tokens, 0) + b.output_tokens AS output_tokens,
               coalesce(r.cache_read_tokens, 0) + b.cache_read_tokens AS cache_read_tokens,
               coalesce(r.cache_write_tokens, 0) + b.cache_write_tokens AS cache_write_tokens,
               coalesce(r.cost_usd, 0) + b.cost_usd AS cost_usd,
               coalesce(r.rows, 0) + b.rows AS rows
        FROM b
        LEFT JOIN usage_day r
            ON (r.runtime_id, r.zone, r.day, r.utc_day, r.workspace_id, r.agent_id,
                r.provider, r.model, r.reported)
               = (b.runtime_id, b.zone, b.day, b.utc_day, b.workspace_id, b.agent_id,
                  b.provider, b.model, b.reported)
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
           n.rows, n.zone
    FROM n
    LEFT JOIN price p ON NOT n.reported AND p.valid @> n.utc_day
        AND (p.workspace_id, p.provider, p.model) = (n.workspace_id, n.provider, n.model)
    ON CONFLICT (runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model,
                 reported)
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

-- Recompute the segments of (runtime, UTC day) keys, cut by every registered offset, as
-- task_usage minus the deltas still queued (the folded state at this one snapshot), and
-- add the difference to the segments as they are. Callers hold the rollup lock (rollup_lock): two recomputes
-- of one key from different snapshots could otherwise write the older answer last.
CREATE FUNCTION segment_recompute(p_runtime_ids uuid[], p_days date[])
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

CREATE FUNCTION day_recompute(p_runtime_ids uuid[], p_days date[], p_zone text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_rows usage_day[];
    v_read bigint;
BEGIN
    WITH k AS (
        SELECT k.runtime_id, k.day, z.zone,
               coalesce(utc_start(k.day), '-infinity') AS lo,
               coalesce(utc_start(k.day + 1), 'infinity') AS hi,
               -- a local date is within a day of its UTC date
               coalesce(k.day - 1, '-infinity') AS lo_day,
               coalesce(k.day + 1, 'infinity') AS hi_day
        FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
        JOIN usage_day_zone z ON z.runtime_id = k.runtime_id
            AND z.zone = coalesce(p_zone, z.zone)
    ), delta AS (
        SELECT u.runtime_id, k.zone, (u.created_at AT TIME ZONE k.zone)::date AS day,
               utc_day(u.created_at) AS utc_day, u.workspace_id, u.agent_id, u.provider,
               u.model, u.cost_usd IS NOT NULL AS reported, u.input_tokens, u.output_tokens,
               u.cache_read_tokens, u.cache_write_tokens, u.cost_usd, 1 AS rows, 1 AS read
        FROM k
        JOIN task_usage u ON u.runtime_id = k.runtime_id
            AND u.created_at >= k.lo AND u.created_at < k.hi
        UNION ALL
        SELECT d.runtime_id, k.zone, (d.created_at AT TIME ZONE k.zone)::date,
               utc_day(d.created_at), d.workspace_id, d.agent_id, d.provider, d.model,
               d.cost_usd IS NOT NULL, -d.input_tokens, -d.output_tokens,
               -d.cache_read_tokens, -d.cache_write_tokens, -d.cost_usd, -d.rows, 0
        FROM k
        JOIN usage_dirty d ON d.runtime_id = k.runtime_id
            AND d.created_at >= k.lo AND d.created_at < k.hi
        UNION ALL
        SELECT x.runtime_id, x.zone, x.day, x.utc_day, x.workspace_id, x.agent_id, x.provider,
               x.model, x.reported, -x.input_tokens, -x.output_tokens, -x.cache_read_tokens,
               -x.cache_write_tokens, -x.cost_usd, -x.rows, 0
        FROM k
        JOIN usage_day x ON x.runtime_id = k.runtime_id AND x.zone = k.zone
            AND x.day >= k.lo_day AND x.day <= k.hi_day
            AND x.utc_day = coalesce(k.day, x.utc_day)
    )
    -- Summed per bucket first: the array holds buckets, not rows (an array must stay under
    -- 1 GB).
    SELECT array_agg(ROW(b.runtime_id, b.day, b.utc_day, b.workspace_id, b.agent_id,
                         b.provider, b.model, b.reported, b.input_tokens, b.output_tokens,
                         b.cache_read_tokens, b.cache_write_tokens, b.cost_usd, b.rows,
                         b.zone)::usage_day),
           sum(b.read)
    INTO v_rows, v_read
    FROM (SELECT runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model,
                 reported, sum(input_tokens) AS input_tokens,
                 sum(output_tokens) AS output_tokens,
                 sum(cache_read_tokens) AS cache_read_tokens,
                 sum(cache_write_tokens) AS cache_write_tokens, sum(cost_usd) AS cost_usd,
                 sum(rows) AS rows, sum(read) AS read
          FROM delta
          GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9) b;
    PERFORM day_add(v_rows);
    RETURN coalesce(v_read, 0);
END
$$;

CREATE FUNCTION rollup_recompute(p_runtime_ids uuid[], p_days date[])
RETURNS integer
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM day_recompute(p_runtime_ids, p_days);
    RETURN segment_recompute(p_runtime_ids, p_days);
END
$$;

-- Build the heads of the ready cuts that have none yet. Offsets become ready in the tick,
-- under the rollup lock, when every segment is cut at them. The tick's statement that makes
-- them ready runs in nearly every tick, mostly changing nothing: the segments are read only
-- when a cut is new.
CREATE FUNCTION build_heads()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_cuts integer[];
BEGIN
    WITH c AS (
        INSERT INTO usage_head_cut (cut)
        SELECT DISTINCT (86400 - offset_s) % 86400 FROM usage_offset
        WHERE state = 'ready' AND offset_s <> 0
        ON CONFLICT DO NOTHING
        RETURNING cut
    )
    SELECT array_agg(cut) INTO v_cuts FROM c;
    IF v_cuts IS NOT NULL THEN
        INSERT INTO usage_head_ws
        SELECT x.workspace_id, c.cut, utc_day(x.seg_start), x.provider, x.model, x.reported,
               sum(x.input_tokens), sum(x.output_tokens), sum(x.cache_read_tokens),
               sum(x.cache_write_tokens), sum(x.cost_usd), sum(x.rows)
        FROM unnest(v_cuts) c(cut)
        JOIN usage_rollup_ws x ON day_second(x.seg_start) < c.cut
        GROUP BY 1, 2, 3, 4, 5, 6;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_usage_offset_heads
AFTER UPDATE OF state ON usage_offset
FOR EACH STATEMENT EXECUTE FUNCTION build_heads();
