"""The rollup path answers exactly what the raw path answers, after every step."""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from typer.testing import CliRunner

from tests.conftest import World, auth, price
from usagemeter import rollup, runtimes, usage
from usagemeter.app import create_app
from usagemeter.cli import app
from usagemeter.config import Config
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
    "start": st.tuples(st.just("start"), index, quarter, jitter),
    "drop_usage": st.tuples(st.just("drop_usage"), index, st.integers(0, 1), st.integers(0, 2)),
    "move_task": st.tuples(st.just("move_task"), index, st.integers(0, 3)),
    "move_agent": st.tuples(st.just("move_agent"), st.integers(0, 3), st.integers(0, 1)),
    "drop_task": st.tuples(st.just("drop_task"), index),
    "drop_issue": st.tuples(st.just("drop_issue")),
    "drop_agent": st.tuples(st.just("drop_agent"), st.integers(0, 3)),
    "drop_runtime": st.tuples(st.just("drop_runtime"), st.integers(0, 2)),
    "zone": st.tuples(st.just("zone"), st.integers(0, 2), st.integers(0, len(ZONES) - 1)),
    "register": st.tuples(st.just("register"), st.integers(0, len(ZONES) - 1)),
    "view": st.tuples(st.just("view"), st.integers(0, 2), st.integers(0, len(ZONES) - 1)),
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
    "view": 2,
    "price": 1,
}
step = st.sampled_from([k for k, w in WEIGHTS.items() for _ in range(w)]).flatmap(STEPS.__getitem__)


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


def _runtime_report(conn: psycopg.Connection[Row], rid: Any, rollup: bool) -> list[Row]:
    p = {"runtime_id": rid, "days": 30, "tz": "Asia/Kolkata", "rollup": rollup}
    return conn.execute(usage.Q.runtime_usage, p).fetchall()


# Read in Asia/Kolkata: a runtime in UTC is read from its segments, one in Asia/Kolkata from
# its day buckets.
@pytest.mark.parametrize(
    ("runtime_tz", "buckets"), [("UTC", "usage_rollup"), ("Asia/Kolkata", "usage_day")]
)
def test_reads_add_queued_changes_to_buckets_and_backfill_repairs_them(
    world: World,
    db: psycopg.Connection[Row],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    runtime_tz: str,
    buckets: str,
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz=runtime_tz)
    task = world.task(world.agent(ws, rid), rid)
    at = world.today_utc() - timedelta(days=2)
    world.usage(task, at=at + timedelta(hours=20), tokens=(100, 0, 0, 0))
    world.usage(task, model="gpt-5", at=at + timedelta(hours=3), tokens=(7, 0, 0, 0))
    db.execute(usage.Q.register_zone, {"tz": "Asia/Kolkata"})  # segments cut for it
    rollup.drain(db)
    raw = _runtime_report(db, rid, False)
    assert _runtime_report(db, rid, True) == raw and len(raw) == 2
    # Tamper with the buckets: the rollup path reads them, the raw path does not.
    db.execute(f"UPDATE {buckets} SET input_tokens = input_tokens + 1")
    tampered = _runtime_report(db, rid, True)
    assert [r["input_tokens"] for r in tampered] == [101, 8]
    # A correction is read at once, as a queued delta (-100 +150) on top of the bucket,
    # and a tick folds that same delta in: the tampering stays until a backfill.
    world.usage(task, at=at + timedelta(hours=20), tokens=(150, 0, 0, 0))
    assert [r["input_tokens"] for r in _runtime_report(db, rid, True)] == [151, 8]
    rollup.drain(db)
    assert [r["input_tokens"] for r in _runtime_report(db, rid, True)] == [151, 8]
    # Backfill rebuilds from task_usage, idempotently.
    raw = _runtime_report(db, rid, False)
    assert [r["input_tokens"] for r in raw] == [150, 7]
    monkeypatch.setenv("DATABASE_URL", db_url)
    for _ in range(2):
        r = CliRunner().invoke(app, ["backfill", "--from", str(at.date()), "--to", str(at.date())])
        assert r.exit_code == 0 and "rebuilt 1 runtime days" in r.output, r.output
        assert _runtime_report(db, rid, True) == raw
    r = CliRunner().invoke(app, ["backfill", "--from", "2026-02-02", "--to", "2026-02-01"])
    assert r.exit_code == 2


