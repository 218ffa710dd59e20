"""Runtime management, docs/api.md."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import JSON, World, auth


def test_list_runtimes_and_owner_me(client: TestClient, world: World) -> None:
    owner = world.token()
    ws = world.workspace()
    me = world.user_id("owner@example.com")
    first = world.runtime(ws, name="first", owner_id=me)
    world.runtime(ws, name="second")
    h = auth(owner, "acme")
    rows = client.get("/api/runtimes", headers=h).json()
    assert [r["name"] for r in rows] == ["first", "second"]
    assert rows[0]["id"] == str(first) and rows[1]["owner_id"] is None and rows[1]["metadata"] == {}
    assert rows[0]["created_at"].endswith("Z") and rows[0]["last_seen_at"] is None
    assert [r["name"] for r in client.get("/api/runtimes?owner=me", headers=h).json()] == ["first"]
    r = client.get("/api/runtimes?owner=bob", headers=h)
    assert (r.status_code, r.json()) == (400, {"error": "invalid owner"})


def test_patch_rules(client: TestClient, world: World) -> None:
    owner = world.token()
    member = world.token("m@example.com", role="member")
    admin = world.token("a@example.com", role="admin")
    ws = world.workspace()
    mine = world.runtime(ws, owner_id=world.user_id("m@example.com"))
    url = f"/api/runtimes/{mine}"
    assert (
        client.patch(url, headers=auth(member), json={"timezone": "Asia/Kolkata"}).json()[
            "timezone"
        ]
        == "Asia/Kolkata"
    )
    assert client.patch(url, headers=auth(admin), json={"timezone": ""}).json()["timezone"] == "UTC"
    r = client.patch(url, headers=auth(owner), json={})
    assert r.status_code == 200 and r.json()["timezone"] == "UTC"
    for body, error in (
        ("{", "invalid JSON body"),
        ("[]", "invalid JSON body"),
        ('{"timezone": 5}', "invalid IANA timezone"),
        ('{"timezone": "utc"}', "invalid IANA timezone"),
    ):
        r = client.patch(url, headers={**auth(owner), **JSON}, content=body)
        assert (r.status_code, r.json()) == (400, {"error": error})
    outsider = world.token("o@example.com", workspace="other")
    r = client.patch(url, headers=auth(outsider), json={"timezone": "UTC"})
    assert (r.status_code, r.json()) == (404, {"error": "runtime not found"})


def test_delete_rules(client: TestClient, world: World) -> None:
    owner = world.token()
    member = world.token("m@example.com", role="member")
    ws = world.workspace()
    rt = world.runtime(ws)
    active = world.agent(ws, rt)
    archived = world.agent(ws, rt, archived=True)
    world.usage(world.task(archived, rt), tokens=(5, 0, 0, 0))
    url = f"/api/runtimes/{rt}"
    r = client.delete(url, headers=auth(member))
    assert (r.status_code, r.json()) == (403, {"error": "you can only delete your own runtimes"})
    r = client.delete(url, headers=auth(owner))
    assert r.status_code == 409
    body = r.json()
    assert body.pop("active_agents")[0]["id"] == str(active)
    assert body == {
        "error": "cannot delete runtime: it has active agents bound to it. Archive or reassign the agents first.",
        "code": "runtime_has_active_agents",
    }
    world.db.execute("UPDATE agent SET archived_at = now() WHERE id = %s", (active,))
    assert client.delete(url, headers=auth(owner)).json() == {"status": "ok"}
    left: Any = world.db.execute(
        "SELECT (SELECT count(*) FROM agent) AS agents, (SELECT count(*) FROM task_usage) AS usage"
    ).fetchone()
    assert left == {"agents": 0, "usage": 0}
    assert client.get("/api/usage/summary", headers=auth(owner, "acme")).json() == []
    r = client.delete(url, headers=auth(owner))
    assert (r.status_code, r.json()) == (404, {"error": "runtime not found"})


def test_unbind_agents_and_delete_goes_on_only_with_the_confirmed_agents(
    client: TestClient, world: World
) -> None:
    owner = world.token()
    member = world.token("m@example.com", role="member")
    ws = world.workspace()
    rt = world.runtime(ws)
    a, b = world.agent(ws, rt, "b-agent"), world.agent(ws, rt, "a-agent")
    world.agent(ws, rt, "gone", archived=True)
    world.usage(world.task(a, rt), tokens=(5, 0, 0, 0))
    url = f"/api/runtimes/{rt}/unbind-agents-and-delete"
    for bad in (
        {},
        {"expected_active_agent_ids": "x"},
        {"expected_active_agent_ids": ["x"]},
        {"expected_active_agent_ids": [str(a), 42]},
    ):
        r = client.post(url, headers=auth(owner), json=bad)
        assert (r.status_code, r.json()) == (
            400,
            {"error": "expected_active_agent_ids must be a list of valid UUIDs"},
        ), bad
    both = [str(a), str(b)]
    r = client.post(url, headers=auth(member), json={"expected_active_agent_ids": both})
    assert (r.status_code, r.json()) == (403, {"error": "you can only delete your own runtimes"})
    for stale in ([], [str(a)], [*both, str(uuid.uuid4())]):
        r = client.post(url, headers=auth(owner), json={"expected_active_agent_ids": stale})
        assert r.status_code == 409, stale
        body = r.json()
        assert body["code"] == "runtime_delete_plan_changed"
        assert body["error"] == "the active agent set changed; please review and confirm again."
        assert [x["name"] for x in body["active_agents"]] == ["a-agent", "b-agent"]
    left: Any = world.db.execute("SELECT count(*) AS n FROM agent WHERE archived_at IS NULL")
    assert left.fetchone() == {"n": 2}  # nothing was touched by the refused attempts
    r = client.post(url, headers=auth(owner), json={"expected_active_agent_ids": both[::-1]})
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    gone: Any = world.db.execute(
        "SELECT (SELECT count(*) FROM agent) AS agents, (SELECT count(*) FROM agent_runtime) AS rts,"
        " (SELECT count(*) FROM task_usage) AS usage"
    ).fetchone()
    assert gone == {"agents": 0, "rts": 0, "usage": 0}
    empty = world.runtime(ws)
    r = client.post(
        f"/api/runtimes/{empty}/unbind-agents-and-delete",
        headers=auth(owner),
        json={"expected_active_agent_ids": []},
    )
    assert (r.status_code, r.json()) == (200, {"status": "ok"})


def test_patch_names_and_shares_a_runtime_as_todays_multica_does(
    client: TestClient, world: World
) -> None:
    owner = world.token()
    admin = world.token("a@example.com", role="admin")
    member = world.token("m@example.com", role="member")
    ws = world.workspace()
    mine = world.user_id("m@example.com")
    rt = world.runtime(ws, owner_id=mine, daemon_id="mac")
    sibling = world.runtime(ws, provider="codex", owner_id=mine, daemon_id="mac")
    theirs = world.runtime(ws, provider="gemini", daemon_id="mac")  # no owner
    url = f"/api/runtimes/{rt}"
    got = client.get("/api/runtimes", headers=auth(owner, "acme")).json()[0]
    assert (got["custom_name"], got["visibility"], got["profile_id"]) == (None, "private", None)
    r = client.patch(url, headers=auth(member), json={"custom_name": "  Studio  "})
    assert (r.status_code, r.json()["custom_name"], r.json()["name"]) == (200, "Studio", "rt")
    r = client.patch(
        url, headers=auth(member), json={"custom_name": "Desk", "apply_to_machine": True}
    )
    names = {
        r["id"]: r["custom_name"]
        for r in client.get("/api/runtimes", headers=auth(owner, "acme")).json()
    }
    assert names == {
        str(rt): "Desk",
        str(sibling): "Desk",
        str(theirs): None,
    }  # a member: their own
    client.patch(url, headers=auth(admin), json={"custom_name": "Lab", "apply_to_machine": True})
    names = {
        r["id"]: r["custom_name"]
        for r in client.get("/api/runtimes", headers=auth(owner, "acme")).json()
    }
    assert set(names.values()) == {"Lab"}  # an admin: the whole machine
    assert (
        client.patch(url, headers=auth(member), json={"custom_name": " "}).json()["custom_name"]
        is None
    )
    # Visibility: only the runtime's owner changes it; sending the current value is no change.
    r = client.patch(url, headers=auth(admin), json={"visibility": "public"})
    assert (r.status_code, r.json()) == (
        403,
        {"error": "only the runtime owner can change its visibility"},
    )
    assert client.patch(url, headers=auth(admin), json={"visibility": "private"}).status_code == 200
    assert (
        client.patch(url, headers=auth(member), json={"visibility": "public"}).json()["visibility"]
        == "public"
    )
    for body, error in [
        ({"visibility": "team"}, "visibility must be 'private' or 'public'"),
        ({"custom_name": "x" * 101}, "custom name is too long"),
        ({"name": "new"}, "invalid request body: name cannot be changed"),
        ({"timezone": "UTC", "status": "online"}, "invalid request body: status cannot be changed"),
        ({"apply_to_machine": "yes"}, "invalid request body: apply_to_machine is invalid"),
    ]:
        r = client.patch(url, headers=auth(member), json=body)
        assert (r.status_code, r.json()) == (400, {"error": error}), body
    row: Any = world.db.execute(
        "SELECT timezone, custom_name FROM agent_runtime WHERE id = %s", (rt,)
    )
    assert row.fetchone() == {
        "timezone": "UTC",
        "custom_name": None,
    }  # refused bodies wrote nothing
