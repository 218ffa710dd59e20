-- Release 0.1.0: the whole schema as src/usagemeter/schema/ defined it at that release.
-- A database made by the development versions before 0.1.0 (their last migration being
-- 0024_runtime_zones_capped) has this same catalog and is recorded as at this baseline.

-- The data model: users, workspaces and their members, runtimes, agents, issues, tasks, and
-- the usage that tasks report; access tokens. Table and column names are those of the
-- Multica platform's schema, which the API mirrors.

CREATE TABLE "user" (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL DEFAULT '',
    email      text NOT NULL UNIQUE,
    timezone   text NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE workspace (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL,
    slug       text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE member (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    user_id      uuid NOT NULL REFERENCES "user" (id) ON DELETE CASCADE,
    role         text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, user_id)
);

CREATE INDEX idx_member_user_id ON member (user_id);

CREATE TABLE agent_runtime (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id     uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    daemon_id        text NULL,
    name             text NOT NULL,
    runtime_mode     text NOT NULL CHECK (runtime_mode IN ('local', 'cloud')),
    provider         text NOT NULL,
    status           text NOT NULL DEFAULT 'offline' CHECK (status IN ('online', 'offline')),
    device_info      text NOT NULL DEFAULT '',
    metadata         jsonb NOT NULL DEFAULT '{}',
    owner_id         uuid NULL REFERENCES "user" (id) ON DELETE SET NULL,
    last_seen_at     timestamptz NULL,
    timezone         text NOT NULL DEFAULT 'UTC',
    legacy_daemon_id text NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, daemon_id, provider)
);

CREATE INDEX idx_agent_runtime_workspace_id_created_at ON agent_runtime (workspace_id, created_at);

CREATE TABLE agent (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    name         text NOT NULL,
    runtime_id   uuid NOT NULL REFERENCES agent_runtime (id) ON DELETE RESTRICT,
    owner_id     uuid NULL REFERENCES "user" (id) ON DELETE SET NULL,
    archived_at  timestamptz NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (workspace_id, name)
);

CREATE INDEX idx_agent_runtime_id ON agent (runtime_id);

CREATE TABLE issue (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspace (id) ON DELETE CASCADE,
    title        text NOT NULL,
    number       integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_issue_workspace_id_number ON issue (workspace_id, number);

-- Issue numbers are per workspace; the counter row lock serialises concurrent creates.
CREATE TABLE issue_counter (
    workspace_id uuid PRIMARY KEY REFERENCES workspace (id) ON DELETE CASCADE,
    last_number  integer NOT NULL
);

CREATE TABLE agent_task_queue (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id     uuid NOT NULL REFERENCES agent (id) ON DELETE CASCADE,
    runtime_id   uuid NOT NULL REFERENCES agent_runtime (id) ON DELETE CASCADE,
    issue_id     uuid NULL REFERENCES issue (id) ON DELETE CASCADE,
    status       text NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'dispatched', 'running', 'completed', 'failed', 'cancelled')),
    started_at   timestamptz NULL,
    completed_at timestamptz NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_agent_task_queue_agent_id ON agent_task_queue (agent_id);

CREATE INDEX idx_agent_task_queue_runtime_id_started_at ON agent_task_queue (runtime_id, started_at);

CREATE INDEX idx_agent_task_queue_issue_id ON agent_task_queue (issue_id);

CREATE TABLE task_usage (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_id            uuid NOT NULL REFERENCES agent_task_queue (id) ON DELETE CASCADE,
    provider           text NOT NULL DEFAULT '',
    model              text NOT NULL,
    input_tokens       bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens      bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cache_read_tokens  bigint NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0),
    cache_write_tokens bigint NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- The cost the provider reported for the row (USD); NULL: estimate it from prices.
    cost_usd           numeric(22, 10) NULL CHECK (cost_usd >= 0),
    -- INVARIANT: the workspace (of the task's agent), runtime and agent of the row's task,
    -- kept by the triggers of capture.sql, so that reports read this one table by index
    -- and every change to usage (insert, correction, delete, cascade, reassignment) shows
    -- on the usage row itself with its whole key.
    workspace_id       uuid NOT NULL,
    runtime_id         uuid NOT NULL,
    agent_id           uuid NOT NULL,
    UNIQUE (task_id, provider, model)
);

CREATE INDEX idx_task_usage_created_at ON task_usage (created_at);

CREATE INDEX idx_task_usage_runtime_id_created_at ON task_usage (runtime_id, created_at);

CREATE INDEX idx_task_usage_workspace_id_created_at ON task_usage (workspace_id, created_at);