def test_a_zone_change_builds_day_buckets_in_the_new_zone(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rid), rid)
    at = world.today_utc() - timedelta(days=2, hours=4)  # 01:30 the next day in Kolkata
    world.usage(task, at=at, tokens=(100, 0, 0, 0))
    rollup.drain(db)
    days = "SELECT zone, day, utc_day, rows FROM usage_day WHERE runtime_id = %s ORDER BY zone"
    utc = {"zone": "UTC", "day": at.date(), "utc_day": at.date(), "rows": 1}
    assert db.execute(days, (rid,)).fetchall() == [utc]
    db.execute("UPDATE agent_runtime SET timezone = 'Asia/Kolkata' WHERE id = %s", (rid,))
    assert rollup.health(db)["zones_building"] == 1
    # Until a tick builds them, reads in the new zone take segments.
    db.execute(f"UPDATE usage_day SET input_tokens = 0 WHERE runtime_id = '{rid}'")
    raw = _runtime_report(db, rid, False)
    assert [r["date"] for r in raw] == [at.date() + timedelta(days=1)]
    assert _runtime_report(db, rid, True) == raw
    rollup.tick(db)
    assert rollup.health(db)["zones_building"] == 0
    kolkata = {"zone": "Asia/Kolkata", "day": at.date() + timedelta(days=1), "rows": 1}
    assert db.execute(days, (rid,)).fetchall() == [{**kolkata, "utc_day": at.date()}, utc]
    assert _runtime_report(db, rid, True) == raw
    # and then the day buckets of that zone serve them.
    db.execute("UPDATE usage_day SET input_tokens = 1 WHERE zone = 'Asia/Kolkata'")
    assert [r["input_tokens"] for r in _runtime_report(db, rid, True)] == [1]


def _utc_runtime_read_by_http(world: World) -> tuple[Any, dict[str, str]]:
    """A UTC runtime with 100 input tokens two days ago, and a caller's headers."""
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task, at=world.today_utc() - timedelta(days=2, hours=4), tokens=(100, 0, 0, 0))
    return rid, auth(world.token())


def test_a_runtime_read_in_another_zone_gets_day_buckets_there(
    world: World, db: psycopg.Connection[Row], client: Any
) -> None:
    rid, headers = _utc_runtime_read_by_http(world)
    rollup.drain(db)
    url = f"/api/runtimes/{rid}/usage?days=7&tz=Asia/Kolkata"
    first = client.get(url, headers=headers).json()
    assert [r["input_tokens"] for r in first] == [100]
    zones = "SELECT zone, ready FROM usage_day_zone WHERE runtime_id = %s ORDER BY zone"
    assert db.execute(zones, (rid,)).fetchall() == [
        {"zone": "Asia/Kolkata", "ready": False},
        {"zone": "UTC", "ready": True},
    ]
    rollup.drain(db)
    assert db.execute(zones, (rid,)).fetchall()[0] == {"zone": "Asia/Kolkata", "ready": True}
    assert client.get(url, headers=headers).json() == first
    # The read now takes the Kolkata buckets (not the segments, not the UTC buckets).
    db.execute("UPDATE usage_day SET input_tokens = 1 WHERE zone = 'Asia/Kolkata'")
    assert [r["input_tokens"] for r in client.get(url, headers=headers).json()] == [1]
    # The by-agent report in a zone does not ask for buckets there.
    client.get(f"/api/runtimes/{rid}/usage/by-agent?tz=Asia/Tokyo", headers=headers)
    assert len(db.execute(zones, (rid,)).fetchall()) == 2


def test_a_runtime_has_day_buckets_in_at_most_8_zones(
    world: World, db: psycopg.Connection[Row], client: Any
) -> None:
    rid, headers = _utc_runtime_read_by_http(world)
    viewers = [
        "Asia/Kolkata",
        "Asia/Tokyo",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Adelaide",
        "Asia/Kathmandu",
        "America/Sao_Paulo",
        "Pacific/Chatham",
        "Africa/Cairo",
    ]

    def read(zone: str) -> Any:
        return client.get(f"/api/runtimes/{rid}/usage?days=7&tz={zone}", headers=headers).json()

    first = {zone: read(zone) for zone in viewers}
    rollup.drain(db)
    rows = db.execute(
        "SELECT zone, ready FROM usage_day_zone WHERE runtime_id = %s ORDER BY zone", (rid,)
    ).fetchall()
    assert rows == [{"zone": z, "ready": True} for z in sorted(["UTC", *viewers[:7]])]
    buckets = "SELECT count(*) AS n FROM usage_day WHERE runtime_id = %s AND zone = %s"
    assert db.execute(buckets, (rid, "Asia/Tokyo")).fetchone() == {"n": 1}
    # The zones past the bound read the segments: still exact, no buckets cut there.
    for zone in viewers:
        assert read(zone) == first[zone]
        assert [r["input_tokens"] for r in first[zone]] == [100]
    for zone in viewers[7:]:
        assert db.execute(buckets, (rid, zone)).fetchone() == {"n": 0}


