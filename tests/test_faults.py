"""Faults under load: the server, the tick process and PostgreSQL killed while clients write.
Every batch answered 200 is wholly there, every other batch wholly there or wholly absent,
and reports on the rollup equal the raw path at the end. Bounded here (2 rounds of the
three faults, about 30 s); bench/faults.py runs more rounds and a long outage
(USAGEMETER_FAULT_ROUNDS, USAGEMETER_FAULT_OUTAGE seconds)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import World, embedded_data_dir
from tests.test_embedded import _free_port
from usagemeter import rollup, usage
from usagemeter.db import connect
from usagemeter.embedded import Embedded
from usagemeter.migrate import migrate

ROUNDS = int(os.environ.get("USAGEMETER_FAULT_ROUNDS", "2"))
OUTAGE = float(os.environ.get("USAGEMETER_FAULT_OUTAGE", "1"))
ENTRIES = 20  # per batch, each on its own task


class Stack:
    """PostgreSQL, `usagemeter serve` and `usagemeter rollup --loop` on one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.pg = Embedded(data_dir)
        self.url = self.pg.start()
        self.port = _free_port()
        self.env = {
            **os.environ,
            "USAGEMETER_DATA_DIR": str(data_dir),
            "USAGEMETER_PORT": str(self.port),
            "USAGEMETER_TICK_SECONDS": "0.2",
            "DATABASE_URL": "",
        }
        self.exe = Path(sys.executable).with_name("usagemeter")
        self.server = self.serve()
        self.ticker = self.tick()

    def serve(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [self.exe, "serve"], env=self.env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return proc
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)

    def tick(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.exe, "rollup", "--loop", "--every", "0.1"],
            env=self.env,
            stderr=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill_postgres(self, outage: float) -> None:
        pid = int((self.data_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(max(outage, 1))  # an outage; then its children have gone too
        self.pg.start()

    def stop(self) -> None:
        for proc in (self.server, self.ticker):
            proc.terminate()
            proc.wait(30)
        self.pg.release()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def stack() -> Iterator[Stack]:
    base = embedded_data_dir()
    s = Stack(base)
    try:
        yield s
    finally:
        s.stop()
        shutil.rmtree(base)


def test_nothing_acknowledged_is_lost_when_processes_and_postgres_die(stack: Stack) -> None:
    with connect(stack.url) as conn:
        migrate(conn)
        world = World(conn)
        token = world.token()
        ws = world.workspace()
        rt = world.runtime(ws, tz="Asia/Kolkata")
        agent = world.agent(ws, rt)
        tasks = [str(world.task(agent, rt)) for _ in range(ENTRIES)]
    headers = {"Authorization": f"Bearer {token}", "X-Workspace-Slug": "acme"}
    acked: set[str] = set()
    sent: set[str] = set()
    statuses: dict[int, int] = {}
    stop = threading.Event()

    def client(n: int) -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            model = f"c{n}-b{i}"
            i += 1
            entries = [{"task_id": t, "model": model, "input_tokens": 7} for t in tasks]
            body: dict[str, Any] = {"usage": entries}
            sent.add(model)
            try:
                r = session.post(
                    f"{stack.base}/api/usage/batch", json=body, headers=headers, timeout=10
                )
            except requests.RequestException:
                statuses[0] = statuses.get(0, 0) + 1
                time.sleep(0.05)
                continue
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                acked.add(model)
            else:
                time.sleep(0.05)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for c in clients:
        c.start()
    done: dict[str, int] = {}
    for round_ in range(ROUNDS):
        for fault in ("server", "ticker", "postgres"):
            time.sleep(2)  # load between faults
            if fault == "server":
                stack.server.kill()
                stack.server.wait(10)
                stack.server = stack.serve()
            elif fault == "ticker":
                stack.ticker.kill()
                stack.ticker.wait(10)
                stack.ticker = stack.tick()
            else:  # the last round's outage is the long one
                stack.kill_postgres(OUTAGE if round_ == ROUNDS - 1 else 1)
            done[fault] = done.get(fault, 0) + 1
    time.sleep(2)
    stop.set()
    for c in clients:
        c.join(30)
    assert statuses.get(200, 0) > 20, statuses  # it was under load through the faults
    assert set(statuses) <= {0, 200, 503}, statuses  # 0: the server was down
    assert statuses.get(0, 0) + statuses.get(503, 0) > 0, statuses  # the faults were felt
    print(f"\nfaults: {done}; batches by answer (0: no server): {statuses}")
    with connect(stack.url) as conn:
        rows = conn.execute(
            "SELECT model, count(*) AS n, sum(input_tokens) AS t FROM task_usage GROUP BY model"
        ).fetchall()
        present = {r["model"]: (r["n"], r["t"]) for r in rows}
        assert acked <= set(present), sorted(acked - set(present))[:5]
        assert all(v == (ENTRIES, 7 * ENTRIES) for v in present.values()), present
        assert set(present) <= sent
        deadline = time.monotonic() + 60
        while rollup.health(conn)["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.2)
        # Every report, in three zones, on the rollup and raw: the same JSON byte for byte.
        compared = 0
        for tz in ("Asia/Kolkata", "UTC", "America/New_York"):
            for sql, scope in (
                (usage.Q.runtime_usage, {"runtime_id": rt}),
                (usage.Q.runtime_usage_by_agent, {"runtime_id": rt}),
                (usage.Q.workspace_daily, {"workspace_id": ws}),
                (usage.Q.workspace_summary, {"workspace_id": ws}),
            ):
                params: dict[str, Any] = {**scope, "days": 7, "tz": tz}
                fast = conn.execute(sql, {**params, "rollup": True}).fetchall()
                raw = conn.execute(sql, {**params, "rollup": False}).fetchall()
                assert str(fast) == str(raw), (sql[:40], tz)
                compared += 1
        raw = conn.execute(
            usage.Q.runtime_usage, {"runtime_id": rt, "days": 7, "tz": "UTC", "rollup": False}
        ).fetchall()
        assert sum(r["input_tokens"] for r in raw) == 7 * ENTRIES * len(present)
        print(f"{len(acked)} batches acknowledged, all whole; {compared} reports compared")
