"""The rollup module: ticking from the CLI and the server, and its health."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import World
from usagemeter import rollup
from usagemeter.app import create_app
from usagemeter.cli import app
from usagemeter.config import Config


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


def test_serve_ticks_again_at_once_while_a_backlog_remains(
    config: Config, db_url: str, world: World
) -> None:
    # 25,000 queued changes, ticks of 10,000, a period of 60 s: the backlog drains in
    # consecutive ticks, not one per period.
    ws = world.workspace()
    rid = world.runtime(ws)
    agent = world.agent(ws, rid)
    world.db.execute(  # a quarter hour each, so that each queues a change of its own
        "WITH t AS (INSERT INTO agent_task_queue (agent_id, runtime_id)"
        " SELECT %s, %s FROM generate_series(1, 25000) RETURNING id)"
        " INSERT INTO task_usage (task_id, model, input_tokens, created_at)"
        " SELECT id, 'm', 1, now() - row_number() OVER () * interval '15 minutes' FROM t",
        (agent, rid),
    )
    assert rollup.health(world.db)["queue_depth"] == 25000
    vacuums = "SELECT vacuum_count AS n FROM pg_stat_user_tables WHERE relname = 'usage_dirty'"
    before = world.db.execute(vacuums).fetchone()
    slow = dataclasses.replace(config, tick_seconds=60)
    with TestClient(create_app(slow, db_url)):
        deadline = time.monotonic() + 30
        while rollup.health(world.db)["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rollup.health(world.db)["queue_depth"] == 0
        # and vacuums the queue it folded, so that no read visits its 25,000 dead rows
        deadline = time.monotonic() + 10
        while world.db.execute(vacuums).fetchone() == before and time.monotonic() < deadline:
            time.sleep(0.1)
        assert world.db.execute(vacuums).fetchone() != before
    assert world.db.execute("SELECT sum(rows) AS n FROM usage_rollup").fetchone() == {"n": 25000}
