"""Noisy neighbour: one workspace's reports, side by side, on the bench's data alone and with
another workspace's hostile data added.

    .venv/bin/python bench/noisy.py [--rows 1000000] [--runs 25] [--pairs 10000]

Loads the bench's shape once (bench/run.py; a throwaway PostgreSQL 15 unless DATABASE_URL
is set), copies the database, and gives the copy's "noisy" workspace what hurt every tenant
before release 0.2.0: one task reporting `pairs` models under two providers each (as many
task-count corrections), usage rows of 10^12 tokens each, and reports asked in 26 zones of
as many UTC offsets. Then every report of a quiet workspace is timed on both databases,
alternating in blocks of 5, after checking that both answer the same rows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
import run

from usagemeter import rollup, usage
from usagemeter.db import connect

HOSTILE = """
WITH ws AS (
    INSERT INTO workspace (name, slug) VALUES ('noisy', 'noisy') RETURNING id
), rt AS (
    INSERT INTO agent_runtime (workspace_id, name, runtime_mode, provider, daemon_id, timezone)
    SELECT id, 'noisy', 'local', 'claude', 'noisy', 'UTC' FROM ws RETURNING id, workspace_id
), agent AS (
    INSERT INTO agent (workspace_id, name, runtime_id)
    SELECT workspace_id, 'noisy', id FROM rt RETURNING id, runtime_id
), task AS (
    INSERT INTO agent_task_queue (agent_id, runtime_id) SELECT id, runtime_id FROM agent
    RETURNING id
)
INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens, created_at)
SELECT task.id, p, 'noisy-' || i, 1000000000000, 1000000000000, now() - interval '1 hour'
FROM task, generate_series(1, %(pairs)s) i, unnest('{a,b}'::text[]) p
"""


def make_noisy(url: str, pairs: int) -> None:
    with connect(url) as conn:
        conn.execute(HOSTILE, {"pairs": pairs})
        noisy = conn.execute("SELECT id FROM workspace WHERE slug = 'noisy'").fetchone()
        assert noisy is not None
        zones = [f"Etc/GMT{sign}{h}" for h in range(1, 13) for sign in "+-"]
        for zone in [*zones, "Asia/Kathmandu", "Australia/Eucla"]:
            conn.execute(usage.Q.register_zone, {"tz": zone, "workspace_id": noisy["id"]})
        rollup.drain(conn, 1_000_000)
        conn.execute("VACUUM ANALYZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--pairs", type=int, default=10_000)
    args = ap.parse_args()
    with run.postgres() as server:
        quiet = make_conninfo(server, dbname="usagemeter_noisy_quiet")
        noisy = make_conninfo(server, dbname="usagemeter_noisy_noisy")
        run.build(server, quiet, "usagemeter_noisy_quiet", args.rows)
        with connect(server) as admin:
            admin.execute("DROP DATABASE IF EXISTS usagemeter_noisy_noisy WITH (FORCE)")
            admin.execute("CREATE DATABASE usagemeter_noisy_noisy TEMPLATE usagemeter_noisy_quiet")
        make_noisy(noisy, args.pairs)
        with connect(quiet) as a, connect(noisy) as b:
            for conn in (a, b):
                conn.execute("CHECKPOINT")
            print(f"\n{args.rows:,} usage rows; a quiet workspace's reports, median ms of")
            print(f"{args.runs} runs, rollup path; the noisy workspace: {args.pairs:,} pairs")
            run.side_by_side(a, b, args.runs, ("alone", "beside the noisy workspace"))


if __name__ == "__main__":
    main()
