-- The OpenTelemetry receiver (otlp.py): the last point seen of each cumulative counter.

-- name: add_series
INSERT INTO otlp_series (workspace_id, series, time_ns, value)
SELECT %(workspace_id)s, s, -1, 0 FROM unnest(%(series)s::text[]) s
ORDER BY s
ON CONFLICT (workspace_id, series) DO NOTHING;

-- name: lock_series
-- Held to the end of the export's transaction: concurrent exports of one series (a retry
-- beside the next export) count each point once.
SELECT series, time_ns, value FROM otlp_series
WHERE workspace_id = %(workspace_id)s AND series = ANY(%(series)s)
ORDER BY series
FOR UPDATE;

-- name: save_series
UPDATE otlp_series o
SET time_ns = n.time_ns, value = n.value, updated_at = now()
FROM unnest(%(series)s::text[], %(times)s::bigint[], %(values)s::float8[]) n(series, time_ns, value)
WHERE o.workspace_id = %(workspace_id)s AND o.series = n.series;
