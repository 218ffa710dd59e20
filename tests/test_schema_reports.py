"""Reports (schema/reports.sql): the rollup path answers exactly what the raw path answers,
after every step of generated histories, and reads the buckets it should."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from tests.conftest import World, auth
from tests.scene import (
    EXAMPLES,
    MODELS,
    PROVIDERS,
    ZONES,
    Scene,
)
from usagemeter import rollup, usage
from usagemeter.app import create_app
from usagemeter.config import Config
from usagemeter.db import Row, connect


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
# The second provider's row a quarter hour later (often the same hour), or 7 later.
use2 = st.tuples(
    st.just("use2"), index, st.integers(0, 2), quarter, jitter, tokens, st.sampled_from([1, 7])
)
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


def test_reads_without_dates_take_day_buckets_in_any_zone(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="Asia/Kolkata")
    agent = world.agent(ws, rid)
    db.execute(usage.Q.register_zone, {"tz": "America/New_York", "workspace_id": ws})
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
        # UTC's window of 7 days starts after `since` while the UTC date is Kolkata's (from
        # 00:00 to 18:30 UTC): 8 days hold both rows at any hour.
        days = 8 if tz == "UTC" else 7
        p = {"workspace_id": ws, "days": days, "tz": tz, "rollup": rollup_on}
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
    # Listed by the write itself, before any tick: no read looks for pairs among deltas.
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task, provider="anthropic")
    pairs = "SELECT task_id, model, runtime_id FROM usage_multi_provider"
    assert db.execute(pairs).fetchall() == []
    world.usage(task, provider="bedrock")
    listed = {"task_id": task, "model": "claude-sonnet-4-5", "runtime_id": rid}
    assert db.execute(pairs).fetchall() == [listed]
    # A task moved to another runtime takes its pair along.
    other = world.runtime(ws, tz="UTC")
    db.execute("UPDATE agent_task_queue SET runtime_id = %s WHERE id = %s", (other, task))
    assert db.execute(pairs).fetchall() == [{**listed, "runtime_id": other}]
    rollup.drain(db)
    assert db.execute(pairs).fetchall() == [{**listed, "runtime_id": other}]
    db.execute("DELETE FROM task_usage WHERE provider = 'bedrock'")
    assert db.execute(pairs).fetchall() == []


def test_concurrent_writers_of_one_pair_list_it(
    world: World, db: psycopg.Connection[Row], db_url: str
) -> None:
    # Two transactions each write one provider of the same (task, model). Neither sees the
    # other's row when it writes; the second to lock the task waits for the first to
    # commit and then lists the pair. Without the lock, neither would.
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rid), rid)
    insert = (
        "INSERT INTO task_usage (task_id, provider, model, input_tokens) VALUES (%s, %s, 'm', 1)"
    )
    with connect(db_url) as first, connect(db_url) as second:
        first.execute("BEGIN")
        first.execute(insert, (task, "a"))
        done = threading.Event()

        def write_second() -> None:
            second.execute(insert, (task, "b"))
            done.set()

        writer = threading.Thread(target=write_second)
        writer.start()
        assert not done.wait(0.5)  # the second writer waits for the first
        first.execute("COMMIT")
        writer.join(10)
        assert done.is_set()
    assert db.execute("SELECT task_id, model FROM usage_multi_provider").fetchall() == [
        {"task_id": task, "model": "m"}
    ]
    daily = {"workspace_id": ws, "days": 1, "tz": "UTC"}
    rows = db.execute(usage.Q.workspace_daily, {**daily, "rollup": True}).fetchall()
    assert [r["task_count"] for r in rows] == [1]
    assert rows == db.execute(usage.Q.workspace_daily, {**daily, "rollup": False}).fetchall()


def test_the_queue_sums_a_statement_per_key_and_quarter_hour(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    agent = world.agent(ws, rid)
    tasks = [world.task(agent, rid) for _ in range(4)]
    quarter = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    db.execute(
        "INSERT INTO task_usage (task_id, model, input_tokens, created_at)"
        " SELECT t, 'm', 10, at FROM unnest(%s::uuid[], %s::timestamptz[]) u(t, at)",
        (
            tasks,
            [
                quarter + timedelta(minutes=7),
                quarter + timedelta(minutes=15) - timedelta(microseconds=1),
                quarter + timedelta(minutes=15),
                datetime(1975, 3, 1, 10, 7, tzinfo=UTC),  # before 1980: its own instant
            ],
        ),
    )
    queued = db.execute(
        "SELECT created_at, input_tokens::int AS tokens, rows FROM usage_dirty ORDER BY 1"
    ).fetchall()
    assert queued == [
        {"created_at": datetime(1975, 3, 1, 10, 7, tzinfo=UTC), "tokens": 10, "rows": 1},
        {"created_at": quarter, "tokens": 20, "rows": 2},
        {"created_at": quarter + timedelta(minutes=15), "tokens": 10, "rows": 1},
    ]


def test_a_report_since_an_instant_inside_a_quarter_hour_reads_raw(
    world: World, db: psycopg.Connection[Row]
) -> None:
    # Queued deltas are kept per quarter hour: a read from 00:07 cannot tell 00:05 from
    # 00:10 in them, so it reads the rows.
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    agent = world.agent(ws, rid)
    midnight = world.today_utc()
    for minutes in (5, 10):
        world.usage(world.task(agent, rid), at=midnight + timedelta(minutes=minutes))
    report = (
        "SELECT input_tokens FROM usage_report(%s, 'UTC', p_workspace_id => %s,"
        " p_by_date => true, p_rollup => %s)"
    )
    since = midnight + timedelta(minutes=7)
    rows = db.execute(report, (since, ws, True)).fetchall()
    assert rows == db.execute(report, (since, ws, False)).fetchall() == [{"input_tokens": 100}]


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
        f"/api/runtimes/{rid}/usage/timeline?days=60",
        f"/api/runtimes/{rid}/usage/timeline?tz=Pacific/Chatham&days=45",
        "/api/usage/daily?days=60&tz=Asia/Kolkata",
        "/api/usage/summary",
        "/api/usage/by-agent?days=60&tz=Asia/Kathmandu",
        "/api/usage/timeline?tz=Asia/Kolkata&days=50",
        f"/api/issues/{issue}/usage",
        "/api/runtimes",
        "/api/dashboard/usage/daily?days=60&tz=Pacific/Chatham",
        "/api/dashboard/usage/by-agent?days=7&tz=Asia/Kolkata",
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


def test_a_report_reads_the_task_count_corrections_of_its_own_scope_only(
    world: World, db: psycopg.Connection[Row], db_url: str
) -> None:
    # Workspace beta: one task reporting 5,000 models under two providers each (5,000 pairs
    # to correct). acme's reports never read them, folded or not, and count exactly.
    def one_task(slug: str, models: int) -> Any:
        ws = world.workspace(slug)
        rt = world.runtime(ws)
        task = world.task(world.agent(ws, rt), rt)
        db.execute(
            "INSERT INTO task_usage (task_id, provider, model, input_tokens)"
            " SELECT %s, p, 'm' || i, 1 FROM generate_series(1, %s) i, unnest('{a,b}'::text[]) p",
            (task, models),
        )
        return ws, rt

    acme, acme_rt = one_task("acme", 1)
    one_task("beta", 5000)
    reads = [
        (usage.Q.workspace_daily, {"workspace_id": acme}),
        (usage.Q.runtime_usage_by_agent, {"runtime_id": acme_rt}),
    ]
    for folded in (False, True):
        if folded:
            rollup.drain(db, 100_000)
            db.execute("ANALYZE usage_multi_provider")
            assert db.execute("SELECT count(*) AS n FROM usage_multi_provider").fetchone() == {
                "n": 5001
            }
        for sql, scope in reads:
            params = {**scope, "days": 7, "tz": "UTC", "rollup": True}
            # A connection of its own: a backend's counts of earlier transactions may still
            # be pending in pg_stat_xact_user_tables.
            with connect(db_url) as reader, reader.transaction():
                rows = reader.execute(sql, params).fetchall()
                read = reader.execute(
                    "SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n"
                    " FROM pg_stat_xact_user_tables WHERE relname = 'usage_multi_provider'"
                ).fetchone()
            assert read is not None and read["n"] <= 1, (folded, sql[:40], read)
            assert [r["task_count"] for r in rows] == [1]
            assert rows == db.execute(sql, {**params, "rollup": False}).fetchall()


def test_one_workspace_adds_at_most_16_offsets_and_reads_stay_exact(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    # A member asks its reports in zone after zone: the workspace adds 16 offsets to the
    # cuts every tenant's days are cut at, no more; reports in further zones are exact.
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws, tz="UTC")
    task = world.task(world.agent(ws, rt), rt)
    world.usage(task, at=world.today_utc() - timedelta(days=1, hours=3))
    rollup.drain(db)
    before = db.execute("SELECT count(*) AS n FROM usage_offset").fetchone()
    # 26 zones of as many fixed offsets, none of them in use
    zones = [f"Etc/GMT{sign}{h}" for h in range(1, 13) for sign in "+-"]
    zones += ["Asia/Kolkata", "Asia/Kathmandu"]
    for zone in zones:
        for path in (f"/api/runtimes/{rt}/usage", "/api/usage/daily"):
            r = client.get(path, params={"tz": zone}, headers=auth(token, "acme"))
            assert r.status_code == 200, r.text
    after = db.execute("SELECT count(*) AS n FROM usage_offset").fetchone()
    assert before is not None and after is not None
    assert after["n"] - before["n"] == 16
    rollup.drain(db)
    for zone in zones:
        params = {"runtime_id": rt, "days": 7, "tz": zone}
        fast = db.execute(usage.Q.runtime_usage, {**params, "rollup": True}).fetchall()
        assert fast == db.execute(usage.Q.runtime_usage, {**params, "rollup": False}).fetchall()
