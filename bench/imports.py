"""Log import at scale: lines per second end to end, and the rollup right after.

    DATABASE_URL=... .venv/bin/python bench/imports.py [--lines 1000000] [--codex-lines 300000]

Writes a generated Claude Code history of `--lines` lines and a Codex one of `--codex-lines`
(tests/logfiles.py; kept in /tmp between runs), then, on a fresh database, times
`usagemeter import` as a user runs it (a new process: start, read, write, fold what it
queued into the rollup, summary), timing the 30-day workspace report every half second
meanwhile. Right after the import it times that report (rollup path, with whatever is still
queued) against the raw scan, then ticks until the queue is empty. Last it imports again
(every file unchanged) and once more
with the files forgotten (every line read again, nothing new written).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from run import postgres  # noqa: E402

from tests.logfiles import claude_history, codex_history  # noqa: E402
from usagemeter import rollup, usage  # noqa: E402
from usagemeter.db import connect  # noqa: E402
from usagemeter.migrate import migrate  # noqa: E402

NAME = "usagemeter_bench_import"


def history(kind: str, lines: int) -> tuple[Path, int, int]:
    """The generated logs (made once per size): directory, lines, bytes."""
    path = Path(f"/tmp/usagemeter-bench-{kind}-{lines}")
    done = path / "DONE"
    if not done.exists():
        print(f"writing {lines:,} lines of {kind} logs to {path}", flush=True)
        make = claude_history if kind == "claude-code" else codex_history
        n = make(path / "logs", lines)
        done.write_text(str(n))
    files = list((path / "logs").rglob("*.jsonl"))
    return path / "logs", int(done.read_text()), sum(f.stat().st_size for f in files)


def cli_import(
    url: str, kind: str, logs: Path, ticker: bool = False
) -> tuple[float, str, list[float]]:
    """Run the import as a user does (with `ticker`, beside `usagemeter rollup --loop`, the
    tick a running server has); meanwhile time the 30-day workspace report every half second
    (once the import has made the workspace). (seconds, its output, report ms)"""
    env = {"DATABASE_URL": url, "PATH": "/usr/bin:/bin", "HOME": "/tmp", "COLUMNS": "100"}
    usagemeter = str(ROOT / ".venv" / "bin" / "usagemeter")
    command = [usagemeter, "import", kind, str(logs)]
    samples: list[float] = []
    beside = subprocess.Popen([usagemeter, "rollup", "--loop"], env=env) if ticker else None
    with connect(url) as conn:
        t = time.perf_counter()
        proc = subprocess.Popen(
            [*command, "--workspace", "bench"], env=env, stdout=subprocess.PIPE, text=True
        )
        while proc.poll() is None:
            ws = conn.execute("SELECT id FROM workspace WHERE slug = 'bench'").fetchone()
            if ws:
                samples.append(report_ms(conn, ws["id"], True, runs=1))
            time.sleep(0.5)
        seconds = time.perf_counter() - t
    if beside:
        beside.terminate()
        beside.wait()
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    return seconds, out, samples


def report_ms(conn: Any, wid: Any, rollup_path: bool, runs: int = 5) -> float:
    params = {"tz": "UTC", "days": 30, "workspace_id": wid, "rollup": rollup_path}
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        conn.execute(usage.Q.workspace_daily, params).fetchall()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def queue(conn: Any) -> int:
    return int(conn.execute("SELECT count(*) AS n FROM usage_dirty").fetchone()["n"])


def one_source(server: str, kind: str, lines: int, ticker: bool) -> dict[str, Any]:
    logs, n, size = history(kind, lines)
    url = make_conninfo(server, dbname=NAME)
    with connect(server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {NAME}")
    with connect(url) as conn:
        migrate(conn)
    seconds, table, samples = cli_import(url, kind, logs, ticker)
    print(table, flush=True)
    r: dict[str, Any] = {"source": kind, "lines": n, "mb": round(size / 1e6, 1), "ticker": ticker}
    r["import_s"] = round(seconds, 2)
    r["lines_per_s"] = round(n / seconds)
    r["report_ms_during_import"] = {
        "samples": len(samples),
        "median": round(statistics.median(samples), 2) if samples else None,
        "worst": round(max(samples), 2) if samples else None,
    }
    with connect(url) as conn:
        conn.execute("ANALYZE")
        wid = conn.execute("SELECT id FROM workspace WHERE slug = 'bench'").fetchone()["id"]
        r["usage_rows"] = conn.execute("SELECT count(*) AS n FROM task_usage").fetchone()["n"]
        r["queue_after_import"] = queue(conn)
        r["report_ms_queued"] = round(report_ms(conn, wid, True), 2)
        r["report_ms_raw"] = round(report_ms(conn, wid, False), 2)
        t = time.perf_counter()
        worst = 0.0
        while queue(conn):
            rollup.tick(conn)
            worst = max(worst, report_ms(conn, wid, True, runs=1))
        r["converge_s"] = round(time.perf_counter() - t, 2)
        r["report_ms_worst_while_folding"] = round(worst, 2)
        r["report_ms_folded"] = round(report_ms(conn, wid, True), 2)
    seconds, _, _ = cli_import(url, kind, logs)
    r["again_unchanged_s"] = round(seconds, 2)
    with connect(url) as conn:
        conn.execute("DELETE FROM import_file")
    seconds, table, _ = cli_import(url, kind, logs)
    assert " new " in table
    r["again_reread_s"] = round(seconds, 2)
    r["again_reread_lines_per_s"] = round(n / seconds)
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--codex-lines", type=int, default=300_000)
    parser.add_argument(
        "--ticker", action="store_true", help="import beside `usagemeter rollup --loop`"
    )
    args = parser.parse_args()
    results = []
    with postgres() as server:
        results.append(one_source(server, "claude-code", args.lines, args.ticker))
        if args.codex_lines:
            results.append(one_source(server, "codex", args.codex_lines, args.ticker))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
