"""Sustained ingest: does the rollup keep up, and do reports stay fast while it works?

    DATABASE_URL=... .venv/bin/python bench/sustained.py [--rows 1000000] [--seconds 120]
                                                         [--clients 2] [--batch 10000]
                                                         [--fresh]

On bench/run.py's database of `--rows` usage rows (reused as it is), one `usagemeter serve`
(default settings: its own tick) takes `POST /api/usage/batch` from `--clients` clients, each
posting batches of `--batch` new usage rows into one workspace as fast as the server
answers, for `--seconds`. Every 2 s a sampler times that workspace's 30-day daily report
over HTTP and reads the queue of deltas the rollup has not folded yet. After the ingest
stops: how long until the queue is empty, and whether the report's rollup path then equals
a raw scan in one snapshot (a raw scan of the rows written takes seconds: during the ingest
it would be load, not a sample). Then the rows written are deleted again (and folded
away), so the database stays the bench's.

With `--fresh`, a fresh load instead: a copy of that database with no usage (its
workspaces, runtimes, zones, agents and tasks kept; the rollup empty) takes all its usage
rows again through the API, each workspace's in batches of its rows in time order (each
entry with its `created_at`), the batches of all workspaces in the order of their first
row. It prints how long the load took and how long until the rollup converged (queue
empty), with the report sampled every 2 s throughout, then drops the copy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
from load import Client
from run import pick, postgres, serving

from usagemeter import rollup
from usagemeter.auth import create_token
from usagemeter.db import connect

PROVIDER = "bench-sustained"  # bench/run.py --reuse deletes leftovers of it


def batches(args: argparse.Namespace) -> int:
    """The batches made before the clock starts: enough for 25k rows/s."""
    return int(args.seconds * 25_000 / args.batch) + 20


# The workspace's 30-day daily report on one path, as the route reads it (usage.sql).
REPORT = """
    SELECT array_agg(r ORDER BY r.date, r.model) AS rows
    FROM usage_report(usage_since(now(), 'UTC', 30), 'UTC', p_workspace_id => %s,
                      p_by_date => true, p_by_model => true, p_count_tasks => true,
                      p_rollup => %s) r
"""


def exact(conn: psycopg.Connection[Any], workspace_id: Any) -> bool:
    """Whether the rollup path answers what a raw scan does, in one snapshot."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rollup, raw = (conn.execute(REPORT, (workspace_id, on)).fetchone() for on in (True, False))
    return rollup == raw and rollup is not None and rollup["rows"] is not None


def queue_depth(conn: psycopg.Connection[Any]) -> int:
    """Rows of deltas the rollup has not folded yet (a statement's per key and quarter hour)."""
    row = conn.execute("SELECT count(*) AS n FROM usage_dirty").fetchone()
    assert row is not None
    return int(row["n"])


MODELS = ["claude-sonnet-4-5", "claude-haiku-4-5", "gpt-5", "gpt-5-mini", "o3"]
PER_BATCH = 2000  # tasks per batch, each reporting every model: new rows, usual models


