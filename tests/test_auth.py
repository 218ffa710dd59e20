"""Authentication and workspace resolution, docs/api.md."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import World, auth
from usagemeter.app import create_app


def test_missing_and_invalid_tokens(client: TestClient, world: World) -> None:
    world.token()
    for headers in (
        {},
        {"Authorization": ""},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
    ):
        r = client.get("/api/runtimes?workspace_slug=acme", headers=headers)
        assert (r.status_code, r.json()) == (401, {"error": "missing authorization"})
    for token in ("mul_" + "0" * 40, "mdt_nope", "garbage"):
        r = client.get("/api/runtimes?workspace_slug=acme", headers=auth(token))
        assert (r.status_code, r.json()) == (401, {"error": "invalid token"})


def test_tokens_are_stored_hashed(world: World) -> None:
    pat, daemon = world.token(), world.daemon_token()
    assert pat.startswith("mul_") and daemon.startswith("mdt_")
    rows = world.db.execute("SELECT kind, token_hash FROM api_token ORDER BY kind").fetchall()
    assert [(r["kind"], bytes(r["token_hash"])) for r in rows] == [
        ("daemon", hashlib.sha256(daemon.encode()).digest()),
        ("pat", hashlib.sha256(pat.encode()).digest()),
    ]
    dump = str(world.db.execute("SELECT * FROM api_token").fetchall())
    assert pat not in dump and daemon not in dump


def test_workspace_resolution_order(client: TestClient, world: World) -> None:
    token = world.token(workspace="a")
    world.token(workspace="b", email="b@example.com")
    a, b = world.workspace("a"), world.workspace("b")
    world.runtime(a, name="in-a")

    def names(r: Any) -> list[str]:
        return [x["name"] for x in r.json()]

    h = {"Authorization": f"Bearer {token}"}
    assert names(client.get("/api/runtimes?workspace_slug=a", headers=h)) == ["in-a"]
    assert names(client.get("/api/runtimes", headers={**h, "X-Workspace-Slug": "a"})) == ["in-a"]
    assert names(client.get(f"/api/runtimes?workspace_id={a}", headers=h)) == ["in-a"]
    assert names(client.get("/api/runtimes", headers={**h, "X-Workspace-ID": str(a).upper()})) == [
        "in-a"
    ]
    # The first identifier present decides, with no fallback to the next.
    r = client.get(f"/api/runtimes?workspace_slug=zzz&workspace_id={a}", headers=h)
    assert (r.status_code, r.json()) == (404, {"error": "workspace not found"})
    r = client.get(f"/api/runtimes?workspace_id={b}", headers={**h, "X-Workspace-Slug": "a"})
    assert names(r) == ["in-a"]
    r = client.get("/api/runtimes?workspace_slug=b", headers=h)  # exists, not a member
    assert (r.status_code, r.json()) == (404, {"error": "workspace not found"})


@pytest.mark.parametrize(
    "path",
    [
        "/api/runtimes",
        "/api/usage/daily",
        "/api/usage/summary",
        "/api/agents",
        "/api/issues",
        "/api/tasks",
        "/api/members",
    ],
)
def test_workspace_errors(client: TestClient, world: World, path: str) -> None:
    h = auth(world.token())
    r = client.get(path, headers=h)
    assert (r.status_code, r.json()) == (
        400,
        {"error": "workspace_id or workspace_slug is required"},
    )
    r = client.get(path, headers={**h, "X-Workspace-ID": "not-a-uuid"})
    assert (r.status_code, r.json()) == (400, {"error": "invalid workspace_id"})
    r = client.get(path + "?workspace_id=00000000-0000-0000-0000-000000000000", headers=h)
    assert (r.status_code, r.json()) == (404, {"error": "workspace not found"})


def test_daemon_token_is_bound_to_its_workspace(client: TestClient, world: World) -> None:
    world.token(workspace="a")
    world.token(workspace="b", email="b@example.com")
    daemon = world.daemon_token("a")
    b = world.workspace("b")
    rt_b = world.runtime(b)
    assert client.get("/api/runtimes", headers=auth(daemon, "a")).status_code == 200
    r = client.get("/api/runtimes", headers=auth(daemon, "b"))
    assert (r.status_code, r.json()) == (404, {"error": "workspace not found"})
    r = client.get(f"/api/runtimes/{rt_b}/usage", headers=auth(daemon))
    assert (r.status_code, r.json()) == (404, {"error": "runtime not found"})
    r = client.get("/api/me", headers=auth(daemon))
    assert (r.status_code, r.json()) == (403, {"error": "a personal access token is required"})


def test_unknown_routes_and_methods_answer_json(client: TestClient, world: World) -> None:
    assert client.get("/nope").json() == {"error": "not found"}
    r = client.put("/api/usage/daily", headers=auth(world.token()))
    assert (r.status_code, r.json()) == (405, {"error": "method not allowed"})
    assert r.headers["allow"] == "GET"
    r = client.put(f"/api/runtimes/{uuid.uuid4()}")  # two routes share the path
    assert (r.status_code, r.headers["allow"]) == (405, "DELETE, PATCH")


def test_an_unexpected_error_is_json_and_closes_the_connection(config: Any, db_url: str) -> None:
    app = create_app(config, db_url)

    async def boom() -> None:
        raise RuntimeError("a bug")

    app.add_api_route("/boom", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/boom")
    assert (r.status_code, r.json()) == (500, {"error": "internal error"})
    assert r.headers["connection"] == "close"


def test_a_runtime_report_reads_caller_and_runtime_in_one_statement(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token and the runtime its route names are read together: a runtime report is two
    statements (that one and the report), and nothing is kept between requests, so a role,
    membership or token changed in the database applies to the very next request."""
    token = world.token("member@acme.io", "acme", "member")
    ws = world.workspace("acme")
    rt = world.runtime(ws)
    url = f"/api/runtimes/{rt}/usage"
    sent: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def counted(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(str(query))
        return await execute(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", counted)
    assert client.get(url, headers=auth(token)).status_code == 200  # describes its query once
    sent.clear()
    assert client.get(url, headers=auth(token)).status_code == 200
    assert len(sent) == 2, sent
    # Another workspace's runtime, and one that does not exist: 404 after the one statement.
    other = world.runtime(world.workspace("beta"))
    for rid in (other, uuid.uuid4()):
        sent.clear()
        r = client.get(f"/api/runtimes/{rid}/usage", headers=auth(token))
        assert (r.status_code, r.json(), len(sent)) == (404, {"error": "runtime not found"}, 1)
    world.db.execute("DELETE FROM member WHERE workspace_id = %s", (ws,))
    assert client.get(url, headers=auth(token)).status_code == 404
    world.db.execute(
        "INSERT INTO member (workspace_id, user_id, role)"
        " SELECT %s, id, 'member' FROM \"user\" WHERE email = 'member@acme.io'",
        (ws,),
    )
    assert client.get(url, headers=auth(token)).status_code == 200
    world.db.execute("DELETE FROM api_token")
    assert client.get(url, headers=auth(token)).status_code == 401
