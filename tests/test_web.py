"""Hostile input (web.py): whatever a client sends is a clear 4xx with nothing written, and
a body over the limit is refused before it is read."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import requests
from fastapi.testclient import TestClient

from tests.conftest import JSON, World, auth, serving
from usagemeter.app import create_app
from usagemeter.config import Config
from usagemeter.db import Row
from usagemeter.web import Conn

# Everything a client can write, counted: a refused request changes none of it.
WRITTEN = """
SELECT (SELECT count(*) FROM task_usage) AS usage, (SELECT count(*) FROM issue) AS issues,
       (SELECT count(*) FROM agent) AS agents, (SELECT count(*) FROM agent_runtime) AS runtimes,
       (SELECT count(*) FROM workspace) AS workspaces, (SELECT count(*) FROM "user") AS users,
       (SELECT count(*) FROM member) AS members, (SELECT count(*) FROM model_price) AS prices,
       (SELECT count(*) FROM agent_task_queue) AS tasks,
       (SELECT string_agg(name || coalesce(timezone, ''), ',') FROM "user") AS profiles
"""


@pytest.fixture
def scene(world: World) -> dict[str, Any]:
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws)
    agent = world.agent(ws, rt)
    task = world.task(agent, rt)
    return {"token": token, "ws": str(ws), "rt": str(rt), "agent": str(agent), "task": str(task)}


def body_routes(s: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every route that takes a body, with a valid body for it."""
    usage = {"model": "m", "input_tokens": 1}
    return [
        ("POST", "/api/usage/batch", {"usage": [{**usage, "task_id": s["task"]}]}),
        ("POST", f"/api/daemon/tasks/{s['task']}/usage", {"usage": [usage]}),
        (
            "POST",
            "/api/daemon/register",
            {"workspace_id": s["ws"], "daemon_id": "d1", "runtimes": [{"type": "claude"}]},
        ),
        ("POST", "/api/agents", {"name": "new", "runtime_id": s["rt"]}),
        ("PATCH", f"/api/agents/{s['agent']}", {"name": "renamed"}),
        ("POST", "/api/issues", {"title": "t"}),
        ("POST", "/api/tasks", {"agent_id": s["agent"]}),
        ("POST", "/api/workspaces", {"slug": "other", "name": "n"}),
        ("PUT", "/api/members", {"email": "x@example.com", "role": "member"}),
        ("PATCH", "/api/me", {"name": "me", "timezone": "UTC"}),
        ("PATCH", f"/api/runtimes/{s['rt']}", {"timezone": "Asia/Kolkata"}),
        (
            "PUT",
            "/api/pricing",
            {
                "model": "m",
                "input_per_mtok": 1,
                "output_per_mtok": 1,
                "cache_read_per_mtok": 1,
                "cache_write_per_mtok": 1,
            },
        ),
    ]


def written(db: psycopg.Connection[Row]) -> Row:
    row = db.execute(WRITTEN).fetchone()
    assert row is not None
    return row


def refused(r: Any, status: int = 400) -> str:
    """The error text of a refusal with this status."""
    assert r.status_code == status, r.text
    body = r.json()
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    return str(body["error"])


def send(client: TestClient, s: dict[str, Any], method: str, path: str, body: Any) -> Any:
    headers = {**auth(s["token"], "acme"), **JSON}
    if isinstance(body, str | bytes):
        return client.request(method, path, headers=headers, content=body)
    return client.request(method, path, headers=headers, json=body)


def test_every_body_route_accepts_its_valid_body(client: TestClient, scene: dict[str, Any]) -> None:
    # The bodies the tests below spoil are good ones: each spoiled request fails for its flaw.
    for method, path, body in body_routes(scene):
        r = send(client, scene, method, path, body)
        assert r.status_code == 200, (path, r.text)


def _spoil(body: Any, value: Any) -> Any:
    """The body with its first string field set to value."""
    if isinstance(body, dict):
        for key, v in body.items():
            if isinstance(v, str):
                return {**body, key: value}
            if isinstance(v, list | dict):
                return {**body, key: _spoil(v, value)}
    if isinstance(body, list):
        return [_spoil(body[0], value), *body[1:]]
    return body


@pytest.mark.parametrize(
    ("flaw", "value"),
    [("NUL", "a\x00b"), ("long", "x" * 100_000), ("3,000 bytes", "é" * 1500)],
)
def test_a_bad_string_in_any_body_is_400_and_nothing_is_written(
    client: TestClient, scene: dict[str, Any], db: psycopg.Connection[Row], flaw: str, value: str
) -> None:
    before = written(db)
    for method, path, body in body_routes(scene):
        spoiled = _spoil(body, value)
        assert spoiled != body, path
        r = send(client, scene, method, path, spoiled)
        if path.startswith("/api/runtimes/"):
            assert refused(r) == "invalid IANA timezone"
            continue
        error = refused(r)
        assert "NUL" in error or "at most" in error or "invalid" in error, (path, error)
    assert written(db) == before


