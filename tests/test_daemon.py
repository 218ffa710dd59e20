"""Daemon endpoints, docs/api.md."""

from __future__ import annotations

import hashlib
import uuid
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import JSON, World, auth


def register(client: TestClient, token: str, body: dict[str, Any]) -> Any:
    return client.post("/api/daemon/register", headers=auth(token), json=body)


def base(ws: Any, **extra: Any) -> dict[str, Any]:
    return {
        "workspace_id": str(ws),
        "daemon_id": "d1",
        "device_name": "mac",
        "cli_version": "0.9",
        "launched_by": "desktop",
        "timezone": "Europe/Berlin",
        "runtimes": [{"name": "", "type": "claude", "version": "2.1", "status": "online"}],
        **extra,
    }


def test_register_rules(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    body = base(
        ws,
        runtimes=[
            {"name": "  ", "type": " codex ", "version": "1.0", "status": "offline"},
            {"name": "Mine", "type": "", "status": "busy"},
            {"type": "claude", "version": "2.1"},
        ],
    )
    r = register(client, token, body)
    assert r.status_code == 200, r.text
    rts = r.json()["runtimes"]
    assert [(x["provider"], x["name"], x["status"], x["device_info"]) for x in rts] == [
        ("codex", "codex (mac)", "offline", "mac · 1.0"),
        ("unknown", "Mine", "online", "mac"),
        ("claude", "claude (mac)", "online", "mac · 2.1"),
    ]
    first = rts[0]
    assert first["metadata"] == {"version": "1.0", "cli_version": "0.9", "launched_by": "desktop"}
    assert rts[1]["metadata"]["version"] == ""
    assert (first["runtime_mode"], first["timezone"], first["launch_header"]) == (
        "local",
        "Europe/Berlin",
        "codex app-server",
    )
    assert first["owner_id"] == str(world.user_id("owner@example.com"))
    assert rts[1]["launch_header"] == "" and rts[2]["launch_header"] == "claude (stream-json)"
    assert set(first) == {
        "id",
        "workspace_id",
        "daemon_id",
        "name",
        "custom_name",
        "visibility",
        "profile_id",
        "runtime_mode",
        "provider",
        "launch_header",
        "status",
        "device_info",
        "metadata",
        "owner_id",
        "timezone",
        "last_seen_at",
        "created_at",
        "updated_at",
    }


@pytest.mark.parametrize("tz", ["", "Local", "Mars/Olympus", None, "+05:30"])
def test_register_bad_zone_becomes_utc(client: TestClient, world: World, tz: Any) -> None:
    token = world.token()
    r = register(client, token, base(world.workspace(), timezone=tz))
    assert r.status_code == 200 and r.json()["runtimes"][0]["timezone"] == "UTC"


def test_register_owner_pat_replaces_daemon_token_keeps(client: TestClient, world: World) -> None:
    owner = world.token()
    other = world.token("other@example.com", role="member")
    daemon = world.daemon_token()
    ws = world.workspace()
    rt = register(client, daemon, base(ws)).json()["runtimes"][0]
    assert rt["owner_id"] is None
    assert register(client, owner, base(ws)).json()["runtimes"][0]["owner_id"] == str(
        world.user_id("owner@example.com")
    )
    assert register(client, daemon, base(ws)).json()["runtimes"][0]["owner_id"] == str(
        world.user_id("owner@example.com")
    )
    # Another member cannot take it over, by registering its daemon_id or merging it away.
    r = register(client, other, base(ws))
    assert (r.status_code, r.json()) == (
        403,
        {"error": "this daemon's runtime belongs to another user"},
    )
    theirs = register(client, other, {**base(ws), "daemon_id": "mine"}).json()["runtimes"][0]
    merge = {**base(ws), "daemon_id": "mine", "legacy_daemon_ids": [base(ws)["daemon_id"]]}
    assert register(client, other, merge).status_code == 200
    assert register(client, daemon, merge).status_code == 200  # refreshes "mine", merges none
    owners = world.db.execute(
        "SELECT id, owner_id FROM agent_runtime WHERE workspace_id = %s ORDER BY created_at", (ws,)
    ).fetchall()
    assert [(str(r["id"]), str(r["owner_id"])) for r in owners] == [
        (rt["id"], str(world.user_id("owner@example.com"))),
        (theirs["id"], str(world.user_id("other@example.com"))),
    ]
    r = client.delete(f"/api/runtimes/{rt['id']}", headers=auth(other, "acme"))
    assert r.status_code == 403


def test_a_daemon_token_merges_only_ownerless_runtimes(client: TestClient, world: World) -> None:
    owner, daemon, ws = world.token(), world.daemon_token(), world.workspace()
    owned = register(client, owner, {**base(ws), "daemon_id": "owned"}).json()["runtimes"][0]
    free = register(client, daemon, {**base(ws), "daemon_id": "free"}).json()["runtimes"][0]
    merge = {**base(ws), "daemon_id": "new", "legacy_daemon_ids": ["owned", "free"]}
    new = register(client, daemon, merge).json()["runtimes"][0]
    left = world.db.execute("SELECT id FROM agent_runtime ORDER BY created_at").fetchall()
    assert [str(r["id"]) for r in left] == [owned["id"], new["id"]]
    assert free["id"] != new["id"]


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ("not json", 400, "invalid request body"),
        ([], 400, "invalid request body"),
        ({"daemon_id": 5}, 400, "invalid request body"),
        ({"runtimes": "x"}, 400, "invalid request body"),
        ({"daemon_id": "", "workspace_id": "W", "runtimes": [{}]}, 400, "daemon_id is required"),
        ({"daemon_id": "d", "runtimes": [{}]}, 400, "workspace_id is required"),
        (
            {"daemon_id": "d", "workspace_id": "W", "runtimes": []},
            400,
            "at least one runtime is required",
        ),
        ({"daemon_id": "d", "workspace_id": "zz", "runtimes": [{}]}, 400, "invalid workspace_id"),
        (
            {
                "daemon_id": "d",
                "workspace_id": "00000000-0000-0000-0000-000000000000",
                "runtimes": [{}],
            },
            404,
            "workspace not found",
        ),
    ],
)
def test_register_errors(
    client: TestClient, world: World, body: Any, status: int, error: str
) -> None:
    token = world.token()
    ws = str(world.workspace())
    if isinstance(body, dict) and body.get("workspace_id") == "W":
        body = {**body, "workspace_id": ws}
    if isinstance(body, str):
        r = client.post("/api/daemon/register", headers={**auth(token), **JSON}, content=body)
    else:
        r = register(client, token, body)
    assert (r.status_code, r.json()) == (status, {"error": error})
    assert world.db.execute("SELECT count(*) AS n FROM agent_runtime").fetchone() == {"n": 0}