CREATE TABLE api_token (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind         text NOT NULL CHECK (kind IN ('pat', 'daemon')),
    token_hash   bytea NOT NULL UNIQUE,
    name         text NOT NULL DEFAULT '',
    user_id      uuid NULL REFERENCES "user" (id) ON DELETE CASCADE,
    workspace_id uuid NULL REFERENCES workspace (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NULL,
    CHECK ((kind = 'pat' AND user_id IS NOT NULL) OR (kind = 'daemon' AND workspace_id IS NOT NULL))
);

CREATE FUNCTION caller_role(p_workspace_id uuid, p_user_id uuid, p_daemon_workspace_id uuid)
RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT CASE
        WHEN p_daemon_workspace_id IS NOT NULL THEN
            CASE WHEN p_daemon_workspace_id = p_workspace_id THEN 'daemon' END
        ELSE (SELECT m.role FROM member m
              WHERE m.workspace_id = p_workspace_id AND m.user_id = p_user_id)
    END
$$;

-- INVARIANT: only rows of the same workspace and provider merge; agents and tasks move to
-- the new row before the old row is deleted, so its cascade removes nothing.
CREATE FUNCTION merge_legacy_runtimes(p_runtime_id uuid, p_legacy_ids text[])
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

-- A runtime's JSON as the API answers it (docs/api.md), rendered in one place.
CREATE FUNCTION launch_header(p_provider text)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_provider
        WHEN 'claude' THEN 'claude (stream-json)'
        WHEN 'codex' THEN 'codex app-server'
        WHEN 'copilot' THEN 'copilot (json)'
        WHEN 'cursor' THEN 'cursor-agent (stream-json)'
        WHEN 'gemini' THEN 'gemini (stream-json)'
        WHEN 'hermes' THEN 'hermes acp'
        WHEN 'openclaw' THEN 'openclaw agent (json)'
        WHEN 'opencode' THEN 'opencode run (json)'
        WHEN 'pi' THEN 'pi (json mode)'
        WHEN 'kimi' THEN 'kimi acp'
        WHEN 'kiro' THEN 'kiro-cli acp'
        ELSE ''
    END
$$;

CREATE FUNCTION rfc3339(p_ts timestamptz)
RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT to_char(p_ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE FUNCTION runtime_json(r agent_runtime)
RETURNS json
LANGUAGE sql STABLE AS $$
    SELECT json_build_object(
        'id', r.id,
        'workspace_id', r.workspace_id,
        'daemon_id', r.daemon_id,
        'name', r.name,
        'runtime_mode', r.runtime_mode,
        'provider', r.provider,
        'launch_header', launch_header(r.provider),
        'status', r.status,
        'device_info', r.device_info,
        'metadata', coalesce(r.metadata, '{}'::jsonb),
        'owner_id', r.owner_id,
        'timezone', r.timezone,
        'last_seen_at', rfc3339(r.last_seen_at),
        'created_at', rfc3339(r.created_at),
        'updated_at', rfc3339(r.updated_at)
    )
$$;

-- Time: UTC days, local days, report windows, and the cuts that split UTC days.
--
-- A report is asked in a zone (IANA name) and counts usage by local date or hour there.
-- The rollup stores sums per *segment*: the part of a UTC day between two consecutive
-- cuts. A cut is the local midnight of a UTC offset in use, in seconds after 00:00 UTC;
-- 00:00 UTC itself is always one. For a zone whose offsets are all cuts, every local day is
-- an exact union of segments, DST days included; the local date of a segment is the local
-- date of its start, and every segment lies in one UTC day, which has one price.

-- The UTC date of an instant: the unit of price validity.
CREATE FUNCTION utc_day(p_at timestamptz)
RETURNS date
LANGUAGE sql IMMUTABLE AS $$
    SELECT (p_at AT TIME ZONE 'UTC')::date
$$;

-- 00:00 UTC of a date.
CREATE FUNCTION utc_start(p_day date)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT p_day::timestamp AT TIME ZONE 'UTC'
$$;

-- Local midnight of today minus p_days, as an instant; DST-safe because the local date is
-- shifted first and converted back through the zone.
CREATE FUNCTION usage_since(p_now timestamptz, p_tz text, p_days integer)
RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT (((p_now AT TIME ZONE p_tz)::date - p_days)::timestamp AT TIME ZONE p_tz)
$$;

-- The UTC offsets (seconds) of a zone at every local midnight and noon of the dates from
-- p_from - 1 to p_to + 1: every offset at which its local date changes in that span.
CREATE FUNCTION zone_offsets(p_zone text, p_from date, p_to date)
RETURNS SETOF integer
LANGUAGE sql STABLE AS $$
    SELECT DISTINCT extract(epoch FROM t.local - (t.local AT TIME ZONE p_zone) AT TIME ZONE 'UTC')::int
    FROM generate_series((p_from - 1)::timestamp, (p_to + 1)::timestamp, interval '12 hours') t(local)
$$;

-- UTC offsets (seconds east) whose local midnights are cuts: those of every zone a runtime
-- or user has, or a report was asked in (capture.sql registers them). 'new' offsets are
-- cut by every fold and recompute; a rebuild round re-cuts the older days ('building'),
-- and then they are 'ready' for reads.
CREATE TABLE usage_offset (
    offset_s integer PRIMARY KEY CHECK (offset_s > -86400 AND offset_s < 86400),
    state    text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'building', 'ready')),
    added_at timestamptz NOT NULL DEFAULT now()
);
-- 00:00 UTC is always a cut: prices are per UTC day, so no segment spans two.
INSERT INTO usage_offset (offset_s, state) VALUES (0, 'ready');

-- The cuts of every UTC day in seconds after 00:00 UTC, ascending (0 first).
CREATE FUNCTION usage_cuts()
RETURNS integer[]
LANGUAGE sql STABLE AS $$
    SELECT array_agg(DISTINCT (86400 - offset_s) % 86400 ORDER BY (86400 - offset_s) % 86400)
    FROM usage_offset
$$;

-- The start of the segment of an instant: the last cut at or before it, of p_cuts
-- (usage_cuts()).
CREATE FUNCTION seg_start(p_at timestamptz, p_cuts integer[])
RETURNS timestamptz
LANGUAGE sql IMMUTABLE AS $$
    SELECT utc_start(utc_day(p_at)) + p_cuts[width_bucket(
        floor(extract(epoch FROM p_at - utc_start(utc_day(p_at))))::int, p_cuts)]
        * interval '1 second'
$$;

-- The seconds after 00:00 UTC of an instant (a cut, for the instants that are one).
CREATE FUNCTION day_second(p_at timestamptz)
RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT floor(extract(epoch FROM p_at - utc_start(utc_day(p_at))))::int
$$;

-- The cuts that have heads: every ready offset's but 0. A cut gets its heads in the
-- statement that makes its offset ready, from the segments, which are then cut at it.
CREATE TABLE usage_head_cut (
    cut integer PRIMARY KEY CHECK (cut > 0 AND cut < 86400)
);

