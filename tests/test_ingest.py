"""Batch ingest: COPY into staging, one upsert, all or nothing."""

from __future__ import annotations

import dataclasses
import json
import threading
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import JSON, World, auth
from usagemeter import rollup
from usagemeter.app import create_app


def setup_tasks(world: World, n: int) -> list[str]:
    ws = world.workspace()
    rt = world.runtime(ws)
    agent = world.agent(ws, rt)
    return [str(world.task(agent, rt)) for _ in range(n)]


def count(world: World) -> Any:
    return world.db.execute(
        "SELECT count(*) AS n, coalesce(sum(input_tokens), 0)::bigint AS s FROM task_usage"
    ).fetchone()


def test_batch_of_ten_thousand(client: TestClient, world: World) -> None:
    token = world.daemon_token()
    tasks = setup_tasks(world, 500)
    entries = [
        {
            "task_id": tasks[i % 500],
            "provider": "p",
            "model": f"m{i // 500}",
            "input_tokens": i,
            "created_at": "2026-01-02T03:04:05+05:30",
        }
        for i in range(10_000)
    ]
    r = client.post("/api/usage/batch", headers=auth(token, "acme"), json={"usage": entries})
    assert (r.status_code, r.json()) == (200, {"status": "ok", "entries": 10_000})
    assert count(world) == {"n": 10_000, "s": sum(range(10_000))}
    row = world.db.execute(
        "SELECT DISTINCT created_at = '2026-01-01T21:34:05Z' AS ok FROM task_usage"
    ).fetchall()
    assert row == [{"ok": True}]


def test_batch_last_entry_wins_and_created_at_is_kept(client: TestClient, world: World) -> None:
    token = world.token()
    (task,) = setup_tasks(world, 1)
    h = auth(token, "acme")
    first = {"task_id": task, "model": "m", "input_tokens": 1, "created_at": "2026-01-01T00:00:00Z"}
    r = client.post(
        "/api/usage/batch", headers=h, json={"usage": [first, {**first, "input_tokens": 2}]}
    )
    assert r.status_code == 200
    later = {**first, "input_tokens": 3, "created_at": "2026-06-01T00:00:00Z"}
    assert client.post("/api/usage/batch", headers=h, json={"usage": [later]}).status_code == 200
    row = world.db.execute(
        "SELECT input_tokens, created_at = '2026-01-01Z' AS kept FROM task_usage"
    ).fetchall()
    assert row == [{"input_tokens": 3, "kept": True}]


def test_batch_rejects_whole_batch(client: TestClient, world: World) -> None:
    token = world.token()
    tasks = setup_tasks(world, 2)
    world.token(workspace="other", email="x@example.com")
    other_ws = world.workspace("other")
    other_rt = world.runtime(other_ws)
    foreign = str(world.task(world.agent(other_ws, other_rt), other_rt))
    h = auth(token, "acme")
    good = [{"task_id": t, "model": "m", "input_tokens": 1} for t in tasks]
    cases = [
        ([*good, {"task_id": foreign, "model": "m"}], "invalid usage entry 2: task not found"),
        (
            [*good, {"task_id": "00000000-0000-0000-0000-000000000000", "model": "m"}],
            "invalid usage entry 2: task not found",
        ),
        (
            [*good, {"task_id": "abc", "model": "m"}],
            "invalid usage entry 2: task_id must be a UUID",
        ),
        ([*good, {"model": "m"}], "invalid usage entry 2: task_id must be a UUID"),
        (
            [*good, {"task_id": tasks[0], "model": "m", "created_at": "2026-01-01T00:00:00"}],
            "invalid usage entry 2: created_at must be an RFC 3339 time with a UTC offset within ±15:59, from 2000-01-01 to a day ahead of the server's clock",
        ),
        (
            [*good, {"task_id": tasks[0], "model": "m", "input_tokens": -5}],
            "invalid usage entry 2: input_tokens must be an integer between 0 and 1000000000000",
        ),
    ]
    # Large batches are validated a slice at a time; an entry is still named by its place.
    many = [good[0]] * 4321
    cases.append(
        (
            [*many, {"task_id": tasks[0], "model": 5}, *many],
            "invalid usage entry 4321: model must be a string of at most 200 characters"
            " without NUL",
        )
    )
    for entries, error in cases:
        r = client.post("/api/usage/batch", headers=h, json={"usage": entries})
        assert (r.status_code, r.json()) == (400, {"error": error})
    for raw in ("{", '{"usage": {}}', "{}", "[]"):
        r = client.post("/api/usage/batch", headers={**h, **JSON}, content=raw)
        assert (r.status_code, r.json()) == (400, {"error": "invalid request body"})
    too_many = [{"task_id": tasks[0], "model": "m"}] * 20_001
    r = client.post("/api/usage/batch", headers=h, json={"usage": too_many})
    assert (r.status_code, r.json()) == (
        400,
        {"error": "invalid request body: at most 20000 usage entries"},
    )
    assert count(world) == {"n": 0, "s": 0}


def test_concurrent_batches_lose_nothing_and_count_nothing_twice(
    client: TestClient, world: World
) -> None:
    token = world.token()
    tasks = setup_tasks(world, 50)
    h = auth(token, "acme")
    errors: list[Any] = []

    def writer(k: int) -> None:
        # Every writer reports every key (in its own order); each also owns keys of its own.
        shared = [
            {"task_id": t, "model": "shared", "input_tokens": 7}
            for t in (tasks if k % 2 else tasks[::-1])
        ]
        own = [{"task_id": t, "model": f"own{k}", "input_tokens": 1} for t in tasks]
        for _ in range(5):
            r = client.post("/api/usage/batch", headers=h, json={"usage": shared + own})
            if r.status_code != 200:
                errors.append(r.text)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert count(world) == {"n": 50 * 5, "s": 50 * 7 + 4 * 50}


def test_a_batch_keeps_entries_without_a_model_and_costs_in_ticks_and_reports_agree(
    world: World, db_url: str, config: Any
) -> None:
    token = world.token()
    tasks = setup_tasks(world, 3)
    entries = [
        {"task_id": tasks[0], "provider": "copilot", "model": "", "input_tokens": 11},
        {"task_id": tasks[1], "provider": "copilot", "model": "", "input_tokens": 5},
        {"task_id": tasks[2], "model": "grok-4", "input_tokens": 3, "cost_usd_ticks": 12345},
    ]
    h = auth(token, "acme")
    bodies = {}
    for rollup_on in (True, False):
        cfg = dataclasses.replace(config, rollup_enabled=rollup_on)
        with TestClient(create_app(cfg, db_url)) as c:
            if rollup_on:
                r = c.post("/api/usage/batch", headers=h, json={"usage": entries})
                assert (r.status_code, r.json()) == (200, {"status": "ok", "entries": 3})
                rollup.drain(world.db)
            bodies[rollup_on] = c.get("/api/usage/summary", headers=h).text
    assert bodies[True] == bodies[False]
    rows = {r["model"]: r for r in json.loads(bodies[True], parse_float=Decimal)}
    assert (rows[""]["total_input_tokens"], rows[""]["task_count"]) == (16, 2)
    assert (rows[""]["cost_usd"], rows[""]["unpriced_tokens"]) == (0, 16)
    assert rows["grok-4"]["cost_usd"] == Decimal("0.0000012345")