def test_register_into_another_workspace_is_404(client: TestClient, world: World) -> None:
    world.token(workspace="b", email="b@example.com")
    daemon_a = world.daemon_token("a")
    pat_a = world.token(workspace="a")
    b = world.workspace("b")
    for token in (daemon_a, pat_a):
        r = register(client, token, base(b))
        assert (r.status_code, r.json()) == (404, {"error": "workspace not found"})


@pytest.fixture
def task(world: World) -> Any:
    ws = world.workspace()
    rt = world.runtime(ws)
    return world.task(world.agent(ws, rt), rt)


def usage_rows(world: World) -> list[Any]:
    return world.db.execute(
        "SELECT provider, model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens"
        " FROM task_usage ORDER BY provider, model"
    ).fetchall()


def test_task_usage_upserts(client: TestClient, world: World, task: Any) -> None:
    token = world.daemon_token()
    url = f"/api/daemon/tasks/{task}/usage"
    body = {
        "usage": [
            {"provider": "anthropic", "model": "s", "input_tokens": 5, "cache_write_tokens": 2},
            {"model": "x", "output_tokens": 1},
            {"provider": "anthropic", "model": "s", "input_tokens": 6},
        ]
    }
    r = client.post(url, headers=auth(token), json=body)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert usage_rows(world) == [
        {
            "provider": "",
            "model": "x",
            "input_tokens": 0,
            "output_tokens": 1,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
        },
        {
            "provider": "anthropic",
            "model": "s",
            "input_tokens": 6,
            "output_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
        },
    ]
    before = world.db.execute(
        "SELECT created_at, updated_at FROM task_usage WHERE model = 'x'"
    ).fetchone()
    assert before is not None
    client.post(url, headers=auth(token), json={"usage": [{"model": "x", "output_tokens": 9}]})
    after = world.db.execute(
        "SELECT created_at, updated_at, output_tokens FROM task_usage WHERE model = 'x'"
    ).fetchone()
    assert after is not None
    assert (
        after["created_at"] == before["created_at"] and after["updated_at"] > before["updated_at"]
    )
    assert after["output_tokens"] == 9


