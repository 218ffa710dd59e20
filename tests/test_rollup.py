"""The rollup path answers exactly what the raw path answers, after every step."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from tests.conftest import World
from usagemeter import runtimes, usage
from usagemeter.db import Row

ZONES = ["Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "America/New_York", "UTC"]
PROVIDERS = ["anthropic", "openrouter"]
MODELS = ["claude-sonnet-4-5", "gpt-5-2025-08-07", "mystery-1"]
EXAMPLES = int(os.environ.get("ROLLUP_EXAMPLES", "150"))


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
            self.exec(
                "INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,"
                " cache_read_tokens, cache_write_tokens, cost_usd, created_at)"
                " SELECT id, %s, %s, %s, %s, %s, %s, %s, %s FROM agent_task_queue WHERE id = %s"
                " ON CONFLICT (task_id, provider, model) DO UPDATE SET"
                " input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,"
                " cache_read_tokens = excluded.cache_read_tokens,"
                " cache_write_tokens = excluded.cache_write_tokens, cost_usd = excluded.cost_usd",
                (PROVIDERS[provider], MODELS[model], *tokens, cost, at, self.tasks[task]),
            )
        elif kind == "use2":
            task, model, q, jit, toks = a
            for provider in (0, 1):
                self.apply(("use", task, provider, model, q, jit, toks, None))
                q += 7
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
        elif kind == "price":
            model, days_ago, cents = a
            self.exec(
                "INSERT INTO model_price (model, effective_from, input_per_mtok, output_per_mtok,"
                " cache_read_per_mtok, cache_write_per_mtok) VALUES (%s, %s, %s, 1, 0.5, 0)"
                " ON CONFLICT ON CONSTRAINT model_price_key"
                " DO UPDATE SET input_per_mtok = excluded.input_per_mtok",
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
        for ws in self.workspaces:
            p = {"workspace_id": ws, "days": days, "tz": zone, "rollup": rollup}
            out.append(self.conn.execute(usage.Q.workspace_daily, p).fetchall())
            out.append(self.conn.execute(usage.Q.workspace_summary, p).fetchall())
            p = {"workspace_id": ws, "mine": False, "user_id": None, "rollup": rollup}
            out.append(self.conn.execute(runtimes.Q.list_runtimes, p).fetchall())
        return out

    def check(self, days: int, zone: str) -> None:
        assert self.reads(True, days, zone) == self.reads(False, days, zone)


@pytest.fixture
def tx(db_url: str) -> Iterator[psycopg.Connection[Row]]:
    """A connection whose work is rolled back after each generated example."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.commit()
        yield conn


index = st.integers(min_value=0, max_value=5)
# Quarter hours from 60 days back to 3 days ahead of today 00:00 UTC, often at or next to a
# local midnight of one of ZONES (UTC quarter 16/20 New York, 41/45 Chatham, 73 Kathmandu,
# 74 Kolkata), nudged by ±1 µs.
quarter = st.builds(
    lambda day, q: 96 * day + q,
    st.integers(min_value=-60, max_value=2) | st.integers(min_value=-3, max_value=1),
    st.sampled_from([0, 16, 20, 41, 45, 73, 74]) | st.integers(0, 95),
)
jitter = st.sampled_from([0, 0, 1, -1])
tokens = st.tuples(*[st.integers(min_value=0, max_value=10**12)] * 4)
cost = st.none() | st.decimals(min_value=0, max_value=1000, places=4)
use = st.tuples(
    st.just("use"), index, st.integers(0, 1), st.integers(0, 2), quarter, jitter, tokens, cost
)
use2 = st.tuples(st.just("use2"), index, st.integers(0, 2), quarter, jitter, tokens)
STEPS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "use": use,
    # The same task and model under both providers.
    "use2": use2,
    "tick": st.tuples(st.just("tick"), st.sampled_from([1, 2, 1000, 1000])),
    "drop_usage": st.tuples(st.just("drop_usage"), index, st.integers(0, 1), st.integers(0, 2)),
    "move_task": st.tuples(st.just("move_task"), index, st.integers(0, 3)),
    "move_agent": st.tuples(st.just("move_agent"), st.integers(0, 3), st.integers(0, 1)),
    "drop_task": st.tuples(st.just("drop_task"), index),
    "drop_issue": st.tuples(st.just("drop_issue")),
    "drop_agent": st.tuples(st.just("drop_agent"), st.integers(0, 3)),
    "drop_runtime": st.tuples(st.just("drop_runtime"), st.integers(0, 2)),
    "zone": st.tuples(st.just("zone"), st.integers(0, 2), st.integers(0, len(ZONES) - 1)),
    "register": st.tuples(st.just("register"), st.integers(0, len(ZONES) - 1)),
    "price": st.tuples(st.just("price"), st.integers(0, 2), st.integers(-2, 40), st.integers(0, 9)),
}
# Writes and ticks often, deletes now and then.
WEIGHTS = {
    "use": 6,
    "use2": 2,
    "tick": 5,
    "drop_usage": 2,
    "move_task": 2,
    "move_agent": 1,
    "drop_task": 1,
    "drop_issue": 1,
    "drop_agent": 1,
    "drop_runtime": 1,
    "zone": 2,
    "register": 2,
    "price": 1,
}
step = st.sampled_from([k for k, w in WEIGHTS.items() for _ in range(w)]).flatmap(STEPS.get)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    zones=st.tuples(*[st.sampled_from(ZONES)] * 3),
    seed=st.lists(use | use2, min_size=1, max_size=8),
    ops=st.lists(step, min_size=1, max_size=20),
    days=st.sampled_from([0, 1, 7, 30, 90]),
    view=st.sampled_from(ZONES),
)
def test_rollup_equals_raw_after_every_step(
    tx: psycopg.Connection[Row],
    zones: tuple[str, str, str],
    seed: list[tuple[Any, ...]],
    ops: list[tuple[Any, ...]],
    days: int,
    view: str,
) -> None:
    try:
        scene = Scene(tx, zones)
        for o in seed:
            scene.apply(o)
        # Make the zones' offsets ready and cut the seed, so that most reads take segments.
        scene.apply(("tick", 1000))
        scene.apply(("tick", 1000))
        for o in ops:
            scene.apply(o)
            scene.check(days, view)
        scene.apply(("tick", 1000))
        scene.check(days, view)
        left = tx.execute("SELECT count(*) AS n FROM usage_dirty").fetchone()
        assert left == {"n": 0}
    finally:
        tx.rollback()
