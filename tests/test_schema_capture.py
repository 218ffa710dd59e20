"""Capture (schema/capture.sql): usage rows carry their task's keys, and the zones reports are
asked in get their cuts and day buckets, within bounds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from tests.conftest import World
from tests.scene import (
    runtime_report,
    utc_runtime_read_by_http,
)
from usagemeter import rollup
from usagemeter.db import Row


def keys(world: World) -> list[Any]:
    return world.db.execute(
        "SELECT workspace_id, runtime_id, agent_id FROM task_usage ORDER BY model"
    ).fetchall()


def test_keys_are_filled_and_wrong_ones_refused(world: World) -> None:
    ws = world.workspace()
    rt = world.runtime(ws)
    agent = world.agent(ws, rt)
    task = world.task(agent, rt)
    world.usage(task, model="a")
    world.db.execute(
        "INSERT INTO task_usage (task_id, model, workspace_id, runtime_id, agent_id)"
        " VALUES (%s, 'b', %s, %s, %s)",
        (task, ws, rt, agent),
    )
    key = {"workspace_id": ws, "runtime_id": rt, "agent_id": agent}
    assert keys(world) == [key, key]
    other = world.workspace("other")
    with pytest.raises(psycopg.errors.CheckViolation):
        world.db.execute(
            "INSERT INTO task_usage (task_id, model, workspace_id, runtime_id, agent_id)"
            " VALUES (%s, 'c', %s, %s, %s)",
            (task, other, rt, agent),
        )
    with pytest.raises(psycopg.errors.CheckViolation):
        world.db.execute("UPDATE task_usage SET runtime_id = %s WHERE model = 'a'", (other,))
    assert keys(world) == [key, key]


def test_keys_follow_reassignment(world: World) -> None:
    ws, other = world.workspace(), world.workspace("other")
    rt1, rt2, rt3 = world.runtime(ws), world.runtime(ws), world.runtime(other)
    a1, a2, a3 = world.agent(ws, rt1), world.agent(ws, rt2), world.agent(other, rt3)
    task, untouched = world.task(a1, rt1), world.task(a1, rt1)
    world.usage(task, model="a")
    world.usage(task, model="b")
    world.usage(untouched, model="c")
    world.db.execute("UPDATE agent_task_queue SET runtime_id = %s WHERE id = %s", (rt2, task))
    moved = {"workspace_id": ws, "runtime_id": rt2, "agent_id": a1}
    stay = {"workspace_id": ws, "runtime_id": rt1, "agent_id": a1}
    assert keys(world) == [moved, moved, stay]
    world.db.execute("UPDATE agent_task_queue SET agent_id = %s WHERE id = %s", (a3, task))
    moved = {"workspace_id": other, "runtime_id": rt2, "agent_id": a3}
    assert keys(world) == [moved, moved, stay]
    world.db.execute("UPDATE agent SET workspace_id = %s WHERE id = %s", (other, a1))
    assert keys(world)[2] == {"workspace_id": other, "runtime_id": rt1, "agent_id": a1}
    world.db.execute("UPDATE agent SET name = 'renamed' WHERE id = %s", (a2,))  # no key change
    assert keys(world)[2] == {"workspace_id": other, "runtime_id": rt1, "agent_id": a1}


def test_usage_of_a_missing_task_is_a_foreign_key_violation(world: World) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        world.usage("00000000-0000-0000-0000-000000000000")


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
    raw = runtime_report(db, rid, False)
    assert [r["date"] for r in raw] == [at.date() + timedelta(days=1)]
    assert runtime_report(db, rid, True) == raw
    rollup.tick(db)
    assert rollup.health(db)["zones_building"] == 0
    kolkata = {"zone": "Asia/Kolkata", "day": at.date() + timedelta(days=1), "rows": 1}
    assert db.execute(days, (rid,)).fetchall() == [{**kolkata, "utc_day": at.date()}, utc]
    assert runtime_report(db, rid, True) == raw
    # and then the day buckets of that zone serve them.
    db.execute("UPDATE usage_day SET input_tokens = 1 WHERE zone = 'Asia/Kolkata'")
    assert [r["input_tokens"] for r in runtime_report(db, rid, True)] == [1]


def test_a_runtime_read_in_another_zone_gets_day_buckets_there(
    world: World, db: psycopg.Connection[Row], client: Any
) -> None:
    rid, headers = utc_runtime_read_by_http(world)
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
    rid, headers = utc_runtime_read_by_http(world)
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
