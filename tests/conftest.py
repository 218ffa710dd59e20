"""Test fixtures: a real PostgreSQL, a migrated template database, one fresh copy per test.

The server is TEST_DATABASE_URL (or DATABASE_URL) when set, else the embedded PostgreSQL.
Factories insert rows and assert nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from fastapi.testclient import TestClient
from psycopg.conninfo import make_conninfo

from usagemeter.app import create_app
from usagemeter.auth import create_token
from usagemeter.config import Config
from usagemeter.db import Row, connect
from usagemeter.embedded import Embedded
from usagemeter.migrate import migrate


def embedded_data_dir() -> Path:
    """A new directory for an embedded server, removed by the caller. As root, in /tmp: the
    server's user must reach it, and pytest's own directories are closed to others."""
    return Path(tempfile.mkdtemp(prefix="um-test-", dir="/tmp"))


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    base = embedded_data_dir()
    server = Embedded(base)
    try:
        yield server.start()
    finally:
        server.release()
        shutil.rmtree(base)


@pytest.fixture(scope="session")
def admin(server_url: str) -> Iterator[psycopg.Connection[Row]]:
    with connect(server_url) as conn:
        yield conn


@pytest.fixture(scope="session")
def template_db(server_url: str, admin: psycopg.Connection[Row]) -> Iterator[str]:
    name = f"um_template_{os.getpid()}"
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    with connect(make_conninfo(server_url, dbname=name)) as conn:
        migrate(conn)
    yield name
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db_url(server_url: str, admin: psycopg.Connection[Row], template_db: str) -> Iterator[str]:
    name = f"um_test_{uuid.uuid4().hex[:16]}"
    admin.execute(f"CREATE DATABASE {name} TEMPLATE {template_db}")
    yield make_conninfo(server_url, dbname=name)
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def db(db_url: str) -> Iterator[psycopg.Connection[Row]]:
    with connect(db_url) as conn:
        yield conn


@pytest.fixture
def config() -> Config:
    # No background ticks: a test ticks where it means to (reads are exact either way).
    env = {"DATABASE_URL": "set by the test", "USAGEMETER_BATCH_MAX": "20000"}
    return Config.from_env({**env, "USAGEMETER_TICK_SECONDS": "0"})


@pytest.fixture
def client(config: Config, db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(config, db_url)) as c:
        yield c


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """The base URL of a real server (uvicorn in a thread) running app."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "the server did not start"
            time.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_url(config: Config, db_url: str) -> Iterator[str]:
    """The base URL of a real server on the test database."""
    with serving(create_app(config, db_url)) as url:
        yield url