def test_task_usage_keeps_entries_without_a_model_and_costs_in_ticks(
    client: TestClient, world: World, task: Any
) -> None:
    # Multica's copilot backend reports model "" when none was selected; today's daemon sends
    # the provider's cost as integer ticks of 1e-10 USD. Nothing of either may be lost.
    url = f"/api/daemon/tasks/{task}/usage"
    body = {
        "usage": [
            {"provider": "copilot", "model": "", "input_tokens": 40, "output_tokens": 2},
            {"provider": "xai", "model": "grok-4", "input_tokens": 9, "cost_usd_ticks": 4704192000},
            {"model": "both", "input_tokens": 1, "cost_usd": 0.25, "cost_usd_ticks": 2500000000},
            {"model": "free", "input_tokens": 5, "cost_usd_ticks": 0},
        ]
    }
    r = client.post(url, headers=auth(world.daemon_token()), json=body)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    rows = world.db.execute(
        "SELECT provider, model, input_tokens, cost_usd FROM task_usage ORDER BY model"
    ).fetchall()
    assert [(r["provider"], r["model"], r["input_tokens"], r["cost_usd"]) for r in rows] == [
        ("copilot", "", 40, None),
        ("", "both", 1, Decimal("0.25")),
        ("", "free", 5, Decimal("0")),  # a reported $0 is a cost, not "unpriced"
        ("xai", "grok-4", 9, Decimal("0.4704192")),
    ]
    token = world.token()
    summary = client.get("/api/usage/summary", headers=auth(token, "acme")).json()
    by_model = {r["model"]: r for r in summary}
    assert (by_model[""]["total_input_tokens"], by_model[""]["unpriced_tokens"]) == (40, 42)
    assert by_model[""]["cost_usd"] == 0 and by_model["grok-4"]["cost_usd"] == 0.4704192
    assert by_model["free"]["unpriced_tokens"] == 0


@pytest.mark.parametrize("body", [{}, {"usage": []}, {"usage": None}])
def test_task_usage_empty_is_a_noop(client: TestClient, world: World, task: Any, body: Any) -> None:
    r = client.post(f"/api/daemon/tasks/{task}/usage", headers=auth(world.token()), json=body)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert usage_rows(world) == []


GOOD = {"model": "m", "input_tokens": 1}


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        (
            [GOOD, {"model": "m", "input_tokens": -1}],
            "invalid usage entry 1: input_tokens must be an integer between 0 and 1000000000000",
        ),
        (
            [{"model": "m", "output_tokens": 1.0}],
            "invalid usage entry 0: output_tokens must be an integer between 0 and 1000000000000",
        ),
        (
            [{"model": "m", "cache_read_tokens": "5"}],
            "invalid usage entry 0: cache_read_tokens must be an integer between 0 and 1000000000000",
        ),
        (
            [{"model": "m", "cache_write_tokens": True}],
            "invalid usage entry 0: cache_write_tokens must be an integer between 0 and 1000000000000",
        ),
        (
            [{"model": "m", "input_tokens": None}],
            "invalid usage entry 0: input_tokens must be an integer between 0 and 1000000000000",
        ),
        (
            [{"model": "m", "input_tokens": 2**63}],
            "invalid usage entry 0: input_tokens must be an integer between 0 and 1000000000000",
        ),
        (
            [{"input_tokens": 1}],
            "invalid usage entry 0: model must be a string of at most 200 characters without NUL",
        ),
        (
            [{"model": 7}],
            "invalid usage entry 0: model must be a string of at most 200 characters without NUL",
        ),
        (
            [GOOD, {"model": "m", "cost_usd_ticks": -1}],
            "invalid usage entry 1: cost_usd_ticks must be an integer from 0 to 10000000000000000 (1e-10 USD)",
        ),
        (
            [{"model": "m", "cost_usd_ticks": 1.5}],
            "invalid usage entry 0: cost_usd_ticks must be an integer from 0 to 10000000000000000 (1e-10 USD)",
        ),
        (
            [{"model": "m", "cost_usd_ticks": True}],
            "invalid usage entry 0: cost_usd_ticks must be an integer from 0 to 10000000000000000 (1e-10 USD)",
        ),
        (
            [{"model": "m", "cost_usd_ticks": 10**16 + 1}],
            "invalid usage entry 0: cost_usd_ticks must be an integer from 0 to 10000000000000000 (1e-10 USD)",
        ),
        (
            [{"model": "m", "cost_usd_ticks": 25, "cost_usd": 0.0000000026}],
            "invalid usage entry 0: cost_usd and cost_usd_ticks disagree",
        ),
        (
            [{"model": "m", "provider": None}],
            "invalid usage entry 0: provider must be a string of at most 200 characters without NUL",
        ),
        ([GOOD, "x"], "invalid usage entry 1: must be an object"),
        ([GOOD] * 1001, "invalid request body: at most 1000 usage entries"),
    ],
)
def test_task_usage_rejects_the_whole_body(
    client: TestClient, world: World, task: Any, entries: Any, error: str
) -> None:
    r = client.post(
        f"/api/daemon/tasks/{task}/usage", headers=auth(world.token()), json={"usage": entries}
    )
    assert (r.status_code, r.json()) == (400, {"error": error})
    assert usage_rows(world) == []


