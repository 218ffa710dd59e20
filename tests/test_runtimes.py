"""Runtime management, docs/api.md."""

from __future__ import annotations

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
    assert r.json() == {
        "error": "cannot delete runtime: it has active agents bound to it. Archive or reassign the agents first."
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
