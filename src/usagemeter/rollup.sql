-- The rollup's operations (its tables and functions: schema/buckets.sql, schema/tick.sql).

-- name: tick
-- One tick: NULL when another tick holds the lock, else the changes folded plus the
-- runtime days re-cut plus the runtimes whose day buckets were rebuilt.
SELECT rollup(%(limit)s) AS done;

-- name: vacuum_queue
-- On an autocommit connection (rollup.Vacuum says when).
VACUUM (SKIP_LOCKED) usage_dirty;

-- name: health
-- Cheap enough for every scrape: the queues are small, the rollup is not counted.
SELECT (SELECT count(*) FROM usage_dirty) AS queue_depth,
       (SELECT count(*) FROM usage_dirty WHERE held) AS held,
       coalesce(extract(epoch FROM now() - (SELECT min(queued_at) FROM usage_dirty)), 0)
           AS oldest_pending_seconds,
       (SELECT count(*) FROM usage_rebuild) AS rebuild_keys,
       (SELECT count(*) FROM usage_offset WHERE state <> 'ready') AS offsets_building,
       (SELECT count(*) FROM usage_offset) AS offsets,
       (SELECT count(*) FROM usage_day_zone WHERE NOT ready) AS zones_building,
       s.ticks, extract(epoch FROM s.last_tick_at) AS last_tick_at, s.last_keys,
       s.last_error, extract(epoch FROM s.last_error_at) AS last_error_at
FROM rollup_state s;

-- name: retry_held
SELECT rollup_retry_held() AS released;

-- name: backfill_keys
-- The (runtime, UTC day) keys with usage, segments or day buckets from p_from to p_to (UTC
-- dates).
SELECT runtime_id, day
FROM (SELECT runtime_id, utc_day(created_at) AS day FROM task_usage
      WHERE created_at >= utc_start(%(from)s) AND created_at < utc_start(%(to)s + 1)
      UNION
      SELECT runtime_id, utc_day(seg_start) FROM usage_rollup
      WHERE seg_start >= utc_start(%(from)s) AND seg_start < utc_start(%(to)s + 1)
      UNION
      SELECT runtime_id, utc_day FROM usage_day
      WHERE utc_day >= %(from)s AND utc_day <= %(to)s) k
ORDER BY day, runtime_id;

-- name: lock
-- The rollup lock until commit, waiting for a running tick.
SELECT rollup_lock(true);

-- name: recompute
SELECT rollup_recompute(%(runtime_ids)s::uuid[], %(days)s::date[]) AS keys;