def test_strings_are_bounded_as_documented(client: TestClient, scene: dict[str, Any]) -> None:
    s = scene
    assert refused(send(client, s, "POST", "/api/issues", {"title": "t" * 1001})) == (
        "invalid request body: title must be at most 1000 characters"
    )
    ok = send(client, s, "POST", "/api/issues", {"title": "t" * 1000})
    assert ok.status_code == 200, ok.text
    register = {"workspace_id": s["ws"], "daemon_id": "d" * 256, "runtimes": [{}]}
    assert refused(send(client, s, "POST", "/api/daemon/register", register)) == (
        "invalid request body: daemon_id must be at most 255 characters"
    )
    batch = {"usage": [{"task_id": s["task"], "model": "m" * 201}]}
    assert refused(send(client, s, "POST", "/api/usage/batch", batch)) == (
        "invalid usage entry 0: model must be a string of at most 200 characters without NUL"
    )
    member = {"email": "a@" + "b" * 300}
    assert refused(send(client, s, "PUT", "/api/members", member)) == (
        "invalid request body: email must be at most 255 characters"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/api/usage/summary?workspace_slug=ac%00me",
        "/api/runtimes?workspace_id=%00",
        "/api/pricing?workspace_slug=acme&model=m%00",
        "/api/tasks?workspace_slug=acme&status=%00",
    ],
)
def test_a_nul_in_the_query_string_is_400(
    client: TestClient, scene: dict[str, Any], path: str
) -> None:
    r = client.get(path, headers=auth(scene["token"]))
    assert refused(r) == "invalid query string: NUL character"


@pytest.mark.parametrize("path", ["/api/runtimes/%00/usage", "/api/issues/a%00b/usage", "/w/%00"])
def test_a_nul_in_the_path_is_400(client: TestClient, scene: dict[str, Any], path: str) -> None:
    r = client.get(path, headers=auth(scene["token"]))
    assert refused(r) == "invalid path: NUL character"


