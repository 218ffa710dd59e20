"""Rollup vs raw, side by side in one run: `python bench/run.py --rows 1000000 10000000`.

Each size gets a fresh database on DATABASE_URL (else a throwaway PostgreSQL 15 from
scripts/pg15), loaded with the shape of bench/load.sql and rolled up. Prints median
milliseconds of every report, run as the server runs it (the JSON body rendered by the
database), on the rollup path and on the raw path (task_usage with
covering indexes on its runtime and workspace keys), rollup size, tick cost per 10k and 100k new
rows, ingest throughput with and without the rollup triggers, and HTTP end to end. Last,
side by side: ticks on every database in turn, and the rollup reads of the smallest and the
largest database alternating, over the socket and in the database (how flat they are in
history).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from usagemeter import rollup, runtimes, usage
from usagemeter.db import Queries, connect
from usagemeter.migrate import migrate
from usagemeter.web import describe, json_query

ROOT = Path(__file__).resolve().parents[1]
LOAD = Queries(Path(__file__).with_name("load.sql"))
CHUNK = 500_000  # tasks per load transaction
TICK_ROWS = (10_000, 100_000)  # new usage rows per measured tick
ROLLUP_TRIGGERS = (
    "trg_task_usage_queue_insert",
    "trg_task_usage_queue_update",
    "trg_task_usage_queue_delete",
)


def warm(f: Callable[[], Any], seconds: float = 0.05) -> None:
    """Run f for a while (at least once): a read of 0.15 ms took 0.5-1 ms in its first ten
    runs on a connection and settled only after about twenty."""
    end = time.perf_counter() + seconds
    f()
    while time.perf_counter() < end:
        f()


def ms(a: Callable[[], Any], b: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median ms of a and of b, run in alternating blocks of 5: a burst of load on the shared
    machine then slows both, not one of them, and a read seldom runs right after the other
    path's (the 90-day rollup read measured 7 ms alone and 10 ms alternating with raw)."""
    warm(a), warm(b)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(0, runs, 5):
        for f, out in zip((a, b), times, strict=True):
            for _ in range(5):
                t = time.perf_counter()
                f()
                out.append((time.perf_counter() - t) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def query(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> None:
    conn.execute(sql, params).fetchall()


def load(conn: psycopg.Connection[Any], rows: int) -> None:
    cur = psycopg.ClientCursor(conn)
    cur.execute(LOAD.entities, {})
    tasks = int(rows / 1.25)
    for lo in range(0, tasks, CHUNK):
        with conn.transaction():
            cur.execute(LOAD.tasks, {"lo": lo, "hi": min(lo + CHUNK, tasks)})
        print(f"  loaded {min(lo + CHUNK, tasks):,} of {tasks:,} tasks", flush=True)


def pick(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """A Kolkata runtime with average usage, its workspace, and another zone."""
    row = conn.execute(
        "SELECT r.id, r.workspace_id, r.timezone FROM agent_runtime r"
        " WHERE r.timezone = 'Asia/Kolkata' ORDER BY r.name LIMIT 1"
    ).fetchone()
    assert row
    return {
        "runtime_id": row["id"],
        "workspace_id": row["workspace_id"],
        "own": row["timezone"],
        "other": "America/New_York",
    }


def cases(
    conn: psycopg.Connection[Any], s: dict[str, Any]
) -> list[tuple[str, str, dict[str, Any]]]:
    """(read, statement as the server runs it, parameters) of every report."""
    rt = {"runtime_id": s["runtime_id"]}
    ws = {"workspace_id": s["workspace_id"]}
    out = [
        ("runtime usage 90d, own zone", usage.Q.runtime_usage, {**rt, "days": 90, "tz": s["own"]}),
        (
            "runtime usage 90d, other zone",
            usage.Q.runtime_usage,
            {**rt, "days": 90, "tz": s["other"]},
        ),
        (
            "by-agent 30d, own zone",
            usage.Q.runtime_usage_by_agent,
            {**rt, "days": 30, "tz": s["own"]},
        ),
        (
            "by-agent 30d, other zone",
            usage.Q.runtime_usage_by_agent,
            {**rt, "days": 30, "tz": s["other"]},
        ),
        (
            "by-hour 30d (rows summed per cell on the rollup path)",
            usage.Q.runtime_usage_by_hour,
            {**rt, "days": 30, "tz": s["own"]},
        ),
        ("activity, all time", usage.Q.runtime_activity, {**rt, "tz": s["own"]}),
        ("workspace daily 30d", usage.Q.workspace_daily, {**ws, "days": 30, "tz": s["own"]}),
        (
            "workspace daily 30d, other zone",
            usage.Q.workspace_daily,
            {**ws, "days": 30, "tz": s["other"]},
        ),
        (
            "workspace daily 30d, UTC",
            usage.Q.workspace_daily,
            {**ws, "days": 30, "tz": "UTC"},
        ),
        ("workspace summary 30d", usage.Q.workspace_summary, {**ws, "days": 30, "tz": s["own"]}),
        (
            "runtime list (14d cost each)",
            runtimes.Q.list_runtimes,
            {**ws, "mine": False, "user_id": None},
        ),
    ]
    # Reports render their JSON body in the database, as the server does.
    for i, (name, q, p) in enumerate(out):
        if q is not runtimes.Q.list_runtimes:
            columns = conn.execute(describe(q), {**p, "rollup": True}).description
            out[i] = (name, json_query(q, columns or []), p)
    return out


def reads(
    conn: psycopg.Connection[Any], s: dict[str, Any], runs: int
) -> list[tuple[str, float, float]]:
    """(read, rollup ms, raw ms) for every report."""
    out = []
    for name, sql, p in cases(conn, s):
        fast, slow = {**p, "rollup": True}, {**p, "rollup": False}
        # The benchmark is also a differential test.
        assert conn.execute(sql, fast).fetchall() == conn.execute(sql, slow).fetchall(), name
        out.append(
            (name, *ms(partial(query, conn, sql, fast), partial(query, conn, sql, slow), runs))
        )
    return out


PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def in_database(
    conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]
) -> Callable[[], float]:
    """A timer of `sql` inside the database: ms per run of a plpgsql loop of it, every row
    rendered to text, so that no round trip, client or connection is in the time. Its
    parameters are the loop function's arguments, of the types the server gave them when
    the client prepared the statement, so it is planned as the server's is (custom plans,
    then the generic one if no dearer; with the values as literals the runtime list
    measured 1.62x at 10M against 1.02x over the socket)."""
    names = list(dict.fromkeys(PLACEHOLDER.findall(sql)))
    stmt = PLACEHOLDER.sub(lambda m: f"${names.index(m[1]) + 1}", sql)
    conn.execute(sql, params, prepare=True).fetchall()
    row = conn.execute(
        "SELECT parameter_types::text[] AS types FROM pg_prepared_statements WHERE statement = %s",
        (stmt,),
    ).fetchone()
    assert row is not None, "the statement was not prepared"
    types: list[str] = row["types"]
    fn = f"pg_temp.bench_{abs(hash(stmt))}"
    conn.execute(
        f"CREATE OR REPLACE FUNCTION {fn}({', '.join(types)}, bench_n integer) RETURNS float8"
        " LANGUAGE plpgsql AS $bench$ DECLARE bench_t timestamptz := clock_timestamp();"
        " bench_v text; BEGIN FOR bench_i IN 1..bench_n LOOP"
        f" SELECT string_agg(bench_q::text, '') INTO bench_v FROM ({stmt.rstrip().rstrip(';')})"
        " bench_q; END LOOP;"
        " RETURN extract(epoch FROM clock_timestamp() - bench_t) * 1000 / bench_n; END $bench$"
    )
    call = f"SELECT {fn}({''.join(f'%s::{t}, ' for t in types)}%s) AS ms"
    values = [params[n] for n in names]

    def loop(n: int) -> float:
        row = conn.execute(call, (*values, n)).fetchone()
        assert row is not None
        return float(row["ms"])

    n = 1
    while loop(n) * n < 20:  # about 20 ms a call
        n *= 2
    return partial(loop, n)


def paired(
    a: psycopg.Connection[Any], b: psycopg.Connection[Any], ss: list[dict[str, Any]]
) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    """(read, statement, rollup parameters on a's database, on b's) of every report: a on the
    first database, b on the last."""
    return [
        (name, sql, {**pa, "rollup": True}, {**pb, "rollup": True})
        for (name, sql, pa), (_, _, pb) in zip(cases(a, ss[0]), cases(b, ss[-1]), strict=True)
    ]


def flatness(
    urls: list[str], ss: list[dict[str, Any]], runs: int
) -> list[tuple[str, float, float, float, float]]:
    """(read, rollup ms on the first database, on the last; the same in the database): the
    two side by side. Round trips: each database once on the connection opened first and
    once on the one opened second, the mean of the two (reads of 0.1-0.2 ms measured up to
    2.3x faster on the connection opened first, even with both connections to the same
    database). In the database: the fastest of 15 loops of each, alternating. The machine's
    noise only adds time; medians of 21 loops measured 0.63-1.27x for reads whose fastest
    loops were 0.86-1.06x apart."""
    trips = []
    for first, last in ((0, -1), (-1, 0)):
        with connect(urls[first]) as c1, connect(urls[last]) as c2:
            a, b = (c1, c2) if first == 0 else (c2, c1)
            trips.append(
                [
                    ms(partial(query, a, sql, pa), partial(query, b, sql, pb), runs)
                    for _, sql, pa, pb in paired(a, b, ss)
                ]
            )
    out = []
    with connect(urls[0]) as a, connect(urls[-1]) as b:
        for (name, sql, pa, pb), (a1, b1), (a2, b2) in zip(paired(a, b, ss), *trips, strict=True):
            ta, tb = in_database(a, sql, pa), in_database(b, sql, pb)
            loops = [(ta(), tb()) for _ in range(15)]
            inside = min(x for x, _ in loops), min(y for _, y in loops)
            out.append((name, (a1 + a2) / 2, (b1 + b2) / 2, *inside))
    return out


def ticks(urls: list[str], rows: int, rounds: int = 5) -> list[tuple[float, float]]:
    """Median ms to fold `rows` new usage rows (random tasks, the last 3 hours) into the
    rollup, and the median number of queued deltas they made (rows of one runtime, agent,
    model and quarter hour share one), per database, the databases taking turns: their
    ratio is then not a drift of the shared machine's speed between two measurements
    minutes apart. The queue is vacuumed first, as the server's ticker does."""
    conns = [connect(u) for u in urls]
    times: list[list[float]] = [[] for _ in conns]
    deltas: list[list[int]] = [[] for _ in conns]
    try:
        for conn in conns:
            conn.execute("VACUUM usage_dirty")
        for i in range(rounds):
            for conn, out, queued in zip(conns, times, deltas, strict=True):
                conn.execute(
                    "INSERT INTO task_usage (task_id, provider, model, input_tokens, created_at,"
                    " workspace_id, runtime_id, agent_id)"
                    " SELECT t.id, %s, 'gpt-5', 1, now() - random() * interval '3 hours',"
                    " a.workspace_id, t.runtime_id, t.agent_id"
                    " FROM (SELECT id, runtime_id, agent_id FROM agent_task_queue"
                    "       ORDER BY random() LIMIT %s) t"
                    " JOIN agent a ON a.id = t.agent_id",
                    (f"bench-tick-{rows}-{i}", rows),
                )
                row = conn.execute("SELECT count(*) AS n FROM usage_dirty").fetchone()
                queued.append(row["n"] if row else 0)
                t = time.perf_counter()
                rollup.drain(conn, 1_000_000)
                out.append((time.perf_counter() - t) * 1000)
        for conn in conns:
            conn.execute("DELETE FROM task_usage WHERE provider LIKE 'bench-%'")
            rollup.drain(conn, 1_000_000)
    finally:
        for conn in conns:
            conn.close()
    return [
        (statistics.median(t), statistics.median(q)) for t, q in zip(times, deltas, strict=True)
    ]


def ingest(conn: psycopg.Connection[Any], triggers: bool) -> float:
    """Usage rows/s of 100 INSERT statements of 1,000 rows each (new rows, keys given)."""
    action = "ENABLE" if triggers else "DISABLE"
    for trg in ROLLUP_TRIGGERS:
        conn.execute(f"ALTER TABLE task_usage {action} TRIGGER {trg}")
    t = time.perf_counter()
    with conn.transaction():
        for i in range(100):
            conn.execute(
                "INSERT INTO task_usage (task_id, provider, model, input_tokens, created_at,"
                " workspace_id, runtime_id, agent_id)"
                " SELECT b.id, %s, 'gpt-5', 1, now(), b.workspace_id, b.runtime_id, b.agent_id"
                " FROM (SELECT t.id, t.runtime_id, t.agent_id, a.workspace_id"
                "       FROM agent_task_queue t JOIN agent a ON a.id = t.agent_id"
                "       LIMIT 1000) b",
                (f"bench-ingest-{i}",),
            )
    rate = 100_000 / (time.perf_counter() - t)
    # Deleted as they were written: rows the triggers did not see must not queue deltas.
    conn.execute("DELETE FROM task_usage WHERE provider LIKE 'bench-%'")
    for trg in ROLLUP_TRIGGERS:
        conn.execute(f"ALTER TABLE task_usage ENABLE TRIGGER {trg}")
    rollup.drain(conn, 1_000_000)
    return rate


def http_ms(url: str, s: dict[str, Any], runs: int) -> tuple[float, float]:
    """End-to-end ms of the 90-day runtime report over HTTP (own zone, other zone)."""
    env = {**os.environ, "DATABASE_URL": url}
    cli = [sys.executable, "-m", "usagemeter.cli"]
    token = (
        subprocess.run(
            [
                *cli,
                "token",
                "create",
                "--email",
                "bench@example.com",
                "--workspace",
                "bench-" + str(s["slug"]),
                "--role",
                "owner",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    with serving(url) as port:
        c = http.client.HTTPConnection("127.0.0.1", port)  # one kept-alive connection
        path = f"/api/runtimes/{s['runtime_id']}/usage?days=90&tz="

        def get(tz: str) -> bytes:
            c.request("GET", path + tz, headers={"Authorization": f"Bearer {token}"})
            r = c.getresponse()
            body = r.read()
            assert r.status == 200, body
            return body

        # Checked once, outside the timing: parsing 140 kB of JSON is the client's time.
        for tz in (s["own"], s["other"]):
            assert isinstance(json.loads(get(tz)), list)
        return ms(lambda: get(s["own"]), lambda: get(s["other"]), runs)


@contextlib.contextmanager
def serving(url: str) -> Iterator[int]:
    """`usagemeter serve` on the database at url, answering on the port yielded."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "DATABASE_URL": url}
    server = subprocess.Popen(
        [sys.executable, "-m", "usagemeter.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        yield port
    finally:
        server.terminate()
        server.wait()


def build(server: str, url: str, name: str, rows: int) -> tuple[float, float]:
    """A fresh database of `rows` usage rows, rolled up, with the raw path's best indexes."""
    with connect(server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    with connect(url) as conn:
        migrate(conn)
        print(f"== {rows:,} usage rows: loading", flush=True)
        t = time.perf_counter()
        load(conn, rows)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        rollup.drain(conn, 1_000_000)
        build_s = time.perf_counter() - t
        print("  covering indexes for the raw path, VACUUM ANALYZE", flush=True)
        cols = (
            "task_id, agent_id, workspace_id, runtime_id, provider, model, input_tokens,"
            " output_tokens, cache_read_tokens, cache_write_tokens, cost_usd"
        )
        for key in ("runtime_id", "workspace_id"):
            conn.execute(
                f"CREATE INDEX bench_{key} ON task_usage ({key}, created_at) INCLUDE ({cols})"
            )
        conn.execute("VACUUM ANALYZE")
    return load_s, build_s


def bench(server: str, rows: int, runs: int, reuse: bool) -> dict[str, Any]:
    name = f"usagemeter_bench_{rows}"
    url = make_conninfo(server, dbname=name)
    if reuse:
        print(f"== {rows:,} usage rows: reusing {name}", flush=True)
        with connect(url) as conn:
            t = time.perf_counter()
            applied = migrate(conn)  # this checkout's schema and reports
            print(f"  migrations {applied}: {time.perf_counter() - t:.1f} s", flush=True)
            # leftovers of an interrupted run
            conn.execute(
                "DELETE FROM task_usage"
                " WHERE provider LIKE ANY (ARRAY['bench-%', 'tick-%', 'ingest-%'])"
            )
            rollup.drain(conn, 1_000_000)
            # Earlier runs' writes leave dead rows, short of autovacuum's threshold: 1.3M in
            # task_usage at 10M after two runs, with which the raw workspace reads took up
            # to 1.7x as long.
            t = time.perf_counter()
            conn.execute("VACUUM ANALYZE")
            print(f"  VACUUM ANALYZE: {time.perf_counter() - t:.1f} s", flush=True)
        load_s = build_s = float("nan")
    else:
        load_s, build_s = build(server, url, name, rows)
    with connect(url) as conn:
        s = pick(conn)
        # As the server does on the runtime's first daily report in the other zone: its day
        # buckets are then cut in that zone too (and counted below).
        conn.execute(usage.Q.register_zone, {"tz": s["other"], "workspace_id": s["workspace_id"]})
        conn.execute(
            usage.Q.register_runtime_zone, {"runtime_id": s["runtime_id"], "tz": s["other"]}
        )
        rollup.drain(conn, 1_000_000)
        sizes = conn.execute(
            "SELECT (SELECT count(*) FROM task_usage) AS usage,"
            " (SELECT count(*) FROM usage_rollup) AS segments,"
            " (SELECT count(*) FROM usage_rollup_ws) AS ws_segments,"
            " (SELECT count(*) FROM usage_day) AS day_buckets,"
            " (SELECT count(*) FROM usage_day_ws) AS ws_day_buckets,"
            " (SELECT count(*) FROM usage_head_ws) AS ws_heads,"
            " (SELECT count(*) FROM activity_rollup) AS activity,"
            " (SELECT count(*) FROM usage_offset) AS offsets"
        ).fetchone()
        s["slug"] = conn.execute(
            "SELECT substr(w.slug, 7) AS n FROM workspace w WHERE w.id = %s", (s["workspace_id"],)
        ).fetchone()["n"]
        print("  reads", flush=True)
        # The earlier phases' dirty pages are flushed now rather than while reads are timed.
        conn.execute("CHECKPOINT")
        result = {
            "url": url,
            "s": s,
            "rows": sizes["usage"],
            "sizes": sizes,
            "load_s": load_s,
            "build_s": build_s,
            "reads": reads(conn, s, runs),
        }
    result["http"] = http_ms(url, s, runs)
    return result


def ingest_rates(url: str) -> tuple[float, float]:
    """Ingest rows/s with the rollup triggers on and off: three of each, alternating (one run
    of either is at the mercy of the shared cores)."""
    with connect(url) as conn:
        rates = [ingest(conn, on) for _ in range(3) for on in (True, False)]
    return statistics.median(rates[0::2]), statistics.median(rates[1::2])


KINDS = ("segments", "ws_segments", "day_buckets", "ws_day_buckets", "ws_heads")


def rollup_rows(r: dict[str, Any]) -> int:
    return sum(r["sizes"][k] for k in KINDS)


def report(
    results: list[dict[str, Any]], flat: list[tuple[str, float, float, float, float]]
) -> None:
    sizes = " | ".join(f"{r['rows']:,} rows: rollup ms / raw ms / ratio" for r in results)
    print(f"\n| read (median of runs, database round trip) | {sizes} |")
    print("|---|" + "---|" * len(results))
    for i, (name, *_rest) in enumerate(results[0]["reads"]):
        cells = []
        for r in results:
            _, fast, slow = r["reads"][i]
            cells.append(f"{fast:.2f} / {slow:.2f} / {slow / fast:.1f}x")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for label, key in (
        ("HTTP end to end, 90d runtime report own zone", 0),
        ("HTTP end to end, 90d runtime report other zone", 1),
    ):
        print(f"| {label} | " + " | ".join(f"{r['http'][key]:.2f} ms" for r in results) + " |")
    print("\n| measure | " + " | ".join(f"{r['rows']:,} rows" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    rows = [
        (
            "rollup rows (runtime segments + workspace segments + day buckets + workspace UTC"
            " day buckets + workspace heads) / task_usage rows",
            lambda r: (
                " + ".join(f"{r['sizes'][k]:,}" for k in KINDS)
                + f" ({rollup_rows(r) / r['rows']:.3f}x, "
                f"{r['sizes']['offsets']} UTC offsets)"
            ),
        ),
        ("activity rollup rows", lambda r: f"{r['sizes']['activity']:,}"),
        (
            "load (s) / first full rollup (s)",
            lambda r: (
                "reused" if math.isnan(r["load_s"]) else f"{r['load_s']:.0f} / {r['build_s']:.1f}"
            ),
        ),
        *(
            (
                f"tick: fold {n // 1000}k new rows (ms, deltas queued; rows/s)",
                lambda r, n=n: (
                    f"{r['tick'][n][0]:.0f} ms, {r['tick'][n][1]:,.0f} deltas;"
                    f" {n / r['tick'][n][0] * 1000:,.0f} rows/s"
                ),
            )
            for n in TICK_ROWS
        ),
        (
            "ingest rows/s, rollup triggers on / off",
            lambda r: (
                f"{r['ingest_on']:,.0f} / {r['ingest_off']:,.0f} "
                f"({r['ingest_off'] / r['ingest_on']:.2f}x)"
            ),
        ),
    ]
    for label, f in rows:
        print(f"| {label} | " + " | ".join(f(r) for r in results) + " |")
    if len(results) > 1:
        first, last = f"{results[0]['rows']:,}", f"{results[-1]['rows']:,}"
        print(
            f"\n| rollup read, side by side | {first} rows ms | {last} rows ms | ratio"
            " | in the database: ms | ms | ratio |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, a, b, da, db in flat:
            print(
                f"| {name} | {a:.2f} | {b:.2f} | {b / a:.2f}x"
                f" | {da:.3f} | {db:.3f} | {db / da:.2f}x |"
            )
        for n in TICK_ROWS:
            ratio = results[-1]["tick"][n][0] / results[0]["tick"][n][0]
            print(f"\ntick cost of {n:,} rows, {last} / {first}: {ratio:.2f}")


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    """DATABASE_URL, else a throwaway PostgreSQL 15 (scripts/pg15) for as long as needed."""
    server = os.environ.get("DATABASE_URL")
    if server:
        yield server
        return
    server = subprocess.run(
        [str(ROOT / "scripts" / "pg15")], check=True, capture_output=True, text=True
    ).stdout.strip()
    try:
        yield server
    finally:
        subprocess.run([str(ROOT / "scripts" / "pg15"), "stop", server.split("host=")[1]])


def side_by_side(
    a: psycopg.Connection[Any], b: psycopg.Connection[Any], runs: int, columns: tuple[str, str]
) -> None:
    """Every rollup read of the bench's runtime and workspace on a and on b (checked to
    answer the same rows), median ms alternating in blocks of 5, as a Markdown table."""
    print(f"| read | {columns[0]} | {columns[1]} | ratio |")
    print("|---|---|---|---|")
    for name, sql, p in cases(a, pick(a)):
        params = {**p, "rollup": True}
        assert a.execute(sql, params).fetchall() == b.execute(sql, params).fetchall(), name
        x, y = ms(partial(query, a, sql, params), partial(query, b, sql, params), runs)
        print(f"| {name} | {x:.2f} | {y:.2f} | {y / x:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="measure databases loaded by an earlier run, migrated to this checkout",
    )
    args = ap.parse_args()
    with postgres() as server:
        results = [bench(server, n, args.runs, args.reuse) for n in args.rows]
        urls = [r["url"] for r in results]
        flat = []
        if len(urls) > 1:
            print("== rollup reads of the first and last database, side by side", flush=True)
            # Two fast reads (some take 0.1-0.3 ms): more runs than rollup vs raw.
            flat = flatness(urls, [r["s"] for r in results], 2 * args.runs)
        # Writes last: their dead rows set autovacuum to work on the shared cores, and the
        # statistics they leave behind are not those of the data read above.
        print("== ingest, then ticks on the databases in turn", flush=True)
        for r in results:
            r["ingest_on"], r["ingest_off"] = ingest_rates(r["url"])
        for r in results:
            r["tick"] = {}
        for n in TICK_ROWS:
            for r, t in zip(results, ticks(urls, n), strict=True):
                r["tick"][n] = t
        report(results, flat)


if __name__ == "__main__":
    main()
