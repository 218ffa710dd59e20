-- Bucket reads are index-only scans: each bucket table's primary key carries the sums as
-- well as the key, so a read takes its buckets from a few adjacent index pages instead of
-- one heap page per bucket (buckets of one runtime are written over months, so they lie
-- scattered across the heap, more so the bigger it is). Updates gain nothing to lose: a
-- bucket's `rows` is in the predicate of its table's partial index, so no bucket update
-- was a HOT update before either.

ALTER TABLE usage_day
    DROP CONSTRAINT usage_day_pkey,
    ADD PRIMARY KEY (runtime_id, day, utc_day, workspace_id, agent_id, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows);

ALTER TABLE usage_rollup
    DROP CONSTRAINT usage_rollup_pkey,
    ADD PRIMARY KEY (runtime_id, seg_start, workspace_id, agent_id, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows);

ALTER TABLE usage_rollup_ws
    DROP CONSTRAINT usage_rollup_ws_pkey,
    ADD PRIMARY KEY (workspace_id, seg_start, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows);
