"""The denormalised keys of task_usage follow its task, whatever writes the rows."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.conftest import World


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
