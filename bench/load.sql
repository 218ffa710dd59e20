-- The benchmark shape: 180 days; 20 workspaces; 200 runtimes in 7 zones; 1,000 agents (5
-- per runtime) on 8 models, each agent using 1–2; tasks of 1–2 usage rows; a daily rhythm
-- (busiest mid-afternoon) in the runtime's local time. %(tasks)s tasks.

-- name: entities
INSERT INTO workspace (name, slug)
SELECT 'bench ' || i, 'bench-' || i FROM generate_series(0, 19) i;

INSERT INTO agent_runtime (workspace_id, name, runtime_mode, provider, daemon_id, timezone)
SELECT w.id, 'rt-' || i, 'local', 'claude', 'bench-daemon-' || i,
       (ARRAY['UTC', 'America/New_York', 'Europe/Berlin', 'Asia/Kolkata', 'Asia/Kathmandu',
              'Asia/Shanghai', 'Australia/Adelaide'])[i %% 7 + 1]
FROM generate_series(0, 199) i
JOIN workspace w ON w.slug = 'bench-' || (i %% 20);

INSERT INTO agent (workspace_id, name, runtime_id)
SELECT r.workspace_id, r.name || '-agent-' || j, r.id
FROM agent_runtime r, generate_series(1, 5) j
WHERE r.daemon_id LIKE 'bench-daemon-%%';

CREATE TABLE bench_agent AS
SELECT (row_number() OVER (ORDER BY a.id) - 1)::int AS n, a.id, a.runtime_id, a.workspace_id,
       r.timezone, m.models[1 + k.m1] AS model1,
       CASE WHEN k.two THEN m.models[1 + (k.m1 + 1 + k.step) %% 8] END AS model2
FROM agent a
JOIN agent_runtime r ON r.id = a.runtime_id
CROSS JOIN LATERAL (SELECT floor(random() * 8)::int AS m1, floor(random() * 7)::int AS step,
                           random() < 0.5 AS two, a.id AS dep) k
CROSS JOIN (SELECT ARRAY['claude-sonnet-4-5', 'claude-opus-4-5', 'claude-haiku-4-5', 'gpt-5',
                         'gpt-5-mini', 'gpt-4o', 'o3', 'gemini-2.5-pro'] AS models) m
WHERE r.daemon_id LIKE 'bench-daemon-%%';

-- name: tasks
-- Tasks and their usage, in chunks of ids [%(lo)s, %(hi)s).
CREATE TEMP TABLE bench_task ON COMMIT DROP AS
SELECT gen_random_uuid() AS id, a.id AS agent_id, a.runtime_id, a.workspace_id,
       a.model1, a.model2, g.two,
       ((utc_day(now()) - g.day)::timestamp
        + make_interval(secs => 3600 * (6 + 16 * (g.r1 + g.r2 + g.r3) / 3)))
           AT TIME ZONE a.timezone AS at
FROM (SELECT floor(random() * 1000)::int AS n, floor(random() * 180)::int AS day,
             random() AS r1, random() AS r2, random() AS r3, random() < 0.5 AS two, i
      FROM generate_series(%(lo)s, %(hi)s - 1) i) g
JOIN bench_agent a ON a.n = g.n;

INSERT INTO agent_task_queue (id, agent_id, runtime_id, status, started_at, completed_at,
                              created_at)
SELECT id, agent_id, runtime_id, 'completed', at, at + interval '5 minutes', at
FROM bench_task;

INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,
                        cache_read_tokens, cache_write_tokens, created_at, updated_at,
                        workspace_id, runtime_id, agent_id)
SELECT t.id, 'api', m.model, (random() * 50000)::int, (random() * 5000)::int,
       (random() * 200000)::int, (random() * 20000)::int, t.at + m.later, t.at + m.later,
       t.workspace_id, t.runtime_id, t.agent_id
FROM bench_task t
CROSS JOIN LATERAL (VALUES (t.model1, interval '1 minute'),
                           (CASE WHEN t.two THEN t.model2 END, interval '4 minutes')) m(model, later)
WHERE m.model IS NOT NULL;