def test_reads_without_dates_take_day_buckets_in_any_zone(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="Asia/Kolkata")
    agent = world.agent(ws, rid)
    db.execute(usage.Q.register_zone, {"tz": "America/New_York"})
    row = db.execute("SELECT usage_since(now(), 'America/New_York', 7) AS s").fetchone()
    assert row is not None
    since = row["s"]  # a New York midnight, 10:30 or 09:30 in Kolkata
    # One row before the next Kolkata midnight (in segments), one after it (in day buckets).
    for at, n in ((since + timedelta(hours=1), 100), (since + timedelta(days=2, hours=7), 10)):
        world.usage(world.task(agent, rid), at=at, tokens=(n, 0, 0, 0))
    rollup.drain(db)

    def tokens(rollup_on: bool) -> list[int]:
        p = {"runtime_id": rid, "days": 7, "tz": "America/New_York", "rollup": rollup_on}
        return [r["input_tokens"] for r in db.execute(usage.Q.runtime_usage_by_agent, p)]

    assert tokens(True) == tokens(False) == [110]
    # Tamper with every bucket: the read takes day buckets from the Kolkata midnight on and
    # only the segment before it.
    db.execute("UPDATE usage_day SET input_tokens = input_tokens + 1 WHERE runtime_id = %s", (rid,))
    assert tokens(True) == [111]
    db.execute(
        "UPDATE usage_rollup SET input_tokens = input_tokens + 1000 WHERE runtime_id = %s", (rid,)
    )
    assert tokens(True) == [1111]
    assert tokens(False) == [110]


def test_workspace_reads_take_utc_days_and_heads(world: World, db: psycopg.Connection[Row]) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="Asia/Kolkata")
    agent = world.agent(ws, rid)
    row = db.execute("SELECT usage_since(now(), 'Asia/Kolkata', 7) AS s").fetchone()
    assert row is not None
    since = row["s"]  # a Kolkata midnight, 18:30 UTC
    # One row after 18:30 UTC (the tail of its UTC day), one before (the head of its day).
    for at, n in ((since + timedelta(hours=1), 100), (since + timedelta(days=2, hours=7), 10)):
        world.usage(world.task(agent, rid), at=at, tokens=(n, 0, 0, 0))
    rollup.drain(db)

    def tokens(report: str, tz: str, rollup_on: bool = True) -> list[int]:
        p = {"workspace_id": ws, "days": 7, "tz": tz, "rollup": rollup_on}
        return [r["total_input_tokens"] for r in db.execute(report, p)]

    summary, daily = usage.Q.workspace_summary, usage.Q.workspace_daily
    raw = {tz: tokens(daily, tz, False) for tz in ("Asia/Kolkata", "UTC")}
    assert tokens(summary, "Asia/Kolkata") == tokens(summary, "Asia/Kolkata", False) == [110]
    assert raw["Asia/Kolkata"] == [10, 100] and sorted(raw["UTC"]) == [10, 100]
    assert {tz: tokens(daily, tz) for tz in raw} == raw
    heads = "SELECT cut, input_tokens FROM usage_head_ws WHERE workspace_id = %s ORDER BY cut"
    assert db.execute(heads, (ws,)).fetchall() == [{"cut": 66600, "input_tokens": 10}]
    # Tamper with each table in turn. Segments are not read:
    db.execute("UPDATE usage_rollup_ws SET input_tokens = input_tokens + 1000")
    assert tokens(summary, "Asia/Kolkata") == [110]
    assert {tz: tokens(daily, tz) for tz in raw} == raw
    # every read takes the UTC day buckets, each UTC day in the date of its last part (the
    # 10 tokens are in the head of their UTC day, which moves them to the date before);
    db.execute("UPDATE usage_day_ws SET input_tokens = input_tokens + 1")
    assert tokens(summary, "Asia/Kolkata") == [112]
    assert tokens(daily, "Asia/Kolkata") == [10, 101]
    assert tokens(daily, "UTC") == [n + 1 for n in raw["UTC"]]
    # a Kolkata date takes the head of its last UTC day and gives up that of its first (the
    # summary's and UTC's days start at no head here).
    db.execute("UPDATE usage_head_ws SET input_tokens = input_tokens + 1000")
    assert tokens(summary, "Asia/Kolkata") == [112]
    assert tokens(daily, "Asia/Kolkata") == [1010, 101]
    assert tokens(daily, "UTC") == [n + 1 for n in raw["UTC"]]