def test_task_usage_accepts_1000_entries(client: TestClient, world: World, task: Any) -> None:
    entries = [{"model": f"m{i}", "input_tokens": i} for i in range(1000)]
    r = client.post(
        f"/api/daemon/tasks/{task}/usage", headers=auth(world.token()), json={"usage": entries}
    )
    assert r.status_code == 200
    row = world.db.execute(
        "SELECT count(*) AS n, sum(input_tokens)::int AS s FROM task_usage"
    ).fetchone()
    assert row == {"n": 1000, "s": sum(range(1000))}


def test_task_usage_errors(client: TestClient, world: World, task: Any) -> None:
    token = world.token()
    outsider = world.daemon_token("other")
    h = auth(token)
    r = client.post("/api/daemon/tasks/xyz/usage", headers=h, json={"usage": [GOOD]})
    assert (r.status_code, r.json()) == (400, {"error": "invalid task_id"})
    for bad in ("nope", "[1]", '{"usage": 5}'):
        r = client.post(f"/api/daemon/tasks/{task}/usage", headers={**h, **JSON}, content=bad)
        assert (r.status_code, r.json()) == (400, {"error": "invalid request body"})
    r = client.post(
        "/api/daemon/tasks/00000000-0000-0000-0000-000000000000/usage",
        headers=h,
        json={"usage": [GOOD]},
    )
    assert (r.status_code, r.json()) == (404, {"error": "task not found"})
    r = client.post(
        f"/api/daemon/tasks/{task}/usage", headers=auth(outsider), json={"usage": [GOOD]}
    )
    assert (r.status_code, r.json()) == (404, {"error": "task not found"})
    assert usage_rows(world) == []


def test_register_answers_as_todays_multica_and_keeps_profiles(
    client: TestClient, world: World
) -> None:
    token = world.daemon_token()
    ws = world.workspace()
    profile = str(uuid.uuid4())
    body = {
        "workspace_id": str(ws),
        "daemon_id": "d1",
        "runtimes": [{"type": "claude"}, {"type": "custom-x", "profile_id": profile}],
    }
    r = register(client, token, body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert list(answer) == ["runtimes", "repos", "repos_version", "settings"]
    assert (answer["repos"], answer["settings"]) == ([], None)
    assert answer["repos_version"] == hashlib.sha256(b"").hexdigest()
    assert [x["profile_id"] for x in answer["runtimes"]] == [None, profile]
    # Only profiles that failed to start, no runtime: accepted, as today's daemon expects.
    failed = {**body, "runtimes": [], "failed_profiles": [{"profile_id": profile, "reason": "x"}]}
    r = register(client, token, failed)
    assert (r.status_code, r.json()["runtimes"]) == (200, [])
    assert register(client, token, {**body, "runtimes": []}).json() == {
        "error": "at least one runtime is required"
    }
    bad = {**body, "runtimes": [{"type": "claude", "profile_id": "nope"}]}
    assert register(client, token, bad).json() == {"error": "invalid profile_id"}


def test_daemon_workspaces_lists_what_the_token_may_serve(client: TestClient, world: World) -> None:
    daemon = world.daemon_token("acme")
    owner = world.token("o@example.com", "acme")
    world.token("o@example.com", "beta")
    world.workspace("gamma")
    acme = client.get("/api/daemon/workspaces", headers=auth(daemon)).json()
    assert [w["name"] for w in acme] == ["acme"] and set(acme[0]) == {"id", "name"}
    mine = client.get("/api/daemon/workspaces", headers=auth(owner)).json()
    assert [w["name"] for w in mine] == ["acme", "beta"]
    assert client.get("/api/daemon/workspaces").status_code == 401
