"""Shared by the rollup tests: a scene of workspaces, runtimes and usage that reads every
report on the rollup path and on the raw path."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg

from tests.conftest import World, auth
from usagemeter import runtimes, usage
from usagemeter.db import Row

ZONES = ["Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "America/New_York", "UTC"]
PROVIDERS = ["anthropic", "openrouter"]
MODELS = ["claude-sonnet-4-5", "gpt-5-2025-08-07", "mystery-1"]
EXAMPLES = int(os.environ.get("ROLLUP_EXAMPLES", "150"))
# A global price of (model, effective_from) with this input price, set or replaced.
SET_PRICE = (
    "INSERT INTO model_price (model, effective_from, input_per_mtok, output_per_mtok,"
    " cache_read_per_mtok, cache_write_per_mtok) VALUES (%s, %s, %s, 1, 0.5, 0)"
    " ON CONFLICT ON CONSTRAINT model_price_key"
    " DO UPDATE SET input_per_mtok = excluded.input_per_mtok"
)


class Scene:
    """Two workspaces, three runtimes, four agents, six tasks (two on an issue), all in one
    open transaction of `conn` (rolled back by the caller)."""

    def __init__(self, conn: psycopg.Connection[Row], zones: tuple[str, str, str]) -> None:
        self.conn = conn
        w = World(conn)
        self.workspaces = [w.workspace("acme"), w.workspace("beta")]
        self.runtimes = [
            w.runtime(self.workspaces[ws], tz=z) for ws, z in zip((0, 0, 1), zones, strict=True)
        ]
        self.agents = [
            w.agent(self.workspaces[0], self.runtimes[0]),
            w.agent(self.workspaces[0], self.runtimes[0]),
            w.agent(self.workspaces[0], self.runtimes[1]),
            w.agent(self.workspaces[1], self.runtimes[2]),
        ]
        self.issue = w.issue(self.workspaces[0])
        self.tasks = [
            w.task(
                self.agents[i % 4],
                self.runtimes[[0, 0, 1, 2][i % 4]],
                issue=self.issue if i < 2 else None,
            )
            for i in range(6)
        ]
        self.world = w
        self.midnight = w.today_utc()

    def exec(self, sql: str, params: Any = None) -> None:
        self.conn.execute(sql, params)

    def apply(self, op: tuple[Any, ...]) -> None:
        kind, *a = op
        if kind == "use":
            task, provider, model, quarter, jitter, tokens, cost = a
            at = self.midnight + timedelta(minutes=15 * quarter, microseconds=jitter)
            found = self.conn.execute(
                "SELECT 1 FROM agent_task_queue WHERE id = %s", (self.tasks[task],)
            ).fetchone()
            if found:  # a deleted task takes no more usage
                self.world.usage(
                    self.tasks[task], MODELS[model], at, PROVIDERS[provider], tokens, cost
                )
        elif kind == "use2":
            task, model, q, jit, toks, gap = a
            for provider in (0, 1):
                self.apply(("use", task, provider, model, q, jit, toks, None))
                q += gap
        elif kind == "drop_usage":
            task, provider, model = a
            self.exec(
                "DELETE FROM task_usage WHERE task_id = %s AND provider = %s AND model = %s",
                (self.tasks[task], PROVIDERS[provider], MODELS[model]),
            )
        elif kind == "move_task":
            task, agent = a
            self.exec(
                "UPDATE agent_task_queue t SET agent_id = a.id, runtime_id = a.runtime_id"
                " FROM agent a WHERE a.id = %s AND t.id = %s",
                (self.agents[agent], self.tasks[task]),
            )
        elif kind == "move_agent":
            agent, ws = a
            self.exec(
                "UPDATE agent SET workspace_id = %s WHERE id = %s",
                (self.workspaces[ws], self.agents[agent]),
            )
        elif kind == "start":
            task, q, jit = a
            at = self.midnight + timedelta(minutes=15 * q, microseconds=jit)
            self.exec(
                "UPDATE agent_task_queue SET started_at = %s WHERE id = %s",
                (at if q % 5 else None, self.tasks[task]),
            )
        elif kind == "drop_task":
            self.exec("DELETE FROM agent_task_queue WHERE id = %s", (self.tasks[a[0]],))
        elif kind == "drop_issue":
            self.exec("DELETE FROM issue WHERE id = %s", (self.issue,))
        elif kind == "drop_agent":
            self.exec("DELETE FROM agent WHERE id = %s", (self.agents[a[0]],))
        elif kind == "drop_runtime":
            self.exec("DELETE FROM agent WHERE runtime_id = %s", (self.runtimes[a[0]],))
            self.exec("DELETE FROM agent_runtime WHERE id = %s", (self.runtimes[a[0]],))
        elif kind == "zone":
            runtime, zone = a
            self.exec(
                "UPDATE agent_runtime SET timezone = %s WHERE id = %s",
                (ZONES[zone], self.runtimes[runtime]),
            )
        elif kind == "register":
            self.exec("SELECT register_zone(%s)", (ZONES[a[0]],))
        elif kind == "view":  # as the server does on a runtime's daily report in a zone
            runtime, zone = a
            self.exec("SELECT register_zone(%s)", (ZONES[zone],))
            self.exec("SELECT register_runtime_zone(%s, %s)", (self.runtimes[runtime], ZONES[zone]))
        elif kind == "price":
            model, days_ago, cents = a
            self.exec(
                SET_PRICE,
                (
                    MODELS[model].split("-2025")[0],
                    (self.midnight - timedelta(days=days_ago)).date(),
                    Decimal(cents) + Decimal("0.25"),
                ),
            )
        elif kind == "tick":
            self.exec("SELECT rollup(%s)", (a[0],))
        else:  # pragma: no cover
            raise AssertionError(kind)

    def reads(self, rollup: bool, days: int, zone: str) -> list[Any]:
        """Every rollup-served report of every scope, in the runtime's zone and in `zone`."""
        out: list[Any] = []
        for rid in self.runtimes:
            row = self.conn.execute(
                "SELECT timezone FROM agent_runtime WHERE id = %s", (rid,)
            ).fetchone()
            for tz in ([row["timezone"]] if row else []) + [zone]:
                p = {"runtime_id": rid, "days": days, "tz": tz, "rollup": rollup}
                out.append(self.conn.execute(usage.Q.runtime_usage, p).fetchall())
                out.append(self.conn.execute(usage.Q.runtime_usage_by_agent, p).fetchall())
                out.append(self.conn.execute(usage.Q.runtime_usage_by_hour, p).fetchall())
                out.append(self.conn.execute(usage.Q.runtime_activity, p).fetchall())
        for ws in self.workspaces:
            p = {"workspace_id": ws, "days": days, "tz": zone, "rollup": rollup}
            out.append(self.conn.execute(usage.Q.workspace_daily, p).fetchall())
            out.append(self.conn.execute(usage.Q.workspace_summary, p).fetchall())
            p = {"workspace_id": ws, "mine": False, "user_id": None, "rollup": rollup}
            out.append(self.conn.execute(runtimes.Q.list_runtimes, p).fetchall())
        return out

    def check(self, days: int, zone: str) -> None:
        assert self.reads(True, days, zone) == self.reads(False, days, zone)


def runtime_report(conn: psycopg.Connection[Row], rid: Any, rollup: bool) -> list[Row]:
    p = {"runtime_id": rid, "days": 30, "tz": "Asia/Kolkata", "rollup": rollup}
    return conn.execute(usage.Q.runtime_usage, p).fetchall()


def utc_runtime_read_by_http(world: World) -> tuple[Any, dict[str, str]]:
    """A UTC runtime with 100 input tokens two days ago, and a caller's headers."""
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task, at=world.today_utc() - timedelta(days=2, hours=4), tokens=(100, 0, 0, 0))
    return rid, auth(world.token())