def test_nesting_past_the_parsers_limit_is_400(
    client: TestClient, scene: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    before = written(db)
    deep = '{"x": ' + "[" * 2000 + "]" * 2000 + "}"
    for method, path, _ in body_routes(scene):
        error = refused(send(client, scene, method, path, deep))
        assert error in ("invalid request body", "invalid JSON body"), (path, error)
    assert written(db) == before


def _entry(s: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"usage": [{"task_id": s["task"], "model": "m", "input_tokens": 1, **fields}]}


@pytest.mark.parametrize(
    "created_at",
    [
        "2026-01-01T00:00:00+16:00",
        "2026-01-01T00:00:00-16:00",
        "9999-12-31T23:59:59Z",
        "1999-12-31T23:59:59Z",
        "FUTURE",
    ],
)
def test_usage_time_out_of_range_is_400(
    client: TestClient, scene: dict[str, Any], db: psycopg.Connection[Row], created_at: str
) -> None:
    if created_at == "FUTURE":
        created_at = (datetime.now(UTC) + timedelta(days=1, minutes=5)).isoformat()
    r = send(client, scene, "POST", "/api/usage/batch", _entry(scene, created_at=created_at))
    assert refused(r).startswith("invalid usage entry 0: created_at must be an RFC 3339 time")
    assert written(db)["usage"] == 0


def test_usage_time_within_range_is_kept(
    client: TestClient, scene: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    soon = (datetime.now(UTC) + timedelta(hours=23)).isoformat()
    for at in ("2026-01-01T00:00:00+15:59", "2000-01-01T00:00:00Z", soon):
        r = send(client, scene, "POST", "/api/usage/batch", _entry(scene, created_at=at))
        assert r.status_code == 200, r.text
        stored = db.execute("SELECT created_at FROM task_usage").fetchone()
        assert stored is not None and stored["created_at"] == datetime.fromisoformat(at)
        db.execute("DELETE FROM task_usage")


@pytest.mark.parametrize(
    "cost", ["1e-400", "1e-11", "0.00000000001", "1e400", "1000000.0000000001", "-0.5"]
)
def test_a_cost_that_is_not_exactly_storable_is_400(
    client: TestClient, scene: dict[str, Any], db: psycopg.Connection[Row], cost: str
) -> None:
    raw = (
        f'{{"usage": [{{"task_id": "{scene["task"]}", "model": "m", "input_tokens": 1,'
        f' "cost_usd": {cost}}}]}}'
    )
    r = send(client, scene, "POST", "/api/usage/batch", raw)
    assert refused(r).startswith("invalid usage entry 0: cost_usd must be a number")
    assert written(db)["usage"] == 0


def test_a_cost_in_exponent_form_is_exact(
    client: TestClient, scene: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    task = scene["task"]
    raw = (
        f'{{"usage": [{{"task_id": "{task}", "model": "a", "cost_usd": 1e-10}},'
        f' {{"task_id": "{task}", "model": "b", "cost_usd": 2.5E+2}},'
        f' {{"task_id": "{task}", "model": "c", "cost_usd": 0.1234567891}}]}}'
    )
    assert send(client, scene, "POST", "/api/usage/batch", raw).status_code == 200
    costs = db.execute("SELECT cost_usd::text AS c FROM task_usage ORDER BY model").fetchall()
    assert [r["c"] for r in costs] == ["0.0000000001", "250.0000000000", "0.1234567891"]


@pytest.mark.parametrize("content_type", ["text/plain", None, "application/x-www-form-urlencoded"])
def test_a_body_that_does_not_say_it_is_json_is_415(
    client: TestClient,
    scene: dict[str, Any],
    db: psycopg.Connection[Row],
    content_type: str | None,
) -> None:
    before = written(db)
    for method, path, body in body_routes(scene):
        headers = auth(scene["token"], "acme")
        if content_type:
            headers["Content-Type"] = content_type
        r = client.request(method, path, headers=headers, content=json.dumps(body))
        assert refused(r, 415) == "Content-Type must be application/json", path
    assert written(db) == before


def test_json_with_a_charset_or_a_json_suffix_is_json(
    client: TestClient, scene: dict[str, Any]
) -> None:
    for content_type in ("application/json; charset=utf-8", "application/vnd.api+json"):
        headers = {**auth(scene["token"], "acme"), "Content-Type": content_type}
        r = client.post("/api/issues", headers=headers, content=b'{"title": "t"}')
        assert r.status_code == 200, r.text


def test_no_body_needs_no_content_type_and_an_unknown_method_is_405_first(
    client: TestClient, scene: dict[str, Any]
) -> None:
    h = auth(scene["token"], "acme")
    assert client.post(f"/api/tasks/{scene['task']}/start", headers=h).status_code == 200
    r = client.request(
        "PUT", "/api/usage/batch", headers={**h, "Content-Type": "text/plain"}, content=b"x"
    )
    assert refused(r, 405) == "method not allowed"


@pytest.fixture
def small_body_client(db_url: str) -> Iterator[TestClient]:
    env = {"DATABASE_URL": "set", "USAGEMETER_TICK_SECONDS": "0", "USAGEMETER_MAX_BODY": "1000"}
    with TestClient(create_app(Config.from_env(env), db_url)) as c:
        yield c


def test_a_body_over_the_limit_is_413_whether_announced_or_streamed(
    small_body_client: TestClient, scene: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    before = written(db)
    h = {**auth(scene["token"], "acme"), **JSON}
    big = b'{"title": "' + b"t" * 2000 + b'"}'
    r = small_body_client.post("/api/issues", headers=h, content=big)
    assert refused(r, 413) == "request body larger than 1000 bytes"

    def chunks() -> Iterator[bytes]:  # no Content-Length: read until it grows past the limit
        yield big[:600]
        yield big[600:]

    r = small_body_client.post("/api/issues", headers=h, content=chunks())
    assert refused(r, 413) == "request body larger than 1000 bytes"
    assert written(db) == before
    fits = small_body_client.post("/api/issues", headers=h, content=b'{"title": "t"}')
    assert fits.status_code == 200, fits.text


def test_a_server_refuses_a_huge_body_before_it_is_sent_and_keeps_serving(live_url: str) -> None:
    # A real server: a client announces 150 MB and sends none of it; the answer comes at
    # once, and other requests are served meanwhile.
    host, port = live_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as huge:
        huge.sendall(
            b"POST /api/usage/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 157286400\r\n\r\n" + b"{" * 1000
        )
        head = huge.recv(4096)
        with socket.create_connection((host, int(port)), timeout=10) as other:
            other.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert other.recv(4096).startswith(b"HTTP/1.1 200")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b'{"error":"request body larger than 33554432 bytes"}' in head


def _app_with_slow_route(db_url: str, **env: str) -> Any:
    """The application with one more route whose query sleeps 5 seconds."""
    config = Config.from_env({"DATABASE_URL": "set", "USAGEMETER_TICK_SECONDS": "0", **env})
    app = create_app(config, db_url)

    async def slow(conn: Conn) -> dict[str, str]:
        await conn.execute("SELECT pg_sleep(5) -- the slow route")
        return {"status": "ok"}

    app.add_api_route("/slow", slow)
    return app


def _sleeping(db: psycopg.Connection[Row]) -> int:
    row = db.execute(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE query LIKE '%%-- the slow route'"
        " AND state = 'active' AND pid <> pg_backend_pid()"
    ).fetchone()
    return int(row["n"]) if row else 0


def test_a_statement_over_its_time_is_cancelled_and_answers_503(
    db_url: str, db: psycopg.Connection[Row]
) -> None:
    app = _app_with_slow_route(db_url, USAGEMETER_STATEMENT_TIMEOUT="0.5")
    with TestClient(app) as c:
        started = time.monotonic()
        r = c.get("/slow")
        assert time.monotonic() - started < 4
    assert (r.status_code, r.json()) == (503, {"error": "database too slow"})
    assert r.headers["retry-after"] == "1"
    assert _sleeping(db) == 0


def test_a_client_that_leaves_takes_its_query_with_it(
    db_url: str, db: psycopg.Connection[Row]
) -> None:
    with serving(_app_with_slow_route(db_url)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as leaving:
            leaving.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 3
            while not _sleeping(db) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _sleeping(db) == 1
        deadline = time.monotonic() + 2  # well before the 5 s the query would take
        while _sleeping(db) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sleeping(db) == 0


def test_slow_uploads_hold_no_connection_and_time_out(db_url: str, scene: dict[str, Any]) -> None:
    # Ten clients trickle their bodies into a server with one database connection; the
    # others are served meanwhile, and the trickling ones get 408 once their time is up.
    env = {"DATABASE_URL": "set", "USAGEMETER_TICK_SECONDS": "0"}
    env |= {"USAGEMETER_POOL_SIZE": "1", "USAGEMETER_BODY_TIMEOUT": "1.5"}
    with serving(create_app(Config.from_env(env), db_url)) as url:
        host, port = url.removeprefix("http://").split(":")
        head = (
            f"POST /api/issues HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {scene['token']}\r\n"
            "X-Workspace-Slug: acme\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{"
        ).encode()
        slow = [socket.create_connection((host, int(port)), timeout=10) for _ in range(10)]
        for s in slow:
            s.sendall(head)
        started = time.monotonic()
        r = requests.get(f"{url}/api/runtimes", headers=auth(scene["token"], "acme"), timeout=5)
        assert r.status_code == 200 and time.monotonic() - started < 1
        for s in slow:
            s.sendall(b" ")
            answer = s.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b'{"error":"request body not received within 1.5 seconds"}' in answer
            s.close()


def test_a_deadlocked_write_is_retried_not_500(
    client: TestClient, world: World, db_url: str
) -> None:
    # Two writers lock the same two tasks in opposite orders; one loses the deadlock and
    # its request runs again: both answer 200.
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws)
    agent = world.agent(ws, rt)
    # The writer locks its tasks in id order: t1, then t2.
    t1, t2 = (str(t) for t in sorted([world.task(agent, rt), world.task(agent, rt)]))
    holder = psycopg.connect(db_url, autocommit=False)
    holder.execute("SET deadlock_timeout = '10s'")  # the writer finds the deadlock: its victim
    holder.execute("SELECT 1 FROM agent_task_queue WHERE id = %s FOR UPDATE", (t2,))
    results: list[int] = []

    def write() -> None:  # locks t1, then waits for t2 (held above)
        body = {"usage": [{"task_id": t, "model": "m", "input_tokens": 1} for t in (t1, t2)]}
        r = client.post("/api/usage/batch", headers=auth(token, "acme"), json=body)
        results.append(r.status_code)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.5)
    # The holder now asks for t1, which the writer holds: the writer's transaction is rolled
    # back, the holder gets t1 and lets go of both; the writer's request runs again.
    holder.execute("SELECT 1 FROM agent_task_queue WHERE id = %s FOR UPDATE", (t1,))
    holder.rollback()
    holder.close()
    writer.join(10)
    assert results == [200]
    assert world.db.execute("SELECT count(*) AS n FROM task_usage").fetchone() == {"n": 2}


def test_connections_killed_under_the_server_are_replaced_unseen(
    db_url: str, scene: dict[str, Any], admin: psycopg.Connection[Row]
) -> None:
    # A database restart, or an administrator ending sessions, kills the pool's idle
    # connections: each idle for over a second is found dead at checkout and replaced, and
    # no request fails. (An outage answers 503: tests/test_embedded.py.)
    env = {"DATABASE_URL": "set", "USAGEMETER_TICK_SECONDS": "0"}
    with TestClient(create_app(Config.from_env(env), db_url)) as c:
        h = auth(scene["token"], "acme")
        assert c.get("/api/runtimes", headers=h).status_code == 200
        name = db_url.split("dbname=")[-1].split()[0]
        for _ in range(3):
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            time.sleep(1.1)  # a restart takes longer than that
            assert c.get("/api/runtimes", headers=h).status_code == 200
