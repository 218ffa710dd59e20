-- Health: the tick's own record, read by `usagemeter status` and /metrics (with the queue's
-- depth and age), and its schedule under pg_cron.

-- Health of the tick (one row).
CREATE TABLE rollup_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    ticks        bigint NOT NULL DEFAULT 0,
    last_tick_at timestamptz NULL,
    last_keys    integer NOT NULL DEFAULT 0,
    -- The last failure a tick isolated (deltas held), and when.
    last_error    text NULL,
    last_error_at timestamptz NULL
);
INSERT INTO rollup_state DEFAULT VALUES;

-- Under pg_cron, tick the rollup every minute (its finest schedule) from the database
-- itself. Only where pg_cron is loaded for this database (shared_preload_libraries and
-- cron.database_name) and may be created; everywhere else this does nothing, and
-- `usagemeter serve` or `usagemeter rollup --loop` tick instead (all of them may run at
-- once: one tick at a time holds the rollup lock, the others skip).
DO $$
BEGIN
    IF current_setting('cron.database_name', true) = current_database()
       AND EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pg_cron') THEN
        CREATE EXTENSION IF NOT EXISTS pg_cron;
        PERFORM cron.schedule('usagemeter-rollup', '* * * * *', 'SELECT rollup()');
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE 'pg_cron is loaded but this role may not create it: no rollup schedule';
END
$$;
