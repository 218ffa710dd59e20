"""Workspaces, members and the caller's own profile (workspaces.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import World, auth, ok


def test_workspaces_and_members(client: TestClient, world: World) -> None:
    token = world.token(workspace=None)
    h = auth(token)
    assert ok(client.get("/api/workspaces", headers=h)) == []
    ws = ok(client.post("/api/workspaces", headers=h, json={"slug": "team", "name": "Team"}))
    assert (ws["slug"], ws["name"], ws["role"]) == ("team", "Team", "owner")
    r = client.post("/api/workspaces", headers=h, json={"slug": "team"})
    assert (r.status_code, r.json()) == (409, {"error": "workspace slug already taken"})
    r = client.post("/api/workspaces", headers=h, json={"slug": "Bad Slug"})
    assert r.status_code == 400
    assert [w["slug"] for w in ok(client.get("/api/workspaces", headers=h))] == ["team"]
    hw = auth(token, "team")
    bob = ok(
        client.put("/api/members", headers=hw, json={"email": "Bob@Example.com", "role": "admin"})
    )
    assert (bob["email"], bob["role"]) == ("bob@example.com", "admin")
    assert [m["role"] for m in ok(client.get("/api/members", headers=hw))] == ["owner", "admin"]
    r = client.put("/api/members", headers=hw, json={"email": "x@example.com", "role": "king"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid role"})
    me = ok(client.get("/api/me", headers=h))
    r = client.delete(f"/api/members/{me['id']}", headers=hw)
    assert (r.status_code, r.json()) == (409, {"error": "cannot remove the last owner"})
    assert ok(client.delete(f"/api/members/{bob['user_id']}", headers=hw)) == {"status": "ok"}
    member = world.token("m@example.com", workspace="team", role="member")
    r = client.put("/api/members", headers=auth(member, "team"), json={"email": "y@example.com"})
    assert (r.status_code, r.json()) == (
        403,
        {"error": "only owners and admins can manage members"},
    )


def test_one_user_per_email_whatever_its_case(client: TestClient, world: World) -> None:
    token = world.token(" Ann@Example.com ", workspace="team")
    h = auth(token, "team")
    added = ok(
        client.put("/api/members", headers=h, json={"email": "ANN@example.COM", "role": "owner"})
    )
    assert added["email"] == "ann@example.com"
    assert [m["email"] for m in ok(client.get("/api/members", headers=h))] == ["ann@example.com"]


def test_me(client: TestClient, world: World) -> None:
    h = auth(world.token())
    assert (
        ok(client.patch("/api/me", headers=h, json={"name": "Ann", "timezone": "Asia/Kathmandu"}))[
            "name"
        ]
        == "Ann"
    )
    r = client.patch("/api/me", headers=h, json={"timezone": "Nowhere/City"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid IANA timezone"})
    assert ok(client.patch("/api/me", headers=h, json={"timezone": None}))["timezone"] is None