-- Where the rollup may serve a read in p_tz from p_since: up to local midnight after
-- tomorrow, when every offset of p_tz at a date change in that span is ready; else nowhere
-- (returns p_since). Usage at or after the returned instant is read raw. In plpgsql, whose
-- plan of the query is kept for the session (an SQL function that cannot be inlined is
-- planned again at every call).
CREATE FUNCTION rollup_end(p_tz text, p_since timestamptz, p_enabled boolean)
RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (
        SELECT CASE WHEN p_enabled AND isfinite(p_since) AND NOT EXISTS (
                        SELECT FROM zone_offsets(p_tz, (p_since AT TIME ZONE p_tz)::date, e.d) o
                        WHERE NOT EXISTS (SELECT FROM usage_offset x
                                          WHERE x.offset_s = o AND x.state = 'ready'))
                    THEN greatest(p_since, e.d::timestamp AT TIME ZONE p_tz)
                    ELSE p_since END
        FROM (SELECT (now() AT TIME ZONE p_tz)::date + 2 AS d) e
    );
END
$$;

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
-- a 90-day report) where the result cannot overflow, i.e. below 1e10 tokens at a price
-- below $92,000 per million tokens; by the numeric function above that (and for usage
-- without a price, which it prices at 0).
CREATE FUNCTION usage_cost_units(p_reported numeric,
                                 p_input bigint, p_output bigint,
                                 p_cache_read bigint, p_cache_write bigint,
                                 p_price token_price)