def test_multi_provider_pairs_follow_their_rows(world: World, db: psycopg.Connection[Row]) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task, provider="anthropic")
    rollup.drain(db)
    pairs = "SELECT task_id, model FROM usage_multi_provider"
    assert db.execute(pairs).fetchall() == []
    world.usage(task, provider="bedrock")
    rollup.drain(db)
    assert db.execute(pairs).fetchall() == [{"task_id": task, "model": "claude-sonnet-4-5"}]
    db.execute("DELETE FROM task_usage WHERE provider = 'bedrock'")
    rollup.drain(db)
    assert db.execute(pairs).fetchall() == []


def test_changes_folded_while_a_new_offset_is_cut_stay_exact(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    agent = world.agent(ws, rid)
    first, second = world.task(agent, rid), world.task(agent, rid)
    evening = world.today_utc() - timedelta(hours=4)  # yesterday 20:00 UTC
    world.usage(first, at=evening, tokens=(100, 0, 0, 0))
    rollup.drain(db)  # its segment starts at 00:00 UTC, the only cut
    db.execute("SELECT register_zone('Asia/Kathmandu')")  # cuts at 18:15 UTC from now on
    # Both fold into the 18:15 segment: -100 and +7 rows, no rows but not nothing.
    db.execute("DELETE FROM task_usage WHERE task_id = %s", (first,))
    world.usage(second, at=evening + timedelta(hours=1), tokens=(7, 0, 0, 0))
    assert rollup.tick(db) is not None  # folds, and starts re-cutting for +05:45
    for read in (usage.Q.runtime_usage, usage.Q.workspace_daily):
        p = {"runtime_id": rid, "workspace_id": ws, "days": 1, "tz": "UTC"}
        fast = db.execute(read, {**p, "rollup": True}).fetchall()
        assert fast == db.execute(read, {**p, "rollup": False}).fetchall()
        assert [r.get("input_tokens", r.get("total_input_tokens")) for r in fast] == [7]


def test_a_new_zone_is_read_raw_until_its_offsets_are_built(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task, at=world.today_utc() - timedelta(minutes=10))
    rollup.drain(db)

    def covered() -> bool:
        row = db.execute(
            "SELECT rollup_end('Asia/Kathmandu', usage_since(now(), 'Asia/Kathmandu', 7), true)"
            " > usage_since(now(), 'Asia/Kathmandu', 7) AS covered"
        ).fetchone()
        return bool(row and row["covered"])

    assert not covered()
    db.execute("SELECT register_zone('Asia/Kathmandu')")
    assert not covered()
    assert rollup.tick(db) is not None and not covered()  # the round starts
    rollup.drain(db)
    assert covered()
    segment = db.execute("SELECT seg_start FROM usage_rollup").fetchall()
    # 23:50 UTC lies after the +05:45 cut (18:15 UTC), so that is where its segment starts.
    assert [s["seg_start"] for s in segment] == [world.today_utc() - timedelta(hours=5, minutes=45)]


def test_cli_rollup_status_and_metrics(
    world: World, db_url: str, client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    ws = world.workspace()
    rid = world.runtime(ws)
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task)
    world.usage(task, model="gpt-5")
    world.db.execute("UPDATE agent_runtime SET timezone = 'Asia/Tokyo' WHERE id = %s", (rid,))
    text = client.get("/metrics").text
    assert "usagemeter_rollup_queue_depth 2.0" in text
    assert "usagemeter_rollup_zones_building 1.0" in text
    r = CliRunner().invoke(app, ["status"])
    assert r.exit_code == 0 and "rollup queue" in r.output and "2 changes" in r.output, r.output
    assert "1 runtime zones to build" in r.output, r.output
    r = CliRunner().invoke(app, ["rollup"])
    assert r.exit_code == 0 and "rollup up to date" in r.output, r.output
    text = client.get("/metrics").text
    assert "usagemeter_rollup_queue_depth 0.0" in text
    assert "usagemeter_rollup_last_tick_timestamp_seconds" in text
    assert "usagemeter_rollup_zones_building 0.0" in text
    r = CliRunner().invoke(app, ["status"])
    assert "0 changes" in r.output and "never" not in r.output, r.output
    assert "0 runtime zones to build" in r.output, r.output


def test_serve_ticks_in_the_background(config: Config, db_url: str, world: World) -> None:
    ws = world.workspace()
    rid = world.runtime(ws)
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task)
    fast = dataclasses.replace(config, tick_seconds=0.05)
    with TestClient(create_app(fast, db_url)):
        deadline = time.monotonic() + 10
        while rollup.health(world.db)["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.05)
    assert rollup.health(world.db)["queue_depth"] == 0
    assert world.db.execute("SELECT sum(rows) AS n FROM usage_rollup").fetchone() == {"n": 1}


def test_parallel_writers_movers_and_ticks_lose_no_invalidation(
    world: World, db: psycopg.Connection[Row], db_url: str
) -> None:
    ws = world.workspace()
    rts = [world.runtime(ws, tz=z) for z in ("Asia/Kolkata", "America/New_York", "Pacific/Chatham")]
    agents = [world.agent(ws, rts[i % 3]) for i in range(6)]
    tasks = [world.task(agents[i % 6], rts[i % 3]) for i in range(40)]
    rollup.drain(db)
    midnight = world.today_utc()
    stop = threading.Event()
    errors: list[BaseException] = []
    compared = [0]

    def worker(body: Any) -> None:
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            rnd = random.Random(threading.get_ident())
            while not stop.is_set():
                try:
                    body(conn, rnd)
                except psycopg.errors.DeadlockDetected:
                    pass  # rolled back whole: nothing written, nothing queued
                except BaseException as e:
                    errors.append(e)
                    return

    def write(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        picked = sorted(rnd.sample(tasks, 3))
        with conn.transaction():
            # As ingest does: hold the tasks so that a move waits for this commit.
            conn.execute(
                "SELECT 1 FROM agent_task_queue WHERE id = ANY(%s) ORDER BY id FOR SHARE",
                (picked,),
            )
            for t in picked:
                at = midnight - timedelta(minutes=15 * rnd.randrange(-96, 96 * 20))
                if rnd.random() < 0.2:
                    conn.execute(
                        "DELETE FROM task_usage WHERE task_id = %s AND provider = %s",
                        (t, rnd.choice(PROVIDERS)),
                    )
                    continue
                conn.execute(
                    "INSERT INTO task_usage (task_id, provider, model, input_tokens, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (task_id, provider, model)"
                    " DO UPDATE SET input_tokens = excluded.input_tokens",
                    (t, rnd.choice(PROVIDERS), rnd.choice(MODELS), rnd.randrange(1000), at),
                )

    def move(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        conn.execute(
            "UPDATE agent_task_queue t SET agent_id = a.id, runtime_id = a.runtime_id"
            " FROM agent a WHERE a.id = %s AND t.id = %s",
            (rnd.choice(agents), rnd.choice(tasks)),
        )
        time.sleep(0.01)

    def start(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        conn.execute(
            "UPDATE agent_task_queue SET started_at = now() - %s * interval '17 minutes'"
            " WHERE id = %s",
            (rnd.randrange(500), rnd.choice(tasks)),
        )

    def rezone(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        conn.execute(
            "UPDATE agent_runtime SET timezone = %s WHERE id = %s",
            (rnd.choice(["America/New_York", "Asia/Kolkata"]), rts[1]),
        )
        # A runtime's daily report read in a zone not its own, as the server asks for it.
        conn.execute("SELECT register_runtime_zone(%s, %s)", (rnd.choice(rts), rnd.choice(ZONES)))
        time.sleep(0.05)

    def tick(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        rollup.tick(conn, rnd.choice([1, 5, 100]))

    def reprice(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        key = (
            rnd.choice(["claude-sonnet-4-5", "gpt-5"]),
            world.today_utc().date() - timedelta(days=rnd.randrange(30)),
        )
        if rnd.random() < 0.3:
            conn.execute("DELETE FROM model_price WHERE model = %s AND effective_from = %s", key)
        else:
            conn.execute(SET_PRICE, (*key, Decimal(rnd.randrange(400)) / 4))
        time.sleep(0.02)

    def check(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for rid in rts:
                for tz in ("Asia/Kolkata", "America/New_York"):
                    p = {"runtime_id": rid, "days": 7, "tz": tz}
                    for q in (
                        usage.Q.runtime_usage,
                        usage.Q.runtime_usage_by_agent,
                        usage.Q.runtime_activity,
                    ):
                        a = conn.execute(q, {**p, "rollup": True}).fetchall()
                        b = conn.execute(q, {**p, "rollup": False}).fetchall()
                        assert a == b
            p = {"workspace_id": ws, "days": 7, "tz": rnd.choice(ZONES)}
            a = conn.execute(usage.Q.workspace_daily, {**p, "rollup": True}).fetchall()
            assert a == conn.execute(usage.Q.workspace_daily, {**p, "rollup": False}).fetchall()
        compared[0] += 1

    bodies = [write, write, write, move, start, rezone, reprice, tick, tick, check]
    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert compared[0] > 3
    rollup.drain(db)
    wrong = db.execute(
        "SELECT count(*) AS n FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id"
        " WHERE (u.runtime_id, u.agent_id) <> (t.runtime_id, t.agent_id)"
    ).fetchone()
    assert wrong == {"n": 0}
    # Every segment equals a recompute from scratch: no change was lost or counted twice.
    seg = (
        "SELECT * FROM usage_rollup"
        " ORDER BY runtime_id, seg_start, workspace_id, agent_id, provider, model, reported"
    )
    day = (
        "SELECT * FROM usage_day ORDER BY"
        " runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model, reported"
    )
    before, before_day = db.execute(seg).fetchall(), db.execute(day).fetchall()
    assert before and db.execute("SELECT count(*) AS n FROM task_usage").fetchone() == {
        "n": sum(r["rows"] for r in before)
    }
    # The ticks alone listed exactly the (task, model) pairs under two or more providers.
    listed = "SELECT task_id, model FROM usage_multi_provider ORDER BY 1, 2"
    multi = (
        "SELECT task_id, model FROM task_usage GROUP BY 1, 2"
        " HAVING count(DISTINCT provider) > 1 ORDER BY 1, 2"
    )
    truth = db.execute(multi).fetchall()
    assert truth and db.execute(listed).fetchall() == truth
    rollup.recompute(db, rollup.backfill_keys(db, date(1, 1, 1), date(9999, 12, 30)))
    assert db.execute(seg).fetchall() == before
    assert db.execute(day).fetchall() == before_day
    # The workspace segments are the sums of the runtime segments.
    cols = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in cols)
    keys = "workspace_id, seg_start, provider, model, reported"
    assert (
        db.execute(
            f"SELECT {keys}, {', '.join(cols)}, cost_usd, rows FROM usage_rollup_ws ORDER BY {keys}"
        ).fetchall()
        == db.execute(
            f"SELECT {keys}, {sums}, sum(cost_usd) AS cost_usd, sum(rows)::int AS rows"
            f" FROM usage_rollup GROUP BY {keys} ORDER BY {keys}"
        ).fetchall()
    )
    # The workspace UTC day buckets are the sums of the workspace segments per UTC day.
    keys = "workspace_id, day, provider, model, reported"
    assert (
        db.execute(
            f"SELECT {keys}, {', '.join(cols)}, cost_usd, rows FROM usage_day_ws ORDER BY {keys}"
        ).fetchall()
        == db.execute(
            f"SELECT {keys}, {sums}, sum(cost_usd) AS cost_usd, sum(rows)::int AS rows"
            " FROM (SELECT *, utc_day(seg_start) AS day FROM usage_rollup_ws) s"
            f" GROUP BY {keys} ORDER BY {keys}"
        ).fetchall()
    )
    # The heads are those sums over the segments before each cut of every ready offset.
    assert db.execute("SELECT array_agg(cut ORDER BY cut) AS c FROM usage_head_cut").fetchone() == (
        db.execute(
            "SELECT array_agg(DISTINCT (86400 - offset_s) % 86400) AS c FROM usage_offset"
            " WHERE state = 'ready' AND offset_s <> 0"
        ).fetchone()
    )
    keys = "workspace_id, cut, day, provider, model, reported"
    heads = db.execute(
        f"SELECT {keys}, {', '.join(cols)}, cost_usd, rows FROM usage_head_ws ORDER BY {keys}"
    ).fetchall()
    assert heads and (
        heads
        == db.execute(
            f"SELECT {keys}, {sums}, sum(cost_usd) AS cost_usd, sum(rows)::int AS rows"
            " FROM (SELECT s.*, c.cut, utc_day(s.seg_start) AS day FROM usage_rollup_ws s"
            " JOIN usage_head_cut c ON day_second(s.seg_start) < c.cut) s"
            f" GROUP BY {keys} ORDER BY {keys}"
        ).fetchall()
    )
    # The day buckets are task_usage summed per local date in each of a runtime's zones:
    # its own, those it was read in.
    assert db.execute("SELECT count(*) AS n FROM usage_day_zone WHERE NOT ready").fetchone() == {
        "n": 0
    }
    zones = db.execute("SELECT count(DISTINCT zone) AS n FROM usage_day").fetchone()
    assert zones and zones["n"] > 3
    # A bucket of unreported usage holds its tokens at the price now in force on its UTC day.
    day_price = (
        "(SELECT s.price FROM price_segments(g.workspace_id, g.provider, g.model) s"
        " WHERE s.valid @> g.utc_day)"
    )
    assert (
        before_day
        == db.execute(
            "SELECT g.runtime_id, g.day, g.utc_day, g.workspace_id, g.agent_id, g.provider,"
            f" g.model, g.reported, {', '.join(cols)}, CASE WHEN g.reported THEN g.cost_usd"
            f" ELSE priced_usd({', '.join(cols)}, {day_price}) END AS cost_usd, g.rows, g.zone"
            " FROM (SELECT u.runtime_id, (u.created_at AT TIME ZONE z.zone)::date AS day,"
            " utc_day(u.created_at) AS utc_day, u.workspace_id, u.agent_id, u.provider, u.model,"
            f" u.cost_usd IS NOT NULL AS reported, {sums}, sum(cost_usd) AS cost_usd,"
            " count(*)::int AS rows, z.zone"
            " FROM task_usage u JOIN usage_day_zone z ON z.runtime_id = u.runtime_id"
            " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, z.zone) g ORDER BY 1, g.zone, 2, 3, 4, 5, 6, 7, 8"
        ).fetchall()
    )


def test_day_buckets_are_repriced_by_every_change_of_prices(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="Asia/Kolkata")
    task = world.task(world.agent(ws, rid), rid)
    day = world.today_utc() - timedelta(days=3)
    world.usage(task, model="mystery-2", at=day + timedelta(hours=12), tokens=(10**6, 0, 0, 0))
    rollup.drain(db)

    def cost() -> tuple[Decimal, int]:
        rows = _runtime_report(db, rid, True)
        assert rows == _runtime_report(db, rid, False) and len(rows) == 1
        return rows[0]["cost_usd"], rows[0]["unpriced_tokens"]

    assert cost() == (Decimal(0), 10**6)
    price(db, "mystery-2", ("2", "0", "0", "0"), str(day.date()))
    assert cost() == (Decimal(2), 0)
    db.execute("UPDATE model_price SET input_per_mtok = 3 WHERE model = 'mystery-2'")
    assert cost() == (Decimal(3), 0)
    price(db, "mystery-2", ("5", "0", "0", "0"), str(day.date() + timedelta(days=1)))
    assert cost() == (Decimal(3), 0)  # in force from the day after
    db.execute("DELETE FROM model_price WHERE model = 'mystery-2' AND input_per_mtok = 3")
    assert cost() == (Decimal(0), 10**6)
    price(db, "mystery-2", ("7", "0", "0", "0"), str(day.date() - timedelta(days=1)))
    assert cost() == (Decimal(7), 0)
    db.execute("TRUNCATE model_price")
    assert cost() == (Decimal(0), 10**6)
    # A backfill repairs a bucket's cost as it repairs its tokens.
    price(db, "mystery-2", ("7", "0", "0", "0"), str(day.date()))
    db.execute("UPDATE usage_day SET cost_usd = 1 WHERE runtime_id = %s", (rid,))
    assert _runtime_report(db, rid, True)[0]["cost_usd"] == Decimal(1)
    rollup.recompute(db, rollup.backfill_keys(db, day.date(), day.date()))
    assert cost() == (Decimal(7), 0)


def test_prices_change_only_in_read_committed(db_url: str) -> None:
    """A snapshot older than the rollup lock would miss buckets a tick folds meanwhile, and
    leave them at the old price: a change of prices in such a transaction is refused."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.errors.RaiseException, match="READ COMMITTED"):
            price(conn, "some-model", ("1", "1", "1", "1"))
        conn.rollback()
        price(conn, "some-model", ("1", "1", "1", "1"))  # READ COMMITTED, the default
        conn.rollback()


def test_activity_of_a_zone_built_while_changes_are_queued(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws)
    agent = world.agent(ws, rid)
    for minutes in (0, 30, 600):
        world.task(agent, rid, started_at=world.today_utc() + timedelta(minutes=minutes))
    p = {"runtime_id": rid, "tz": "Asia/Kathmandu"}

    def activity(rollup_path: bool) -> list[Row]:
        return db.execute(usage.Q.runtime_activity, {**p, "rollup": rollup_path}).fetchall()

    db.execute("SELECT register_zone('Asia/Kathmandu')")
    rollup.tick(db, 1)  # folds one start, builds the zone with the other two still queued
    assert db.execute(
        "SELECT state FROM activity_zone WHERE zone = 'Asia/Kathmandu'"
    ).fetchone() == {"state": "ready"}
    assert (
        activity(True)
        == activity(False)
        == [
            {"hour": 5, "count": 1},
            {"hour": 6, "count": 1},
            {"hour": 15, "count": 1},
        ]
    )
    rollup.drain(db)
    assert db.execute("SELECT count(*) AS n FROM activity_dirty").fetchone() == {"n": 0}
    assert activity(True) == activity(False)


def test_every_report_route_answers_the_same_with_the_rollup_off(
    world: World, db: psycopg.Connection[Row], config: Config, db_url: str
) -> None:
    token = world.token()
    ws = world.workspace()
    rid = world.runtime(ws, tz="Asia/Kolkata")
    issue = world.issue(ws)
    today = world.today_utc()
    for i, agent in enumerate([world.agent(ws, rid), world.agent(ws, rid)]):
        task = world.task(agent, rid, issue=issue, started_at=today - timedelta(hours=i))
        for day in range(0, 40, 3):
            at = today - timedelta(days=day, minutes=15 * i + day)
            world.usage(task, model=MODELS[day % 3], provider=PROVIDERS[day % 2], at=at)
    rollup.drain(db)
    world.usage(task, model="late-model")  # queued: read raw on the rollup path
    h = auth(token, "acme")
    urls = [
        f"/api/runtimes/{rid}/usage",
        f"/api/runtimes/{rid}/usage?tz=Pacific/Chatham&days=60",
        f"/api/runtimes/{rid}/usage/by-agent?tz=America/New_York",
        f"/api/runtimes/{rid}/usage/by-hour",
        f"/api/runtimes/{rid}/activity?tz=Asia/Kathmandu",
        "/api/usage/daily?days=60&tz=Asia/Kolkata",
        "/api/usage/summary",
        f"/api/issues/{issue}/usage",
        "/api/runtimes",
    ]
    bodies = {}
    for enabled in (True, False):
        cfg = dataclasses.replace(config, rollup_enabled=enabled)
        with TestClient(create_app(cfg, db_url)) as c:
            answers = [c.get(u, headers=h) for u in urls]
            assert [r.status_code for r in answers] == [200] * len(urls)
            bodies[enabled] = [r.text for r in answers]
    assert bodies[True] == bodies[False]
    assert all(b not in ("[]", "{}") for b in bodies[True])
    # Zones asked for by name were registered; a tick builds them, and they stay equal.
    rollup.drain(db)
    zones = db.execute("SELECT zone FROM activity_zone WHERE state = 'ready' ORDER BY zone")
    assert [z["zone"] for z in zones] == [
        "America/New_York",
        "Asia/Kathmandu",
        "Asia/Kolkata",
        "Pacific/Chatham",
    ]
    with TestClient(create_app(config, db_url)) as c:
        assert [c.get(u, headers=h).text for u in urls] == bodies[False]
