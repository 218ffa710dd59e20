"""The shapes today's Multica web app reads (its public types at 1cc46b2697, 2026-08-22, in
our words): every row of every report it asks for carries each key it declares, with the
JSON type it declares. The values are checked by the reports' own tests."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import World, auth

TOKENS = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
TOTALS = [f"total_{k}" for k in TOKENS]
# What the client prices itself: the provider's own cost and the tokens without one.
COST = ["cost_usd_ticks", *(f"uncosted_{k}" for k in TOKENS)]
RUNS = ["total_seconds", "task_count", "failed_count", "cancelled_count"]

# route -> {key: JSON type}; "number" is any JSON number.
SHAPES: dict[str, dict[str, str]] = {
    "/api/runtimes/{rt}/usage": {
        "runtime_id": "string",
        "date": "string",
        "provider": "string",
        "model": "string",
        **dict.fromkeys(TOKENS + COST, "number"),
    },
    "/api/runtimes/{rt}/usage/by-agent": {
        "agent_id": "string",
        "provider": "string",
        "model": "string",
        **dict.fromkeys([*TOKENS, *COST, "task_count"], "number"),
    },
    "/api/runtimes/{rt}/usage/by-hour": {
        "hour": "number",
        "model": "string",
        **dict.fromkeys([*TOKENS, *COST, "task_count"], "number"),
    },
    "/api/runtimes/{rt}/activity": {"hour": "number", "count": "number"},
    "/api/issues/{issue}/usage": dict.fromkeys([*TOTALS, *COST, "task_count"], "number"),
    "/api/dashboard/usage/daily": {
        "date": "string",
        "provider": "string",
        "model": "string",
        **dict.fromkeys([*TOKENS, *COST, "task_count"], "number"),
    },
    "/api/dashboard/usage/by-agent": {
        "agent_id": "string",
        "provider": "string",
        "model": "string",
        **dict.fromkeys([*TOKENS, *COST, "task_count"], "number"),
    },
    "/api/dashboard/agent-runtime": {"agent_id": "string", **dict.fromkeys(RUNS, "number")},
    "/api/dashboard/runtime/daily": {"date": "string", **dict.fromkeys(RUNS, "number")},
    "/api/dashboard/failures/daily": {
        "date": "string",
        "failure_reason": "string",
        "task_count": "number",
    },
    "/api/dashboard/failures/by-agent": {
        "agent_id": "string",
        "failure_reason": "string",
        "task_count": "number",
    },
    "/api/runtimes": {
        "id": "string",
        "name": "string",
        "custom_name": "null",
        "visibility": "string",
        "profile_id": "null",
        "status": "string",
        "provider": "string",
    },
}


def json_type(row: dict[str, Any], key: str) -> str:
    if key not in row:
        return "missing"
    value = row[key]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    return {str: "string", int: "number", float: "number"}.get(type(value), type(value).__name__)


def test_every_report_today_s_web_app_reads_has_its_keys(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws, tz="UTC")
    agent = world.agent(ws, rt)
    issue = world.issue(ws)
    today = world.today_utc()
    task = world.task(agent, rt, issue=issue, started_at=today)
    world.usage(task, at=today + timedelta(minutes=1), cost=Decimal("0.01"))
    world.usage(task, model="other", at=today + timedelta(minutes=2))
    world.db.execute(
        "UPDATE agent_task_queue SET status = 'failed', completed_at = %s WHERE id = %s",
        (today + timedelta(minutes=3), task),
    )
    for route, keys in SHAPES.items():
        url = route.format(rt=rt, issue=issue)
        r = client.get(url, headers=auth(token, "acme"))
        assert r.status_code == 200, (url, r.text)
        body = r.json()
        rows = body if isinstance(body, list) else [body]
        assert rows, url
        for row in rows:
            assert {k: json_type(row, k) for k in keys} == keys, url