RETURNS numeric
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(p_reported * 10000000000,
                    CASE WHEN p_input + p_output + p_cache_read + p_cache_write < 10000000000
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

-- Tokens without a cost, as usage_unpriced_tokens(numeric, ...) has them, for token counts
-- as stored: in bigint arithmetic.
CREATE FUNCTION usage_unpriced_tokens(p_reported numeric,
                                      p_input bigint, p_output bigint,
                                      p_cache_read bigint, p_cache_write bigint,
                                      p_price token_price)
RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_reported IS NULL AND p_price IS NULL
                THEN p_input + p_output + p_cache_read + p_cache_write ELSE 0 END
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

CREATE AGGREGATE usage_sum(bigint) (sfunc = int8pl, stype = bigint, combinefunc = int8pl,
                                    parallel = safe);

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

-- The rollup's tables: exact sums that reports read instead of task_usage.
--
-- Every table here is kept by the tick (tick.sql) from the deltas that capture.sql queues,
-- and each has the same invariant: its rows plus the deltas still queued equal the sums of
-- task_usage at every snapshot, so a read that adds the queued deltas is exact whatever
-- the tick has done. Rows folded down to nothing are deleted by the next tick through the
-- partial "empty" indexes, without scanning a table. See docs/rollup.md.

-- Segments: sums per (runtime, segment start, workspace, agent, provider, model, whether
-- the rows' cost was reported). The workspace is part of the key because a change may move
-- usage between workspaces (an agent moved).
-- INVARIANT: for every key, usage_rollup + the deltas still queued in usage_dirty = the
-- sums of task_usage, at every snapshot (writers queue, ticks fold, each in one
-- transaction). cost_usd sums the reported costs (reported rows only).
CREATE TABLE usage_rollup (
    runtime_id         uuid NOT NULL,
    seg_start          timestamptz NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    workspace_id       uuid NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,   -- sum of the reported costs (reported segments)
    rows               integer NOT NULL,
    PRIMARY KEY (runtime_id, seg_start, workspace_id, agent_id, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
);

-- Segments folded down to no rows, deleted by the tick without scanning the table.
CREATE INDEX idx_usage_rollup_empty ON usage_rollup (runtime_id) WHERE rows = 0;

-- INVARIANT: usage_rollup_ws = the sums of usage_rollup per (workspace, segment start,
-- provider, model, reported), kept by the same folds and recomputes. Workspace reports
-- read it: about a tenth of the rows (no agent and runtime dimension).
CREATE TABLE usage_rollup_ws (
    workspace_id       uuid NOT NULL,
    seg_start          timestamptz NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, seg_start, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
);

CREATE INDEX idx_usage_rollup_ws_empty ON usage_rollup_ws (workspace_id) WHERE rows = 0;

-- The zones each runtime's day buckets are cut in: its own, its former own ones, and
-- those its daily report was read in (at most 8, see register_runtime_zone). ready: that
-- zone's buckets hold every folded row of the runtime; false from the zone's registration
-- until a tick has built them (reads in the meantime use the segments).
CREATE TABLE usage_day_zone (
    runtime_id uuid NOT NULL,
    zone       text NOT NULL,
    ready      boolean NOT NULL,
    PRIMARY KEY (runtime_id, zone)
);

-- Day buckets: a runtime's sums per local date in one of its zones and UTC day (prices
-- are per UTC day, so a local date is one or two buckets per key; the daily rhythm is in
-- the runtime's zone and its nights, where UTC midnight falls for most zones, are quiet).
-- A runtime report by date in that zone reads one bucket per key and date instead of the
-- day's segments.
-- INVARIANT: for a ready (runtime, zone), usage_day + the deltas still queued = the sums of
-- task_usage per key, at every snapshot (the tick folds both in one transaction).
CREATE TABLE usage_day (
    runtime_id         uuid NOT NULL,
    day                date NOT NULL,   -- local date in `zone`
    utc_day            date NOT NULL,
    workspace_id       uuid NOT NULL,
    agent_id           uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    zone               text NOT NULL,
    PRIMARY KEY (runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, rows)
);

CREATE INDEX idx_usage_day_empty ON usage_day (runtime_id) WHERE rows = 0;

-- INVARIANT: usage_day_ws = the sums of usage_rollup_ws per (workspace, UTC day of the
-- segment, provider, model, reported): 00:00 UTC is always a cut, so a segment lies in one
-- UTC day. rollup_add, which writes both, keeps it.
CREATE TABLE usage_day_ws (
    workspace_id       uuid NOT NULL,
    day                date NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, day, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows)
);

CREATE INDEX idx_usage_day_ws_empty ON usage_day_ws (workspace_id) WHERE rows = 0;

-- INVARIANT: for every cut in usage_head_cut, usage_head_ws = the sums of usage_rollup_ws
-- per (workspace, UTC day of the segment, provider, model, reported) over the segments
-- whose day_second is below the cut. rollup_add, which writes the segments, keeps it.
CREATE TABLE usage_head_ws (
    workspace_id       uuid NOT NULL,
    cut                integer NOT NULL,
    day                date NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    reported           boolean NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               integer NOT NULL,
    PRIMARY KEY (workspace_id, cut, day, provider, model, reported)
        INCLUDE (input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd,
                 rows)
);

CREATE INDEX idx_usage_head_ws_empty ON usage_head_ws (workspace_id) WHERE rows = 0;

-- (runtime, UTC day) keys still to be re-cut for offsets being built. Not pending for
-- reads: their segments are exact for the ready offsets.
CREATE TABLE usage_rebuild (
    runtime_id uuid NOT NULL,
    day        date NOT NULL,
    PRIMARY KEY (runtime_id, day)
);

-- (task, model) pairs reported under more than one provider (normally none). Segments
-- count rows; a read counts such a task once per group from its raw rows. Found by the
-- tick (which sees every committed row of a key it recomputes), so no writer races.
CREATE TABLE usage_multi_provider (
    task_id uuid NOT NULL REFERENCES agent_task_queue (id) ON DELETE CASCADE,
    model   text NOT NULL,
    PRIMARY KEY (task_id, model)
);

-- Capture: what every write to usage and tasks leaves for the rollup, in the writer's own
-- transaction.
--
-- Usage rows carry the keys of their task (filled and checked here, moved when a task or
-- agent moves), every change to them queues deltas (statement-level triggers: a per-row
-- trigger cost about five times the ingest throughput), and the zones that reports are
-- asked in are registered so the tick builds their cuts and buckets.

-- INVARIANT: (workspace_id, runtime_id, agent_id) of a usage row are those of its task (the
-- workspace being the task's agent's). A writer may leave them out (plain SQL does): a row
-- trigger fills them. A writer that knows them (the ingest upsert, from the join it makes
-- anyway) passes them and skips that per-row lookup, which costs ~40% of insert
-- throughput; one join per statement then checks every written row.
CREATE FUNCTION fill_usage_keys()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT a.workspace_id, t.runtime_id, t.agent_id
    INTO NEW.workspace_id, NEW.runtime_id, NEW.agent_id
    FROM agent_task_queue t
    JOIN agent a ON a.id = t.agent_id
    WHERE t.id = NEW.task_id;
    IF NOT FOUND THEN
        -- The foreign key would say so after this trigger; say it the same way first.
        RAISE EXCEPTION 'task % of task_usage does not exist', NEW.task_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER trg_task_usage_keys
BEFORE INSERT ON task_usage
FOR EACH ROW
WHEN (NEW.workspace_id IS NULL OR NEW.runtime_id IS NULL OR NEW.agent_id IS NULL)
EXECUTE FUNCTION fill_usage_keys();

CREATE TRIGGER trg_task_usage_keys_new_task
BEFORE UPDATE OF task_id ON task_usage
FOR EACH ROW
WHEN (OLD.task_id IS DISTINCT FROM NEW.task_id)
EXECUTE FUNCTION fill_usage_keys();

CREATE FUNCTION check_usage_keys()
RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_task uuid;
BEGIN
    SELECT n.task_id INTO v_task
    FROM written_usage n
    JOIN agent_task_queue t ON t.id = n.task_id
    JOIN agent a ON a.id = t.agent_id
    WHERE (n.workspace_id, n.runtime_id, n.agent_id)
          IS DISTINCT FROM (a.workspace_id, t.runtime_id, t.agent_id)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'usage of task % names another workspace, runtime or agent than its task',
            v_task USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_task_usage_keys_check_insert
AFTER INSERT ON task_usage
REFERENCING NEW TABLE AS written_usage
FOR EACH STATEMENT EXECUTE FUNCTION check_usage_keys();

CREATE TRIGGER trg_task_usage_keys_check_update
AFTER UPDATE ON task_usage
REFERENCING NEW TABLE AS written_usage
FOR EACH STATEMENT EXECUTE FUNCTION check_usage_keys();

-- A task moved to another runtime or agent takes its usage along.
CREATE FUNCTION move_task_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_usage
    SET runtime_id = NEW.runtime_id,
        agent_id = NEW.agent_id,
        workspace_id = (SELECT a.workspace_id FROM agent a WHERE a.id = NEW.agent_id)
    WHERE task_id = NEW.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_task_queue_move_usage
AFTER UPDATE OF runtime_id, agent_id ON agent_task_queue
FOR EACH ROW
WHEN (OLD.runtime_id IS DISTINCT FROM NEW.runtime_id OR OLD.agent_id IS DISTINCT FROM NEW.agent_id)
EXECUTE FUNCTION move_task_usage();

-- An agent moved to another workspace takes its tasks' usage along.
CREATE FUNCTION move_agent_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE task_usage SET workspace_id = NEW.workspace_id
    WHERE task_id IN (SELECT t.id FROM agent_task_queue t WHERE t.agent_id = NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_move_usage
AFTER UPDATE OF workspace_id ON agent
FOR EACH ROW
WHEN (OLD.workspace_id IS DISTINCT FROM NEW.workspace_id)
EXECUTE FUNCTION move_agent_usage();

-- The queue of usage deltas. INVARIANT: every committed change to task_usage commits, in
-- the same transaction, -1 times each old row and +1 times each new row here; so every
-- bucket plus the deltas still queued equals the sums of task_usage at every snapshot.
-- Append-only (plain inserts, duplicates allowed), so writers never contend on it.
CREATE TABLE usage_dirty (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runtime_id         uuid NOT NULL,
    workspace_id       uuid NOT NULL,
    agent_id           uuid NOT NULL,
    task_id            uuid NOT NULL,
    provider           text NOT NULL,
    model              text NOT NULL,
    created_at         timestamptz NOT NULL,
    input_tokens       bigint NOT NULL,
    output_tokens      bigint NOT NULL,
    cache_read_tokens  bigint NOT NULL,
    cache_write_tokens bigint NOT NULL,
    cost_usd           numeric NULL,
    rows               smallint NOT NULL CHECK (rows IN (-1, 1)),
    queued_at          timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idx_usage_dirty_runtime_id_created_at ON usage_dirty (runtime_id, created_at);

CREATE INDEX idx_usage_dirty_workspace_id_created_at ON usage_dirty (workspace_id, created_at);

CREATE FUNCTION queue_usage()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, task_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, task_id, provider, model, created_at,
               input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, 1
        FROM new_usage;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, task_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT runtime_id, workspace_id, agent_id, task_id, provider, model, created_at,
               -input_tokens, -output_tokens, -cache_read_tokens, -cache_write_tokens,
               -cost_usd, -1
        FROM old_usage;
    ELSE
        -- Rows whose counted values changed (a repeated report only bumps updated_at).
        INSERT INTO usage_dirty (runtime_id, workspace_id, agent_id, task_id, provider, model,
                                 created_at, input_tokens, output_tokens, cache_read_tokens,
                                 cache_write_tokens, cost_usd, rows)
        SELECT d.*
        FROM old_usage o
        JOIN new_usage n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES
            (o.runtime_id, o.workspace_id, o.agent_id, o.task_id, o.provider, o.model,
             o.created_at, -o.input_tokens, -o.output_tokens, -o.cache_read_tokens,
             -o.cache_write_tokens, -o.cost_usd, -1),
            (n.runtime_id, n.workspace_id, n.agent_id, n.task_id, n.provider, n.model,
             n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
             n.cache_write_tokens, n.cost_usd, 1)) d
        WHERE (o.runtime_id, o.workspace_id, o.agent_id, o.task_id, o.provider, o.model,
               o.created_at, o.input_tokens, o.output_tokens, o.cache_read_tokens,
               o.cache_write_tokens, o.cost_usd)
              IS DISTINCT FROM
              (n.runtime_id, n.workspace_id, n.agent_id, n.task_id, n.provider, n.model,
               n.created_at, n.input_tokens, n.output_tokens, n.cache_read_tokens,
               n.cache_write_tokens, n.cost_usd);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_task_usage_queue_insert
AFTER INSERT ON task_usage
REFERENCING NEW TABLE AS new_usage
FOR EACH STATEMENT EXECUTE FUNCTION queue_usage();

CREATE TRIGGER trg_task_usage_queue_update
AFTER UPDATE ON task_usage
REFERENCING OLD TABLE AS old_usage NEW TABLE AS new_usage
FOR EACH STATEMENT EXECUTE FUNCTION queue_usage();

CREATE TRIGGER trg_task_usage_queue_delete
AFTER DELETE ON task_usage
REFERENCING OLD TABLE AS old_usage
FOR EACH STATEMENT EXECUTE FUNCTION queue_usage();

CREATE FUNCTION clear_rollup()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM usage_rollup;
    DELETE FROM usage_rollup_ws;
    DELETE FROM usage_day_ws;
    DELETE FROM usage_head_ws;
    DELETE FROM usage_day;
    UPDATE usage_day_zone SET ready = true WHERE NOT ready;  -- nothing left to rebuild
    DELETE FROM usage_dirty;
    DELETE FROM usage_rebuild;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_task_usage_truncate
AFTER TRUNCATE ON task_usage
FOR EACH STATEMENT EXECUTE FUNCTION clear_rollup();

-- Zones: every zone a runtime or user has, or a report was asked in, has its offsets (over
-- a year either side of today) registered as cuts from now on, and an activity histogram.
-- A new offset is cut in new folds at once and in older days by the tick's next rebuild
-- round; until then, reads in its zones are exact from raw rows for the affected span.
CREATE FUNCTION register_zone(p_zone text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_offset (offset_s)
    SELECT o FROM zone_offsets(p_zone, utc_day(now()) - 366, utc_day(now()) + 366) o
    ON CONFLICT DO NOTHING;
    INSERT INTO activity_zone (zone) VALUES (p_zone) ON CONFLICT DO NOTHING;
$$;

CREATE FUNCTION register_row_zone()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.timezone IS NOT NULL THEN
        PERFORM register_zone(NEW.timezone);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_runtime_zone
AFTER INSERT OR UPDATE OF timezone ON agent_runtime
FOR EACH ROW EXECUTE FUNCTION register_row_zone();

CREATE TRIGGER trg_user_zone
AFTER INSERT OR UPDATE OF timezone ON "user"
FOR EACH ROW EXECUTE FUNCTION register_row_zone();

-- A new runtime has no usage yet: its buckets are ready. A runtime's new zone waits for a
-- tick to build its buckets; those of its zones before stay (they may be read still).
CREATE FUNCTION runtime_day_zone()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO usage_day_zone (runtime_id, zone, ready)
    VALUES (NEW.id, NEW.timezone, TG_OP = 'INSERT')
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_runtime_day_zone
AFTER INSERT OR UPDATE OF timezone ON agent_runtime
FOR EACH ROW EXECUTE FUNCTION runtime_day_zone();

-- A read adds a zone to a runtime's day buckets only while the runtime has fewer than 8
-- (its own, its former own ones, and those its daily report was read in first; a zone
-- change always adds the new own zone). A read in any other zone is exact from the
-- segments, as is a read in a zone whose buckets are not built yet. Without a bound, a query parameter could have
-- every runtime's buckets cut in each of the ~600 zones there are, each adding about one row
-- per key and local date. First reads in new zones at the same instant may each add one past
-- it: the bound is on storage, not a count to keep exact.
CREATE FUNCTION register_runtime_zone(p_runtime_id uuid, p_zone text)
RETURNS void
LANGUAGE sql AS $$
    INSERT INTO usage_day_zone (runtime_id, zone, ready)
    SELECT r.id, p_zone, false FROM agent_runtime r
    WHERE r.id = p_runtime_id
      AND (SELECT count(*) FROM usage_day_zone z WHERE z.runtime_id = r.id) < 8
    ON CONFLICT DO NOTHING;
$$;

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

-- One tick: fold up to p_limit queued deltas (oldest first) into the segments and into the
-- day buckets of every zone of their runtime, re-cut up to p_limit / 100 rebuild keys (a key
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
    v_rows usage_rollup[];
    v_day_rows usage_day[];
    v_task_ids uuid[];
    v_models text[];
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

    WITH batch AS (
        -- = ANY(ARRAY(...)): probes by primary key, never a scan of a queue full of rows
        -- deleted by earlier ticks and not yet vacuumed.
        DELETE FROM usage_dirty
        WHERE id = ANY (ARRAY(SELECT id FROM usage_dirty ORDER BY id LIMIT p_limit))
        RETURNING *
    ), cut AS MATERIALIZED (  -- once, not per row
        SELECT usage_cuts() AS s
    ), seg AS (
        SELECT array_agg(ROW(b.runtime_id, seg_start(b.created_at, cut.s), b.agent_id,
                             b.provider, b.model, b.cost_usd IS NOT NULL, b.workspace_id,
                             b.input_tokens, b.output_tokens, b.cache_read_tokens,
                             b.cache_write_tokens, b.cost_usd, b.rows)::usage_rollup) AS rows,
               array_agg(b.task_id) AS task_ids, array_agg(b.model) AS models
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
    SELECT seg.rows, day.rows, seg.task_ids, seg.models
    INTO v_rows, v_day_rows, v_task_ids, v_models
    FROM seg, day;
    PERFORM rollup_add(v_rows);
    PERFORM day_add(v_day_rows);
    PERFORM multi_provider_sync(v_task_ids, v_models);
    v_done := coalesce(cardinality(v_rows), 0);

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
    ), ws AS (
        INSERT INTO usage_rollup_ws AS r
        SELECT workspace_id, seg_start, provider, model, reported, sum(input_tokens),
               sum(output_tokens), sum(cache_read_tokens), sum(cache_write_tokens),
               sum(cost_usd), sum(rows)
        FROM s
        GROUP BY 1, 2, 3, 4, 5
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
        FROM s
        GROUP BY 1, 2, 3, 4, 5
        ON CONFLICT (workspace_id, day, provider, model, reported)
        DO UPDATE SET input_tokens = r.input_tokens + excluded.input_tokens,
                      output_tokens = r.output_tokens + excluded.output_tokens,
                      cache_read_tokens = r.cache_read_tokens + excluded.cache_read_tokens,
                      cache_write_tokens = r.cache_write_tokens + excluded.cache_write_tokens,
                      cost_usd = r.cost_usd + excluded.cost_usd,
                      rows = r.rows + excluded.rows
    )
    INSERT INTO usage_head_ws AS r
    SELECT s.workspace_id, c.cut, utc_day(s.seg_start), s.provider, s.model, s.reported,
           sum(s.input_tokens), sum(s.output_tokens), sum(s.cache_read_tokens),
           sum(s.cache_write_tokens), sum(s.cost_usd), sum(s.rows)
    FROM s
    JOIN usage_head_cut c ON day_second(s.seg_start) < c.cut
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

-- Bring usage_multi_provider up to date for some (task, model) pairs: a pair is listed
-- while task_usage has it under two or more providers. The tick passes the pairs of the
-- deltas it folds and a recompute those of its keys' rows: of two rows of a pair, the one
-- handled last sees the other committed (a read finds pairs among queued deltas itself).
CREATE FUNCTION multi_provider_sync(p_task_ids uuid[], p_models text[])
RETURNS void
LANGUAGE sql AS $$
    WITH pair AS (
        SELECT k.task_id, k.model,
               (SELECT count(DISTINCT o.provider) FROM task_usage o
                WHERE o.task_id = k.task_id AND o.model = k.model) > 1 AS multi
        FROM (SELECT DISTINCT * FROM unnest(p_task_ids, p_models)) k(task_id, model)
    ), removed AS (
        DELETE FROM usage_multi_provider m
        USING pair p
        WHERE NOT p.multi AND (m.task_id, m.model) = (p.task_id, p.model)
    )
    INSERT INTO usage_multi_provider (task_id, model)
    SELECT task_id, model FROM pair WHERE multi
    ON CONFLICT DO NOTHING;
$$;

-- Recompute the segments of (runtime, UTC day) keys, cut by every registered offset, as
-- task_usage minus the deltas still queued (the folded state at this one snapshot), and
-- add the difference to the segments as they are; syncs the multi-provider (task, model)
-- pairs among the keys' rows. Callers hold the rollup lock (rollup_lock): two recomputes
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

    PERFORM multi_provider_sync(array_agg(u.task_id), array_agg(u.model))
    FROM unnest(p_runtime_ids, p_days) k(runtime_id, day)
    JOIN task_usage u ON u.runtime_id = k.runtime_id
        AND u.created_at >= utc_start(k.day) AND u.created_at < utc_start(k.day + 1);

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

-- Reports: usage since an instant, grouped as a report asks, from the rollup or raw.
--
-- usage_report is the one entry point of every usage report (usage.sql, runtimes.sql): the
-- raw path scans task_usage through its (scope, created_at) indexes; the rollup path reads
-- buckets (buckets.sql) and adds the deltas still queued, and answers the same rows at
-- every instant (tests/test_schema_reports.py compares the two). Costs are priced per UTC day
-- (pricing.sql) and summed exactly in 1e-10 USD units.

-- The usage rows of a runtime (else a workspace) from p_from until p_to: the raw span of a
-- rollup read, normally empty. A function of its own so that a generic plan of the read
-- counts on few (its ROWS) rather than a third of the scope's history, which turned its
-- hash joins and aggregates into sorts. No parallel workers: the generic plan of this scan
-- expects that third, and starting workers for it cost 30-50 ms.
CREATE FUNCTION usage_rows_between(p_runtime_id uuid, p_workspace_id uuid,
                                   p_from timestamptz, p_to timestamptz)
RETURNS SETOF task_usage
LANGUAGE plpgsql STABLE ROWS 10
SET max_parallel_workers_per_gather = 0 AS $$
BEGIN
    IF p_runtime_id IS NOT NULL THEN
        RETURN QUERY SELECT * FROM task_usage u
                     WHERE u.runtime_id = p_runtime_id
                       AND u.created_at >= p_from AND u.created_at < p_to;
    ELSE
        RETURN QUERY SELECT * FROM task_usage u
                     WHERE u.workspace_id = p_workspace_id
                       AND u.created_at >= p_from AND u.created_at < p_to;
    END IF;
END
$$;

-- Usage since p_since: from the rollup when p_rollup, else raw (usage_report_raw). The
-- rollup path reads a runtime's day buckets from its first local midnight at or after
-- p_since on, in p_tz when the runtime has ready buckets there, else (a read without dates)
-- in any of its ready zones, where that midnight is a segment cut. It runs one plan made
-- once per session: a custom plan cost more to make (3-4 ms) than most reads take to run,
-- and the generic one measured as fast. The raw path is planned for its arguments on every
-- call. The rollup path takes neither p_by_hour nor p_issue_id (segments are not whole
-- hours; an issue is not a key of the rollup), so those reports always read raw.
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
                                        p_rollup boolean DEFAULT false)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    v_zone      text;
    v_days_from timestamptz;
BEGIN
    IF NOT p_rollup THEN
        RETURN QUERY EXECUTE
            'SELECT * FROM usage_report_raw($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)'
            USING p_since, p_tz, p_runtime_id, p_workspace_id, p_issue_id, p_by_date,
                  p_by_hour, p_by_agent, p_by_provider, p_by_model, p_count_tasks;
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

-- Usage since p_since of one runtime, else one workspace, else one issue, read from
-- task_usage, grouped by the chosen keys (a key not chosen is NULL): local date and hour in
-- p_tz, agent, provider, model. task_count (with p_count_tasks, else 0) counts distinct
-- tasks per group. A row without a reported cost is priced with the price in force on its
-- UTC day in its workspace. Money is exact 1e-10 USD.
CREATE FUNCTION usage_report_raw(p_since timestamptz, p_tz text, p_runtime_id uuid,
                                 p_workspace_id uuid, p_issue_id uuid,
                                 p_by_date boolean, p_by_hour boolean, p_by_agent boolean,
                                 p_by_provider boolean, p_by_model boolean,
                                 p_count_tasks boolean)
RETURNS TABLE (date date, hour integer, agent_id uuid, provider text, model text,
               input_tokens bigint, output_tokens bigint,
               cache_read_tokens bigint, cache_write_tokens bigint,
               task_count bigint, cost_units numeric, unpriced_tokens bigint)
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
           sum(s.input_tokens)::bigint, sum(s.output_tokens)::bigint,
           sum(s.cache_read_tokens)::bigint, sum(s.cache_write_tokens)::bigint,
           CASE WHEN p_count_tasks THEN count(DISTINCT s.task_id) ELSE 0 END,
           sum(usage_cost_units(s.cost_usd, s.input_tokens, s.output_tokens,
                                s.cache_read_tokens, s.cache_write_tokens, p.price)),
           sum(usage_unpriced_tokens(s.cost_usd, s.input_tokens, s.output_tokens,
                                     s.cache_read_tokens, s.cache_write_tokens, p.price))::bigint
    FROM src s
    LEFT JOIN price p ON s.cost_usd IS NULL AND p.valid @> utc_day(s.created_at)
        AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
    GROUP BY 1, 2, 3, 4, 5
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
-- pairs are those usage_multi_provider lists plus those among rows not folded yet.
CREATE FUNCTION usage_report_rollup(p_since timestamptz, p_tz text,
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
        -- Rows and segments, which are priced here. at: an instant of the row's local date;
        -- day: its UTC day; task_id: set on rows not folded yet (their multi-provider pairs
        -- are not listed); priced: cost_usd is the reported cost.
        -- Time bounds are read by scalar subqueries (a join with span would filter a scan
        -- of every row instead of bounding an index scan).
        SELECT u.created_at AS at, utc_day(u.created_at) AS day,
               u.workspace_id, u.agent_id, u.task_id, u.provider, u.model,
               u.cost_usd IS NOT NULL AS priced, u.cost_usd,
               u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
               1 AS rows
        FROM usage_rows_between(p_runtime_id, p_workspace_id, (SELECT s.seg_end FROM span s),
                                (SELECT s.raw_end FROM span s)) u
        UNION ALL
        SELECT d.created_at, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NOT NULL AND d.runtime_id = p_runtime_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT d.created_at, utc_day(d.created_at), d.workspace_id, d.agent_id,
               d.task_id, d.provider, d.model, d.cost_usd IS NOT NULL, d.cost_usd,
               d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
               d.rows
        FROM usage_dirty d
        WHERE p_runtime_id IS NULL AND d.workspace_id = p_workspace_id
          AND d.created_at >= p_since AND (d.created_at < (SELECT s.seg_end FROM span s)
                                           OR d.created_at >= (SELECT s.raw_end FROM span s))
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, x.agent_id, NULL,
               x.provider, x.model, x.reported, x.cost_usd,
               x.input_tokens, x.output_tokens, x.cache_read_tokens, x.cache_write_tokens,
               x.rows
        FROM usage_rollup x
        WHERE p_runtime_id IS NOT NULL AND x.runtime_id = p_runtime_id
          AND x.seg_start >= p_since AND x.seg_start < (SELECT s.seg_end FROM span s)
        UNION ALL
        SELECT x.seg_start, utc_day(x.seg_start), x.workspace_id, NULL, NULL,
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
               NULL, x.provider, x.model, x.reported, x.cost_usd,
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
        SELECT v.at, x.day, x.workspace_id, NULL, NULL, x.provider, x.model, x.reported,
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
        FROM (SELECT m.task_id, m.model FROM usage_multi_provider m
              UNION
              SELECT s.task_id, s.model FROM src s
              WHERE s.task_id IS NOT NULL AND s.rows > 0
                AND EXISTS (SELECT FROM task_usage o
                            WHERE o.task_id = s.task_id AND o.model = s.model
                              AND o.provider <> s.provider)) m
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
                                     p.price) AS unpriced
        FROM src s
        LEFT JOIN price p ON NOT s.priced AND p.valid @> s.day
            AND (p.workspace_id, p.provider, p.model) = (s.workspace_id, s.provider, s.model)
        UNION ALL
        SELECT f.date, f.agent_id, f.provider, f.model, 0, 0, 0, 0, 0, f.tasks, 0, 0
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
                                     x.cache_read_tokens, x.cache_write_tokens, NULL)
        FROM usage_day x
        WHERE p_days_from IS NOT NULL AND x.runtime_id = p_runtime_id AND x.zone = p_day_zone
          AND x.day >= (p_days_from AT TIME ZONE p_day_zone)::date
    )
    SELECT r.date, NULL::integer, r.agent_id, r.provider, r.model,
           usage_sum(r.input_tokens), usage_sum(r.output_tokens),
           usage_sum(r.cache_read_tokens), usage_sum(r.cache_write_tokens),
           CASE WHEN p_count_tasks THEN usage_sum(r.tasks) ELSE 0 END,
           sum(r.cost), usage_sum(r.unpriced)
    FROM part r
    GROUP BY r.date, r.agent_id, r.provider, r.model
    HAVING sum(r.rows) <> 0
$$;

-- Activity: started tasks per local hour of started_at, all time, per runtime (the
-- /activity report).

-- The activity histogram (started tasks per local hour of started_at, all time) of every
-- runtime, kept per zone in use: an hour of day is not a union of UTC buckets for every
-- zone and date, but a count is additive, so changes are queued as +1/-1 deltas and folded.
-- INVARIANT: for a 'ready' zone, activity_rollup + the deltas still queued = the count of
-- started tasks, at every snapshot (writers queue, ticks fold, in one transaction each).
CREATE TABLE activity_zone (
    zone  text PRIMARY KEY,
    state text NOT NULL DEFAULT 'new' CHECK (state IN ('new', 'ready'))
);

CREATE TABLE activity_rollup (
    runtime_id uuid NOT NULL,
    zone       text NOT NULL,
    hour       smallint NOT NULL,
    tasks      bigint NOT NULL,
    PRIMARY KEY (runtime_id, zone, hour)
);

-- Counts folded down to 0, deleted by the next tick without scanning the table.
CREATE INDEX idx_activity_rollup_zero ON activity_rollup (runtime_id) WHERE tasks = 0;

CREATE TABLE activity_dirty (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    runtime_id uuid NOT NULL,
    started_at timestamptz NOT NULL,
    delta      smallint NOT NULL
);

CREATE INDEX idx_activity_dirty_runtime_id ON activity_dirty (runtime_id);

CREATE FUNCTION queue_activity()
RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, started_at, 1 FROM new_task WHERE started_at IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT runtime_id, started_at, -1 FROM old_task WHERE started_at IS NOT NULL;
    ELSE
        INSERT INTO activity_dirty (runtime_id, started_at, delta)
        SELECT d.runtime_id, d.started_at, d.delta
        FROM old_task o
        JOIN new_task n ON n.id = o.id
        CROSS JOIN LATERAL (VALUES (o.runtime_id, o.started_at, -1),
                                   (n.runtime_id, n.started_at, 1)) d(runtime_id, started_at, delta)
        WHERE (o.runtime_id, o.started_at) IS DISTINCT FROM (n.runtime_id, n.started_at)
          AND d.started_at IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_agent_task_queue_activity_insert
AFTER INSERT ON agent_task_queue
REFERENCING NEW TABLE AS new_task
FOR EACH STATEMENT EXECUTE FUNCTION queue_activity();

CREATE TRIGGER trg_agent_task_queue_activity_update
AFTER UPDATE ON agent_task_queue
REFERENCING OLD TABLE AS old_task NEW TABLE AS new_task
FOR EACH STATEMENT EXECUTE FUNCTION queue_activity();

CREATE TRIGGER trg_agent_task_queue_activity_delete
AFTER DELETE ON agent_task_queue
REFERENCING OLD TABLE AS old_task
FOR EACH STATEMENT EXECUTE FUNCTION queue_activity();

-- Fold up to p_limit queued deltas into every ready zone, then build new zones from the
-- tasks minus the deltas still queued (one statement, one snapshot).
CREATE FUNCTION activity_tick(p_limit integer)
RETURNS void
LANGUAGE sql AS $$
    WITH batch AS (
        DELETE FROM activity_dirty
        WHERE id IN (SELECT id FROM activity_dirty ORDER BY id LIMIT p_limit)
        RETURNING runtime_id, started_at, delta
    )
    INSERT INTO activity_rollup AS r (runtime_id, zone, hour, tasks)
    SELECT b.runtime_id, z.zone, extract(hour FROM b.started_at AT TIME ZONE z.zone), sum(b.delta)
    FROM batch b, activity_zone z
    WHERE z.state = 'ready'
    GROUP BY 1, 2, 3
    ON CONFLICT (runtime_id, zone, hour) DO UPDATE SET tasks = r.tasks + excluded.tasks;

    DELETE FROM activity_rollup WHERE tasks = 0;

    INSERT INTO activity_rollup (runtime_id, zone, hour, tasks)
    SELECT s.runtime_id, z.zone, extract(hour FROM s.started_at AT TIME ZONE z.zone),
           sum(s.delta)
    FROM (SELECT runtime_id, started_at, 1 AS delta FROM agent_task_queue
          WHERE started_at IS NOT NULL
          UNION ALL
          SELECT runtime_id, started_at, -delta FROM activity_dirty) s,
         activity_zone z
    WHERE z.state = 'new'
    GROUP BY 1, 2, 3
    HAVING sum(s.delta) <> 0;

    UPDATE activity_zone SET state = 'ready' WHERE state = 'new';
$$;

-- Health: the tick's own record, read by `usagemeter status` and /metrics (with the queue's
-- depth and age), and its schedule under pg_cron.

-- Health of the tick (one row).
CREATE TABLE rollup_state (
    one          boolean PRIMARY KEY DEFAULT true CHECK (one),
    ticks        bigint NOT NULL DEFAULT 0,
    last_tick_at timestamptz NULL,
    last_keys    integer NOT NULL DEFAULT 0
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
