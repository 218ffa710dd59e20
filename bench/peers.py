"""The peers, side by side: the same reports on the same data in DuckDB and in ClickHouse
(chDB), each table sorted for its report, checked equal to the rollup's answers.

    pip install duckdb chdb     # into .venv: the bench's peers, not the product's needs
    DATABASE_URL=... .venv/bin/python bench/peers.py [--rows 1000000 10000000] [--runs 15]

For each size, bench/run.py's database (reused as it is) is exported once (task_usage as
CSV, and the global price catalogue, the only prices of the bench's data) and loaded into
DuckDB twice (ordered by runtime, and by workspace, then time) and into chDB twice
(MergeTree tables with those sort keys). Every report of the bench's runtime and workspace
runs in each engine, its rows checked equal to ours (tokens, cost in 1e-10 USD, unpriced
tokens, distinct tasks), then timed in turns: the median of `--runs` calls each, wall time
from Python (PostgreSQL over its socket, the peers in-process). By hour, which sums raw rows,
is also timed on the product's own indexes: without the covering index bench/run.py makes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

sys.path.insert(0, str(Path(__file__).parent))
from run import pick, postgres

from usagemeter import usage
from usagemeter.db import connect

KINDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")

# Each report: our query and days, its scope, its keys and whether it counts tasks.
REPORTS = {
    "runtime usage 90d by date": (
        usage.Q.runtime_usage,
        90,
        "runtime",
        ("date", "provider", "model"),
        False,
    ),
    "runtime by agent 30d": (
        usage.Q.runtime_usage_by_agent,
        30,
        "runtime",
        ("agent_id", "model"),
        True,
    ),
    "runtime by hour 30d": (usage.Q.runtime_usage_by_hour, 30, "runtime", ("hour", "model"), True),
    "workspace daily 30d": (usage.Q.workspace_daily, 30, "workspace", ("date", "model"), True),
    "workspace summary 30d": (usage.Q.workspace_summary, 30, "workspace", ("model",), True),
}
EXPR = {  # a key as each peer computes it, from `created_at` in UTC and the zone
    "date": ("CAST(timezone('{tz}', u.created_at) AS DATE)", "toDate(u.created_at, '{tz}')"),
    "hour": (
        "CAST(hour(timezone('{tz}', u.created_at)) AS INTEGER)",
        "toHour(u.created_at, '{tz}')",
    ),
    "provider": ("u.provider", "u.provider"),
    "model": ("u.model", "u.model"),
    "agent_id": ("u.agent_id", "u.agent_id"),
}


def peer_sql(
    peer: int,
    table: str,
    scope_col: str,
    scope: str,
    since: str,
    tz: str,
    keys: tuple[str, ...],
    tasks: bool,
) -> str:
    """A report in DuckDB's (peer 0) or ClickHouse's (peer 1) SQL: sums, cost in 1e-10 USD at
    the model's price (none: unpriced tokens), distinct tasks."""
    cols = [EXPR[k][peer].format(tz=tz) for k in keys]
    sums = ", ".join(f"sum(u.{k}) AS {k}" for k in KINDS)
    weigh = " + ".join(f"u.{k} * p.{k}" for k in KINDS)
    total = " + ".join(f"u.{k}" for k in KINDS)
    priced = "p.model IS NOT NULL" if peer == 0 else "p.model != ''"
    since_expr = f"TIMESTAMPTZ '{since}'" if peer == 0 else f"toDateTime64('{since}', 6, 'UTC')"
    cost = f"sum(CASE WHEN {priced} THEN {weigh} ELSE 0 END)"
    if peer == 1:
        cost = f"sum(if({priced}, toInt128({weigh}), toInt128(0)))"
    return f"""
        SELECT {", ".join(f"{c} AS k{i}" for i, c in enumerate(cols))}, {sums},
               {cost} AS cost_units,
               sum(CASE WHEN {priced} THEN 0 ELSE {total} END) AS unpriced,
               {"count(DISTINCT u.task_id)" if tasks else "0"} AS tasks
        FROM {table} u LEFT JOIN price p ON p.model = u.model
        WHERE u.{scope_col} = '{scope}' AND u.created_at >= {since_expr}
        GROUP BY {", ".join(f"k{i}" for i in range(len(cols)))}
    """