def body(tasks: list[str], batch: int, n: int) -> bytes:
    """Batch number n: `batch` new rows, of its own tasks (reused past the tasks made)."""
    first = n * PER_BATCH % len(tasks)
    entries = [
        {
            "task_id": tasks[first + i % PER_BATCH],
            "provider": PROVIDER,
            "model": MODELS[i // PER_BATCH % len(MODELS)],
            "input_tokens": 1,
            "output_tokens": 2,
        }
        for i in range(batch)
    ]
    return json.dumps({"usage": entries}).encode()


Source = Callable[[], "tuple[str, bytes] | None"]


def sustained_source(tasks: list[str], slug: str, args: argparse.Namespace) -> Source:
    """New rows of `tasks` in `slug`, batch after batch, for `--seconds`. Bodies for 25k
    rows/s are built before the clock starts (building them costs the client's CPU); more
    are built on the way if the server takes more."""
    ready = batches(args)
    print(f"building {ready} bodies of {args.batch} entries", flush=True)
    payloads = [body(tasks, args.batch, n) for n in range(ready)]
    count = ready
    end = time.perf_counter() + args.seconds

    def source() -> tuple[str, bytes] | None:
        nonlocal count
        if time.perf_counter() >= end:
            return None
        if payloads:
            return slug, payloads.pop()
        count += 1
        return slug, body(tasks, args.batch, count)

    return source


async def run(port: int, token: str, slug: str, url: str, source: Source, clients: int) -> None:
    # One report first, untimed: a new server process plans its statements on first use.
    status, answer = await Client(port, token).request(
        "GET", f"/api/usage/daily?days=30&workspace_slug={slug}"
    )
    assert status == 200, answer[:300]
    written = 0
    start = time.perf_counter()
    ingesting = True
    samples: list[tuple[float, float, int]] = []

    async def writer() -> None:
        nonlocal written
        client = Client(port, token)
        while (item := source()) is not None:
            status, answer = await client.request(
                "POST", f"/api/usage/batch?workspace_slug={item[0]}", item[1]
            )
            assert status == 200, answer[:300]
            written += json.loads(answer)["entries"]

    async def sampler() -> None:
        # Until the ingest has stopped and the rollup has folded everything it queued.
        client = Client(port, token)
        with connect(url) as conn:
            queued = 1
            while ingesting or queued:
                t = time.perf_counter()
                status, answer = await client.request(
                    "GET", f"/api/usage/daily?days=30&workspace_slug={slug}"
                )
                ms = (time.perf_counter() - t) * 1000
                assert status == 200, answer[:300]
                queued = await asyncio.to_thread(queue_depth, conn)
                samples.append((time.perf_counter() - start, ms, queued))
                if time.perf_counter() - start > 3600:
                    break
                await asyncio.sleep(2)

    sampling = asyncio.create_task(sampler())
    await asyncio.gather(*(writer() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    ingesting = False
    await sampling
    with connect(url) as conn:
        t = time.perf_counter()
        while queued := queue_depth(conn):
            if time.perf_counter() - t > 600:
                break
            time.sleep(0.5)
        converged = time.perf_counter() - start
        row = conn.execute("SELECT id FROM workspace WHERE slug = %s", (slug,)).fetchone()
        equal = exact(conn, row["id"])
    print(f"\n{clients} clients")
    print(f"ingested {written:,} rows in {elapsed:.1f} s: {written / elapsed:,.0f} rows/s")
    print("| t (s) | 30-day workspace report (ms) | queued rows |")
    print("|---|---|---|")
    for at, ms, n in samples:
        print(f"| {at:.0f} | {ms:.1f} | {n:,} |")
    times = [ms for _, ms, _ in samples]
    print(
        f"\nreport ms: median {statistics.median(times):.1f}, max {max(times):.1f},"
        f" {sum(t >= 50 for t in times)} of {len(times)} samples at 50 ms or more;"
        f" queue: max {max(n for _, _, n in samples):,};"
        f" empty {converged - elapsed:.1f} s after the ingest stopped,"
        f" {converged:.1f} s after it started"
        + ("" if not queued else f" (NOT EMPTY: {queued:,} left)")
    )
    print(
        "the report's rollup path against a raw scan in one snapshot: "
        + ("equal" if equal else "NOT EQUAL")
    )


def token_for(conn: psycopg.Connection[Any], slugs: list[str]) -> str:
    """A token of one owner of every workspace named (the last one made is returned)."""
    token = ""
    for slug in slugs:
        token = create_token(
            conn,
            email="sustained@example.com",
            name="",
            workspace_slug=slug,
            role="owner",
            daemon=False,
        )
    return token


def sustained(server: str, args: argparse.Namespace) -> None:
    url = make_conninfo(server, dbname=f"usagemeter_bench_{args.rows}")
    with connect(url) as conn:
        s = pick(conn)
        slug = conn.execute(
            "SELECT w.slug FROM workspace w WHERE w.id = %s", (s["workspace_id"],)
        ).fetchone()["slug"]
        token = token_for(conn, [slug])
        agent = conn.execute(
            "SELECT id FROM agent WHERE runtime_id = %s LIMIT 1", (s["runtime_id"],)
        ).fetchone()
        tasks = [
            str(r["id"])
            for r in conn.execute(
                "INSERT INTO agent_task_queue (agent_id, runtime_id, status)"
                " SELECT %s, %s, 'running' FROM generate_series(1, %s) RETURNING id",
                (agent["id"], s["runtime_id"], PER_BATCH * batches(args)),
            ).fetchall()
        ]
    try:
        with serving(url) as port:
            source = sustained_source(tasks, slug, args)
            asyncio.run(run(port, token, slug, url, source, args.clients))
    finally:
        with connect(url) as conn:
            conn.execute("DELETE FROM agent_task_queue WHERE id = ANY(%s::uuid[])", (tasks,))
            rollup.drain(conn, 1_000_000)


# Each workspace's usage rows as batch bodies of `batch` entries in time order (the rows as
# the bench loaded them; created_at in UTC), with the time of each batch's first row.
HISTORY = """
    SELECT w.slug, min(e.created_at) AS first,
           json_build_object('usage', json_agg(json_build_object(
               'task_id', e.task_id, 'provider', e.provider, 'model', e.model,
               'input_tokens', e.input_tokens, 'output_tokens', e.output_tokens,
               'cache_read_tokens', e.cache_read_tokens,
               'cache_write_tokens', e.cache_write_tokens, 'created_at', e.created_at)
               ORDER BY e.n))::text AS body
    FROM bench_entry e JOIN workspace w ON w.id = e.workspace_id
    GROUP BY w.slug, e.n / %s
    ORDER BY first
"""


def fresh(server: str, args: argparse.Namespace) -> None:
    name = "usagemeter_bench_fresh"
    with connect(server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name} TEMPLATE usagemeter_bench_{args.rows}")
    url = make_conninfo(server, dbname=name)
    try:
        with connect(url) as conn:
            print("taking the usage out of a copy", flush=True)
            conn.execute("DROP INDEX IF EXISTS bench_runtime_id, bench_workspace_id")
            conn.execute("SET TimeZone = 'UTC'")
            conn.execute(
                "CREATE TABLE bench_entry AS SELECT row_number() OVER"
                " (PARTITION BY workspace_id ORDER BY created_at, task_id, model) AS n, *"
                " FROM task_usage"
            )
            conn.execute("TRUNCATE task_usage")  # and the rollup (clear_rollup)
            conn.execute("VACUUM ANALYZE")
            slugs = [r["slug"] for r in conn.execute("SELECT slug FROM workspace ORDER BY slug")]
            token = token_for(conn, slugs)
            slug = conn.execute(
                "SELECT w.slug FROM workspace w WHERE w.id = %s", (pick(conn)["workspace_id"],)
            ).fetchone()["slug"]
            print("building the bodies", flush=True)
            bodies = [
                (r["slug"], r["body"].encode())
                for r in conn.execute(HISTORY, (args.batch,)).fetchall()
            ]
            bodies.reverse()
            conn.execute("DROP TABLE bench_entry")
            conn.execute("CHECKPOINT")
        print(f"{len(bodies)} bodies", flush=True)
        with serving(url) as port:
            asyncio.run(
                run(port, token, slug, url, lambda: bodies.pop() if bodies else None, args.clients)
            )
    finally:
        with connect(server) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    with postgres() as server:
        (fresh if args.fresh else sustained)(server, args)


if __name__ == "__main__":
    main()
