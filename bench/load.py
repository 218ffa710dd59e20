"""Load: requests per second, latency and CPU per request of `usagemeter serve` by
concurrency, reads and writes, with every answer checked and the written totals compared
with the database.

    .venv/bin/python bench/load.py [--seconds 10] [--concurrency 1 8 32 64] [--workers N]
                                   [--reads runtime90] [--no-writes]

Starts `usagemeter serve` on a fresh embedded PostgreSQL (DATABASE_URL unset) filled by
`usagemeter demo --days 90`, then, per concurrency, runs that many keep-alive clients (a
lean asyncio client: one connection each, no HTTP library in the loop) for `seconds`:
reads cycle through the runtime report (90 days), by-agent, the workspace summary and
daily; writes post 100-entry batches. Prints requests/s, p50 and p99, and errors (any
answer but 200, or a broken connection); then checks that the database holds exactly the
tokens of the acknowledged batches. CPU per request is the CPU time the server's processes
and PostgreSQL's (every process of its cluster) spent during a level, over its requests
(the client's own CPU is not in it); `--reads runtime90` reads only the 90-day runtime
report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from usagemeter.db import connect

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).with_name("usagemeter")


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: bytes = b"", headers: str = ""
    ) -> tuple[int, bytes]:
        """`headers`: more header lines (each ending in CRLF); the body's type is JSON unless
        they say otherwise."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        if "content-type:" not in headers.lower():
            headers += "Content-Type: application/json\r\n"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {self.token}\r\n"
            f"X-Workspace-Slug: demo\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        payload = await self.reader.readexactly(length)
        return int(status_line.split()[1]), payload


async def run_level(
    port: int, token: str, paths: list[str], concurrency: int, seconds: float, write: Any
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    acked = 0
    end = time.perf_counter() + seconds

    async def worker(n: int) -> None:
        nonlocal errors, acked
        client = Client(port, token)
        i = n
        while time.perf_counter() < end:
            i += 1
            method, path, body = write(i) if write else ("GET", paths[i % len(paths)], b"")
            t = time.perf_counter()
            try:
                status, payload = await client.request(method, path, body)
            except (OSError, asyncio.IncompleteReadError):
                errors += 1
                client = Client(port, token)
                continue
            latencies.append((time.perf_counter() - t) * 1000)
            if status != 200:
                errors += 1
            elif write:
                acked += 1
            elif not payload.startswith((b"[", b"{")):
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) if latencies else 0.0,
        "p99": q[98],
        "errors": errors,
        "acked": acked,
    }


def cpu(root: int, skip: int = 0) -> dict[int, float]:
    """CPU seconds (user + system, with those of its children that ended) so far of a
    process and of each of its descendants (but `skip` and its own)."""
    out: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid == skip:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            todo += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except FileNotFoundError:
            continue
        out[pid] = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return out


def spent(root: int, before: dict[int, float], skip: int = 0) -> float:
    """CPU seconds a process tree spent since `before` (processes started since count whole)."""
    return sum(t - before.get(pid, 0.0) for pid, t in cpu(root, skip).items())


def serve(data_dir: Path, port: int, workers: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "USAGEMETER_DATA_DIR": str(data_dir), "USAGEMETER_PORT": str(port)}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen(
        [EXE, "serve", "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    raise SystemExit("usagemeter serve did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    ap.add_argument("--workers", type=int, default=1, help="usagemeter serve --workers")
    ap.add_argument("--reads", choices=["mixed", "runtime90"], default="mixed")
    ap.add_argument("--no-writes", action="store_true")
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="um-load-", dir="/tmp"))
    env = {**os.environ, "USAGEMETER_DATA_DIR": str(data_dir)}
    env.pop("DATABASE_URL", None)
    demo = [EXE, "demo", "--days", "90"]
    token = subprocess.run(demo, env=env, check=True, capture_output=True, text=True).stdout
    token = token.strip().splitlines()[-1]
    port = 8700 + os.getpid() % 200
    server = serve(data_dir, port, args.workers)
    postmaster = int((data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    try:
        with connect(_url(data_dir)) as conn:
            rt = conn.execute("SELECT id FROM agent_runtime ORDER BY name LIMIT 1").fetchone()
            agent = conn.execute("SELECT id FROM agent ORDER BY name LIMIT 1").fetchone()
            assert rt and agent
            tasks = [
                str(r["id"])
                for r in conn.execute(
                    "INSERT INTO agent_task_queue (agent_id, runtime_id)"
                    " SELECT %s, %s FROM generate_series(1, 100) RETURNING id",
                    (agent["id"], rt["id"]),
                ).fetchall()
            ]
        paths = [
            f"/api/runtimes/{rt['id']}/usage?days=90",
            f"/api/runtimes/{rt['id']}/usage/by-agent?days=30",
            "/api/usage/summary?days=30",
            "/api/usage/daily?days=30",
        ][: 1 if args.reads == "runtime90" else None]

        def write(i: int) -> tuple[str, str, bytes]:
            model = f"load-{uuid.uuid4().hex[:12]}"
            entries = [{"task_id": t, "model": model, "input_tokens": 3} for t in tasks]
            return "POST", "/api/usage/batch", json.dumps({"usage": entries}).encode()

        print(f"{args.workers} server process(es); reads: {args.reads}")
        print(
            "| load | clients | requests/s | p50 ms | p99 ms | CPU ms per request"
            " (server + PostgreSQL) | errors |"
        )
        print("|---|---|---|---|---|---|---|")
        acked = 0
        loads = [("reads", None)] + (
            [] if args.no_writes else [("writes (100-entry batches)", write)]
        )
        for kind, fn in loads:
            for c in args.concurrency:
                # The server's processes (not PostgreSQL, should it be among them), PostgreSQL's.
                trees = ((server.pid, postmaster), (postmaster, 0))
                before = [cpu(root, skip) for root, skip in trees]
                r = asyncio.run(run_level(port, token, paths, c, args.seconds, fn))
                used = [
                    spent(root, b, skip) * 1000 / max(r["requests"], 1)
                    for (root, skip), b in zip(trees, before, strict=True)
                ]
                acked += r["acked"]
                print(
                    f"| {kind} | {c} | {r['rps']:.0f} | {r['p50']:.1f} | {r['p99']:.1f}"
                    f" | {sum(used):.2f} ({used[0]:.2f} + {used[1]:.2f})"
                    f" | {r['errors']} of {r['requests']} |",
                    flush=True,
                )
        with connect(_url(data_dir)) as conn:
            row = conn.execute(
                "SELECT count(*) AS n, coalesce(sum(input_tokens), 0) AS t FROM task_usage"
                " WHERE model LIKE 'load-%%'"
            ).fetchone()
        assert row is not None
        exact = row["n"] == 100 * acked and row["t"] == 300 * acked
        print(
            f"\nacknowledged batches: {acked}; rows written: {row['n']} (expected {100 * acked});"
            f" totals {'exact' if exact else 'NOT EXACT'}"
        )
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data_dir, ignore_errors=True)


def _url(data_dir: Path) -> str:
    lines = (data_dir / "pgdata" / "postmaster.pid").read_text().splitlines()
    return f"postgresql://postgres@/postgres?host={lines[4]}&port={lines[3]}"


if __name__ == "__main__":
    main()