def normal(rows: list[Any], n: int) -> dict[tuple[str, ...], tuple[int, ...]]:
    """Rows of (n keys, 4 sums, cost units, unpriced, tasks) as comparable values."""
    return {tuple(str(v) for v in r[:n]): tuple(int(Decimal(str(v))) for v in r[n:]) for r in rows}


def ours(conn: Any, sql: str, params: dict[str, Any], keys: tuple[str, ...]) -> Any:
    rows = conn.execute(sql, params).fetchall()
    prefix = "total_" if "total_input_tokens" in (rows[0] if rows else {}) else ""
    return normal(
        [
            (
                *(r[k] for k in keys),
                *(r[prefix + k] for k in KINDS),
                Decimal(r["cost_usd"]) * 10**10,
                r["unpriced_tokens"],
                r.get("task_count", 0),
            )
            for r in rows
        ],
        len(keys),
    )


def median_ms(f: Callable[[], Any], runs: int) -> float:
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def bench(server: str, rows: int, runs: int) -> None:
    import chdb.session
    import duckdb

    url = make_conninfo(server, dbname=f"usagemeter_bench_{rows}")
    work = Path(tempfile.mkdtemp(prefix="um-peers-", dir="/tmp"))
    csv = work / "usage.csv"
    with connect(url) as conn:
        s = pick(conn)
        print(f"== {rows:,} usage rows: exporting", flush=True)
        with (
            conn.cursor().copy(
                "COPY (SELECT runtime_id, workspace_id, agent_id, task_id, provider, model,"
                " input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
                " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') AS created_at"
                " FROM task_usage) TO STDOUT WITH (FORMAT csv, HEADER)"
            ) as copy,
            csv.open("wb") as out,
        ):
            for chunk in copy:
                out.write(chunk)
        prices = conn.execute(
            "SELECT model, (input_per_mtok * 10000)::bigint AS input_tokens,"
            " (output_per_mtok * 10000)::bigint AS output_tokens,"
            " (cache_read_per_mtok * 10000)::bigint AS cache_read_tokens,"
            " (cache_write_per_mtok * 10000)::bigint AS cache_write_tokens"
            " FROM model_price WHERE workspace_id IS NULL AND provider IS NULL"
        ).fetchall()
        since = {
            d: conn.execute(
                "SELECT to_char(usage_since(now(), %s, %s) AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD HH24:MI:SS') AS t",
                (s["own"], d),
            ).fetchone()["t"]
            for d in (30, 90)
        }
    print("  loading DuckDB and chDB", flush=True)
    duck = duckdb.connect()
    duck.execute("SET TimeZone = 'UTC'")
    columns = (
        "{'runtime_id': 'VARCHAR', 'workspace_id': 'VARCHAR', 'agent_id': 'VARCHAR',"
        " 'task_id': 'VARCHAR', 'provider': 'VARCHAR', 'model': 'VARCHAR',"
        " 'input_tokens': 'BIGINT', 'output_tokens': 'BIGINT', 'cache_read_tokens': 'BIGINT',"
        " 'cache_write_tokens': 'BIGINT', 'created_at': 'TIMESTAMPTZ'}"
    )
    for name, key in (("u_rt", "runtime_id"), ("u_ws", "workspace_id")):
        duck.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_csv('{csv}', header = true,"
            f" columns = {columns}) ORDER BY {key}, created_at"
        )
    duck.execute(
        "CREATE TABLE price (model VARCHAR, input_tokens BIGINT, output_tokens BIGINT,"
        " cache_read_tokens BIGINT, cache_write_tokens BIGINT)"
    )
    duck.executemany(
        "INSERT INTO price VALUES (?, ?, ?, ?, ?)", [tuple(p.values()) for p in prices]
    )
    ch = chdb.session.Session(str(work / "chdb"))
    ch.query("CREATE DATABASE IF NOT EXISTS b ENGINE = Atomic")
    ch.query("USE b")
    for name, key in (("u_rt", "runtime_id"), ("u_ws", "workspace_id")):
        ch.query(
            f"CREATE TABLE {name} (runtime_id String, workspace_id String, agent_id String,"
            " task_id String, provider String, model String, input_tokens Int64,"
            " output_tokens Int64, cache_read_tokens Int64, cache_write_tokens Int64,"
            f" created_at DateTime64(6, 'UTC')) ENGINE = MergeTree ORDER BY ({key}, created_at)"
        )
        ch.query(f"INSERT INTO {name} SELECT * FROM file('{csv}', CSVWithNames)")
    ch.query(
        "CREATE TABLE price (model String, input_tokens Int64, output_tokens Int64,"
        " cache_read_tokens Int64, cache_write_tokens Int64) ENGINE = Memory"
    )
    values = ", ".join(
        f"('{p['model']}', {p['input_tokens']}, {p['output_tokens']},"
        f" {p['cache_read_tokens']}, {p['cache_write_tokens']})"
        for p in prices
    )
    ch.query(f"INSERT INTO price VALUES {values}")
    ch.query("SET join_use_nulls = 0")

    print(f"\n{rows:,} usage rows; median ms of {runs} calls")
    print("| report | rollup (PostgreSQL) | DuckDB | ClickHouse (chDB) | rows equal |")
    print("|---|---|---|---|---|")
    with connect(url) as conn:
        for name, (sql, days, scope, keys, tasks) in REPORTS.items():
            table, col, scope_id = (
                ("u_rt", "runtime_id", s["runtime_id"])
                if scope == "runtime"
                else ("u_ws", "workspace_id", s["workspace_id"])
            )
            params = {
                "runtime_id": s["runtime_id"],
                "workspace_id": s["workspace_id"],
                "days": days,
                "tz": s["own"],
                "rollup": True,
            }
            q_duck = peer_sql(0, table, col, str(scope_id), since[days], s["own"], keys, tasks)
            q_ch = peer_sql(1, table, col, str(scope_id), since[days], s["own"], keys, tasks)
            mine = ours(conn, sql, params, keys)
            theirs = [
                normal(duck.execute(q_duck).fetchall(), len(keys)),
                normal(
                    [
                        tuple(line.split("\t"))
                        for line in str(ch.query(q_ch, "TabSeparated")).splitlines()
                    ],
                    len(keys),
                ),
            ]
            if not tasks:
                mine = {k: (*v[:-1], 0) for k, v in mine.items()}
            equal = all(t == mine for t in theirs)
            calls: list[Callable[[], Any]] = [
                lambda sql=sql, params=params: conn.execute(sql, params).fetchall(),
                lambda q=q_duck: duck.execute(q).fetchall(),
                lambda q=q_ch: ch.query(q, "TabSeparated"),
            ]
            times = [median_ms(call, runs) for call in calls]
            print(
                f"| {name} | {times[0]:.2f} | {times[1]:.2f} | {times[2]:.2f} |"
                f" {'yes' if equal else 'NO'} |",
                flush=True,
            )
        # By hour sums raw rows on both of our paths, through the covering index bench/run.py
        # makes for the raw path; the product ships no such index.
        sql, days, *_ = REPORTS["runtime by hour 30d"]
        params = {"runtime_id": s["runtime_id"], "days": days, "tz": s["own"], "rollup": True}
        with conn.transaction(force_rollback=True):
            conn.execute("DROP INDEX bench_runtime_id")
            own = median_ms(lambda: conn.execute(sql, params).fetchall(), runs)
        print(f"\nby hour on the product's own indexes (no covering index): {own:.2f} ms")
    ch.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    with postgres() as server:
        for rows in args.rows:
            bench(server, rows, args.runs)


if __name__ == "__main__":
    main()
