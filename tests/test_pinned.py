"""The behaviours the old system's own tests pinned (docs/api.md, "Behaviour pinned by tests"), one test each."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient

from tests.conftest import World, auth

RUNTIME_ROUTES = [
    ("GET", "/usage"),
    ("GET", "/usage/by-agent"),
    ("GET", "/usage/by-hour"),
    ("GET", "/activity"),
    ("PATCH", ""),
    ("DELETE", ""),
]


@pytest.mark.parametrize(("method", "suffix"), RUNTIME_ROUTES)
@pytest.mark.parametrize("bad", ["not-a-uuid", "123", "0e3c1d5623124747af778b95eff6c2d3"])
def test_1_malformed_runtime_id_is_400_on_every_runtime_route(
    client: TestClient, world: World, method: str, suffix: str, bad: str
) -> None:
    token = world.token()
    r = client.request(method, f"/api/runtimes/{bad}{suffix}", headers=auth(token), json={})
    assert (r.status_code, r.json()) == (400, {"error": "invalid runtime_id"})


def _usage_fixture(world: World) -> dict[str, Any]:
    """Usage at today+5m (task enqueued today-2m) and at today-19h, UTC runtime."""
    ws = world.workspace()
    rt = world.runtime(ws, tz="UTC")
    agent = world.agent(ws, rt)
    today = world.today_utc()
    t1 = world.task(agent, rt, created_at=today - timedelta(minutes=2))
    world.usage(t1, at=today + timedelta(minutes=5), tokens=(1000, 0, 0, 0))
    t2 = world.task(agent, rt, created_at=today - timedelta(hours=19))
    world.usage(t2, at=today - timedelta(hours=19), tokens=(2000, 0, 0, 0))
    return {"ws": ws, "rt": rt, "today": today}


def test_2_usage_is_bucketed_by_usage_time(client: TestClient, world: World) -> None:
    token = world.token()
    f = _usage_fixture(world)
    rows = client.get(f"/api/runtimes/{f['rt']}/usage?days=1", headers=auth(token)).json()
    by_date = {r["date"]: r["input_tokens"] for r in rows}
    today = f["today"].date()
    assert by_date == {str(today): 1000, str(today - timedelta(days=1)): 2000}


def test_3_runtime_zone_decides_the_date(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws, tz="Asia/Shanghai")
    task = world.task(world.agent(ws, rt), rt)
    at = (
        world.today_utc() - timedelta(days=3) + timedelta(hours=18)
    )  # 18:00 UTC = 02:00 +08 next day
    world.usage(task, at=at)
    rows = client.get(f"/api/runtimes/{rt}/usage?days=7", headers=auth(token)).json()
    assert [r["date"] for r in rows] == [str((at + timedelta(days=1)).date())]
    hours = client.get(f"/api/runtimes/{rt}/usage/by-hour?days=7", headers=auth(token)).json()
    assert [h["hour"] for h in hours] == [2]
    # The same rule on the pinned instant of the old test: 2020-06-15 18:00 UTC is 06-16 there.
    row = world.db.execute(
        "SELECT (timestamptz '2020-06-15 18:00Z' AT TIME ZONE 'Asia/Shanghai')::date AS d"
    ).fetchone()
    assert row is not None and str(row["d"]) == "2020-06-16"


def test_4_cutoff_is_local_midnight_in_the_zone(world: World) -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    now = datetime(2026, 5, 5, 10, 0, tzinfo=shanghai)
    row = world.db.execute(
        "SELECT usage_since(%(now)s, 'Asia/Shanghai', 1) AS since", {"now": now}
    ).fetchone()
    assert row is not None
    since = row["since"]
    assert since == datetime(2026, 5, 4, 0, 0, tzinfo=shanghai)
    assert datetime(2026, 5, 3, 23, 59, 59, tzinfo=shanghai) < since  # 05-03 excluded
    assert datetime(2026, 5, 4, 0, 0, tzinfo=shanghai) >= since  # 05-04 included


def test_5_patch_timezone_permissions(client: TestClient, world: World) -> None:
    owner = world.token()
    member = world.token("member@example.com", role="member")
    ws = world.workspace()
    rt = world.runtime(ws)
    r = client.patch(f"/api/runtimes/{rt}", headers=auth(owner), json={"timezone": "Asia/Tokyo"})
    assert r.status_code == 200 and r.json()["timezone"] == "Asia/Tokyo"
    r = client.patch(f"/api/runtimes/{rt}", headers=auth(owner), json={"timezone": "Mars/Olympus"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid IANA timezone"})
    r = client.patch(f"/api/runtimes/{rt}", headers=auth(member), json={"timezone": "UTC"})
    assert (r.status_code, r.json()) == (403, {"error": "you can only edit your own runtimes"})


def _register(client: TestClient, token: str, ws: Any, tz: str, **extra: Any) -> Any:
    body = {
        "workspace_id": str(ws),
        "daemon_id": "daemon-1",
        "device_name": "laptop",
        "cli_version": "1.2.3",
        "timezone": tz,
        "runtimes": [{"name": "", "type": "claude", "version": "2.0", "status": "online"}],
        **extra,
    }
    r = client.post("/api/daemon/register", headers=auth(token), json=body)
    assert r.status_code == 200, r.text
    return r.json()["runtimes"][0]


def test_6_reregistering_keeps_a_patched_zone(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    rt = _register(client, token, ws, "Europe/Berlin")
    assert rt["timezone"] == "Europe/Berlin"
    client.patch(f"/api/runtimes/{rt['id']}", headers=auth(token), json={"timezone": "Asia/Tokyo"})
    again = _register(client, token, ws, "America/New_York")
    assert (again["id"], again["timezone"]) == (rt["id"], "Asia/Tokyo")


def test_7_sums_per_model_and_corrections_replace(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws)
    agent = world.agent(ws, rt)
    t1, t2 = world.task(agent, rt), world.task(agent, rt)

    def post(task: Any, entries: list[dict[str, Any]]) -> Any:
        url = f"/api/daemon/tasks/{task}/usage"
        return client.post(url, headers=auth(token), json={"usage": entries})

    def entry(model: str, i: int, o: int) -> dict[str, Any]:
        return {"provider": "anthropic", "model": model, "input_tokens": i, "output_tokens": o}

    sonnet, haiku = "claude-sonnet-4-5", "claude-haiku-4-5"
    assert post(t1, [entry(sonnet, 100, 10), entry(haiku, 50, 5)]).status_code == 200
    assert post(t2, [entry(sonnet, 200, 20)]).status_code == 200

    def totals() -> dict[str, tuple[int, int]]:
        rows = client.get(f"/api/runtimes/{rt}/usage", headers=auth(token)).json()
        return {r["model"]: (r["input_tokens"], r["output_tokens"]) for r in rows}

    assert totals() == {sonnet: (300, 30), haiku: (50, 5)}
    assert totals() == {sonnet: (300, 30), haiku: (50, 5)}
    assert post(t1, [entry(sonnet, 1000, 10)]).status_code == 200
    assert totals() == {sonnet: (1200, 30), haiku: (50, 5)}


def test_8_reassigning_a_task_moves_its_usage(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    old, new = world.runtime(ws), world.runtime(ws)
    task = world.task(world.agent(ws, old), old)
    world.usage(task, tokens=(700, 0, 0, 0))
    world.db.execute("UPDATE agent_task_queue SET runtime_id = %s WHERE id = %s", (new, task))
    assert client.get(f"/api/runtimes/{old}/usage", headers=auth(token)).json() == []
    rows = client.get(f"/api/runtimes/{new}/usage", headers=auth(token)).json()
    assert [r["input_tokens"] for r in rows] == [700]


def test_9_deleting_an_issue_cascades_out_of_every_report(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws)
    agent = world.agent(ws, rt)
    issue = world.issue(ws)
    world.usage(world.task(agent, rt, issue=issue), tokens=(500, 0, 0, 0))
    kept = world.task(agent, rt)
    world.usage(kept, tokens=(7, 0, 0, 0))
    assert client.delete(f"/api/issues/{issue}", headers=auth(token)).json() == {"status": "ok"}
    h = auth(token, "acme")
    assert [
        r["input_tokens"] for r in client.get(f"/api/runtimes/{rt}/usage", headers=h).json()
    ] == [7]
    assert [r["total_input_tokens"] for r in client.get("/api/usage/daily", headers=h).json()] == [
        7
    ]
    assert [
        r["total_input_tokens"] for r in client.get("/api/usage/summary", headers=h).json()
    ] == [7]
    by_agent = client.get(f"/api/runtimes/{rt}/usage/by-agent", headers=h).json()
    assert [(r["input_tokens"], r["task_count"]) for r in by_agent] == [(7, 1)]


def test_10_usage_counts_in_the_agents_workspace(client: TestClient, world: World) -> None:
    token_a = world.token(workspace="ws-a")
    world.token(workspace="ws-b")
    a, b = world.workspace("ws-a"), world.workspace("ws-b")
    rt1, rt2 = world.runtime(a), world.runtime(a)
    issue_b = world.issue(b)
    task = world.task(world.agent(a, rt1), rt1, issue=issue_b)
    world.usage(task, tokens=(300, 0, 0, 0))

    def daily(slug: str) -> list[int]:
        rows = client.get("/api/usage/daily", headers=auth(token_a, slug)).json()
        return [r["total_input_tokens"] for r in rows]

    assert (daily("ws-a"), daily("ws-b")) == ([300], [])
    world.db.execute("UPDATE agent_task_queue SET runtime_id = %s WHERE id = %s", (rt2, task))
    assert (daily("ws-a"), daily("ws-b")) == ([300], [])


def test_11_workspace_daily_and_summary(client: TestClient, world: World) -> None:
    token = world.token()
    f = _usage_fixture(world)
    h = auth(token, "acme")
    daily = client.get("/api/usage/daily?days=1", headers=h).json()
    by_date = {r["date"]: r["total_input_tokens"] for r in daily}
    today = f["today"].date()
    assert by_date[str(today)] >= 1000
    assert by_date[str(today - timedelta(days=1))] >= 2000
    summary = client.get("/api/usage/summary?days=1", headers=h).json()
    assert summary[0]["total_input_tokens"] >= 3000 and summary[0]["task_count"] >= 2


def test_12_legacy_daemon_merge(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    legacy = world.runtime(ws, provider="claude", daemon_id="OLD-Host")
    agent = world.agent(ws, legacy)
    task = world.task(agent, legacy)
    world.usage(task, tokens=(42, 0, 0, 0))
    other_provider = world.runtime(ws, provider="codex", daemon_id="old-host")
    new = _register(client, token, ws, "UTC", legacy_daemon_ids=["old-host"])

    def one(sql: str, *args: Any) -> Any:
        row = world.db.execute(sql, args).fetchone()
        return None if row is None else str(next(iter(row.values())))

    assert one("SELECT runtime_id FROM agent WHERE id = %s", agent) == new["id"]
    assert one("SELECT runtime_id FROM agent_task_queue WHERE id = %s", task) == new["id"]
    assert one("SELECT id FROM agent_runtime WHERE id = %s", legacy) is None
    assert one("SELECT legacy_daemon_id FROM agent_runtime WHERE id = %s", new["id"]) == "OLD-Host"
    assert one("SELECT id FROM agent_runtime WHERE id = %s", other_provider) == str(other_provider)
    rows = client.get(f"/api/runtimes/{new['id']}/usage", headers=auth(token)).json()
    assert [r["input_tokens"] for r in rows] == [42]
