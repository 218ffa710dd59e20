"""Activity (schema/activity.sql): started tasks per local hour, exact while zones are built."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from tests.conftest import World
from usagemeter import rollup, usage
from usagemeter.db import Row


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
