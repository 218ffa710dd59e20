"""OpenTelemetry ingest: usage records per second through one `usagemeter serve` process.

    DATABASE_URL=... .venv/bin/python bench/otlp.py [--records 200000] [--batch 512]
                                                    [--clients 4]

On a fresh database, `--clients` connections post OTLP/HTTP log exports (protobuf, gzip) of
Claude Code `claude_code.api_request` events to /v1/logs as fast as the server answers:
`--batch` events each (Claude Code's batch processor sends at most 512), from 8 machines
and 64 sessions, as they happen (the last hour's requests, in order). The exports are made
with the official SDK and its encoder (tests/otel.py) before the clock starts. Every 2 s a
sampler times the 30-day workspace report. At the end: records per second, the tasks
written (checked equal to the records sent), the CPU the server process and PostgreSQL
spent per record, the report's times, and how long until the rollup's queue is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from load import Client  # noqa: E402
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs  # noqa: E402
from run import postgres, serving  # noqa: E402

from tests import otel  # noqa: E402
from usagemeter.auth import create_token  # noqa: E402
from usagemeter.db import connect  # noqa: E402
from usagemeter.migrate import migrate  # noqa: E402

NAME = "usagemeter_bench_otlp"
HEADERS = "Content-Type: application/x-protobuf\r\nContent-Encoding: gzip\r\n"


def exports(records: int, batch: int) -> list[bytes]:
    """The export bodies: one SDK-made batch per machine, then copies of it with their
    records moved to new times and sequence numbers (so every record is a new request)."""
    now = datetime.now(UTC).replace(microsecond=0)
    templates = []
    for machine in range(8):
        events = [
            otel.api_request(now, session=f"m{machine}-s{i % 8}", seq=i) for i in range(batch)
        ]
        resource = {"service.name": "claude-code", "host.name": f"dev-{machine}"}
        templates.append(encode_logs(otel.log_records(events, resource)))
    bodies = []
    # As live telemetry arrives: every request of the last hour, in order.
    start = int((now - timedelta(hours=1)).timestamp()) * 10**9
    step = 3600 * 10**9 // records
    n = 0
    for b in range(-(-records // batch)):
        message = templates[b % len(templates)]
        for record in message.resource_logs[0].scope_logs[0].log_records:
            record.time_unix_nano = start + n * step
            for kv in record.attributes:
                if kv.key == "event.sequence":
                    kv.value.int_value = n
            n += 1
        bodies.append(gzip.compress(message.SerializeToString(), 1))
    return bodies


async def post_all(port: int, token: str, bodies: list[bytes], clients: int) -> float:
    queue = list(reversed(bodies))

    async def client() -> None:
        c = Client(port, token)
        while queue:
            status, answer = await c.request("POST", "/v1/logs", queue.pop(), HEADERS)
            assert status == 200 and not answer, (status, answer[:300])

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


async def sample(port: int, token: str, done: asyncio.Event, out: list[float]) -> None:
    c = Client(port, token)
    while not done.is_set():
        t = time.perf_counter()
        status, answer = await c.request("GET", "/api/usage/daily?days=30&workspace_slug=otel")
        assert status == 200, answer[:300]
        out.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(2)


async def run(
    port: int, token: str, bodies: list[bytes], clients: int
) -> tuple[float, list[float]]:
    # One export and one report first, untimed: a new process plans its statements on first use.
    await Client(port, token).request("POST", "/v1/logs", bodies[0], HEADERS)
    await Client(port, token).request("GET", "/api/usage/daily?days=30&workspace_slug=otel")
    done = asyncio.Event()
    times: list[float] = []
    sampler = asyncio.create_task(sample(port, token, done, times))
    elapsed = await post_all(port, token, bodies[1:], clients)
    done.set()
    await sampler
    return elapsed, times


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by the server's process and by PostgreSQL's."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"server": 0.0, "postgres": 0.0}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            cmd = (stat.parent / "cmdline").read_bytes()
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        who = (
            "server"
            if b"usagemeter.cli\x00serve" in cmd
            else "postgres"
            if b"postgres" in cmd
            else ""
        )
        if who:
            out[who] += (int(fields[11]) + int(fields[12])) / tick
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    print(f"building {args.records:,} records in exports of {args.batch}", flush=True)
    bodies = exports(args.records, args.batch)
    sent = sum(1 for _ in bodies[1:]) * args.batch
    with postgres() as server, connect(server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {NAME} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {NAME}")
        url = make_conninfo(server, dbname=NAME)
        with connect(url) as conn:
            migrate(conn)
            token = create_token(
                conn, email=None, name="bench", workspace_slug="otel", role="member", daemon=True
            )
            create_token(
                conn, email="b@example.com", name="", workspace_slug="otel", role="owner",
                daemon=False,
            )  # fmt: skip
        with serving(url) as port:
            before = cpu_seconds()
            elapsed, times = asyncio.run(run(port, token, bodies, args.clients))
            after = cpu_seconds()
            with connect(url) as conn:
                t = time.perf_counter()
                while conn.execute("SELECT count(*) AS n FROM usage_dirty").fetchone()["n"]:
                    time.sleep(0.2)
                drain = time.perf_counter() - t
                row = conn.execute(
                    "SELECT count(*) AS n FROM agent_task_queue WHERE source = 'otlp:log'"
                ).fetchone()
        assert row["n"] == sent + args.batch, (row["n"], sent + args.batch)
    print(
        f"\n{sent:,} records in {len(bodies) - 1:,} exports of {args.batch} from {args.clients}"
        f" clients: {elapsed:.1f} s, {sent / elapsed:,.0f} records/s (one server process);"
        f" {row['n']:,} tasks written"
    )
    cpu = {k: (after[k] - before[k]) / sent * 1e6 for k in after}
    print(f"CPU per record: server {cpu['server']:.0f} µs, PostgreSQL {cpu['postgres']:.0f} µs")
    print(
        f"30-day workspace report during the ingest: median {statistics.median(times):.1f} ms,"
        f" max {max(times):.1f} ms over {len(times)} samples;"
        f" queue empty {drain:.1f} s after the last export"
    )


if __name__ == "__main__":
    main()
