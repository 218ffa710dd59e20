"""Workspaces, members and the caller's own profile (workspaces.py)."""

from __future__ import annotations

import threading

import requests
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


def test_the_last_owner_can_be_neither_demoted_nor_removed(
    client: TestClient, world: World
) -> None:
    owner = world.token()
    admin = world.token("admin@example.com", role="admin")
    demote = {"email": "owner@example.com", "role": "admin"}
    r = client.put("/api/members", headers=auth(admin, "acme"), json=demote)
    assert (r.status_code, r.json()) == (403, {"error": "only owners can change an owner's role"})
    r = client.delete(
        f"/api/members/{world.user_id('owner@example.com')}", headers=auth(admin, "acme")
    )
    assert (r.status_code, r.json()) == (403, {"error": "only owners can remove an owner"})
    r = client.put("/api/members", headers=auth(owner, "acme"), json=demote)
    assert (r.status_code, r.json()) == (409, {"error": "cannot demote the last owner"})
    r = client.delete(
        f"/api/members/{world.user_id('owner@example.com')}", headers=auth(owner, "acme")
    )
    assert (r.status_code, r.json()) == (409, {"error": "cannot remove the last owner"})
    roles = world.db.execute("SELECT role FROM member ORDER BY role").fetchall()
    assert [r["role"] for r in roles] == ["admin", "owner"]


def _remove(barrier: threading.Barrier, results: list[int], url: str, token: str) -> None:
    barrier.wait()
    results.append(requests.delete(url, headers=auth(token, "acme")).status_code)


def test_two_owners_removing_each_other_at_once_leave_one(live_url: str, world: World) -> None:
    # Each removal checks that another owner remains; the workspace's row lock makes the
    # second see the first's commit.
    tokens = {e: world.token(e) for e in ("a@example.com", "b@example.com")}
    ids = {e: world.user_id(e) for e in tokens}
    ws = world.workspace()
    for _ in range(20):
        world.db.execute(
            "INSERT INTO member (workspace_id, user_id, role) SELECT %s, unnest(%s::uuid[]),"
            " 'owner' ON CONFLICT DO NOTHING",
            (ws, list(ids.values())),
        )
        barrier = threading.Barrier(2)
        results: list[int] = []
        threads = [
            threading.Thread(target=_remove, args=(barrier, results, url, token))
            for url, token in (
                (f"{live_url}/api/members/{ids['b@example.com']}", tokens["a@example.com"]),
                (f"{live_url}/api/members/{ids['a@example.com']}", tokens["b@example.com"]),
            )
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # The second either finds its caller gone (404) or no other owner left (409).
        assert sorted(results) in ([200, 404], [200, 409])
        left = world.db.execute(
            "SELECT count(*) AS n FROM member WHERE workspace_id = %s AND role = 'owner'", (ws,)
        ).fetchone()
        assert left == {"n": 1}