class World:
    """Row factories for one test database."""

    def __init__(self, db: psycopg.Connection[Row]) -> None:
        self.db = db

    def _id(self, sql: str, params: dict[str, Any]) -> Any:
        row = self.db.execute(sql, params).fetchone()
        assert row is not None
        return row["id"]

    def token(
        self, email: str = "owner@example.com", workspace: str | None = "acme", role: str = "owner"
    ) -> str:
        return create_token(
            self.db, email=email, name="", workspace_slug=workspace, role=role, daemon=False
        )

    def daemon_token(self, workspace: str = "acme") -> str:
        return create_token(
            self.db, email=None, name="", workspace_slug=workspace, role="member", daemon=True
        )

    def workspace(self, slug: str = "acme") -> Any:
        return self._id(
            "INSERT INTO workspace (name, slug) VALUES (%(s)s, %(s)s)"
            " ON CONFLICT (slug) DO UPDATE SET slug = excluded.slug RETURNING id",
            {"s": slug},
        )

    def user_id(self, email: str) -> Any:
        return self._id('SELECT id FROM "user" WHERE email = %(e)s', {"e": email})

    def runtime(self, ws: Any, tz: str = "UTC", provider: str = "claude", **cols: Any) -> Any:
        values = {
            "workspace_id": ws,
            "name": "rt",
            "runtime_mode": "local",
            "provider": provider,
            "timezone": tz,
            "daemon_id": uuid.uuid4().hex,
            **cols,
        }
        names = ", ".join(values)
        params = ", ".join(f"%({k})s" for k in values)
        return self._id(
            f"INSERT INTO agent_runtime ({names}) VALUES ({params}) RETURNING id", values
        )

    def agent(self, ws: Any, runtime: Any, name: str | None = None, archived: bool = False) -> Any:
        return self._id(
            "INSERT INTO agent (workspace_id, name, runtime_id, archived_at)"
            " VALUES (%(w)s, %(n)s, %(r)s, CASE WHEN %(a)s THEN now() END) RETURNING id",
            {"w": ws, "n": name or f"agent-{uuid.uuid4().hex[:8]}", "r": runtime, "a": archived},
        )

    def issue(self, ws: Any, title: str = "issue") -> Any:
        return self._id(
            "INSERT INTO issue (workspace_id, title) VALUES (%(w)s, %(t)s) RETURNING id",
            {"w": ws, "t": title},
        )

    def task(
        self,
        agent: Any,
        runtime: Any,
        issue: Any = None,
        started_at: datetime | None = None,
        created_at: datetime | None = None,
    ) -> Any:
        return self._id(
            "INSERT INTO agent_task_queue (agent_id, runtime_id, issue_id, started_at, created_at)"
            " VALUES (%(a)s, %(r)s, %(i)s, %(s)s, coalesce(%(c)s, now())) RETURNING id",
            {"a": agent, "r": runtime, "i": issue, "s": started_at, "c": created_at},
        )

    def usage(
        self,
        task: Any,
        model: str = "claude-sonnet-4-5",
        at: datetime | None = None,
        provider: str = "anthropic",
        tokens: tuple[int, int, int, int] = (100, 10, 0, 0),
        cost: Decimal | None = None,
    ) -> None:
        self.db.execute(
            "INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,"
            " cache_read_tokens, cache_write_tokens, cost_usd, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, coalesce(%s, now()), coalesce(%s, now()))"
            " ON CONFLICT (task_id, provider, model) DO UPDATE SET input_tokens = excluded.input_tokens,"
            " output_tokens = excluded.output_tokens, cache_read_tokens = excluded.cache_read_tokens,"
            " cache_write_tokens = excluded.cache_write_tokens, cost_usd = excluded.cost_usd,"
            " updated_at = now()",
            (task, provider, model, *tokens, cost, at, at),
        )

    def today_utc(self) -> datetime:
        """Midnight UTC of the database's current day."""
        row = self.db.execute("SELECT date_trunc('day', now(), 'UTC') AS d").fetchone()
        assert row is not None
        return row["d"]  # type: ignore[no-any-return]


@pytest.fixture
def world(db: psycopg.Connection[Row]) -> World:
    return World(db)


def price(
    db: psycopg.Connection[Row],
    model: str,
    prices: tuple[str, str, str, str],
    effective_from: str = "2000-01-01",
    workspace_id: Any = None,
    provider: str | None = None,
) -> None:
    """Insert a price entry (USD per million input, output, cache-read, cache-write)."""
    db.execute(
        "INSERT INTO model_price (workspace_id, provider, model, effective_from, input_per_mtok,"
        " output_per_mtok, cache_read_per_mtok, cache_write_per_mtok)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (workspace_id, provider, model, effective_from, *prices),
    )


def exact(response: Any) -> Any:
    """A response body with JSON numbers read as exact decimals."""
    return json.loads(response.text, parse_float=Decimal)


JSON = {"Content-Type": "application/json"}


def auth(token: str, slug: str | None = None) -> dict[str, str]:
    """Request headers for a token (and a workspace slug)."""
    headers = {"Authorization": f"Bearer {token}"}
    if slug:
        headers["X-Workspace-Slug"] = slug
    return headers


def ok(r: Any, status: int = 200) -> Any:
    """The JSON body of a response that has the expected status."""
    assert r.status_code == status, r.text
    return r.json()
