"""The command line, migrations and the OpenAPI document."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tests.conftest import World, auth
from usagemeter import __version__, rollup
from usagemeter.app import ROUTES
from usagemeter.cli import app
from usagemeter.db import Row

runner = CliRunner()


@pytest.fixture
def env(db_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DATABASE_URL", db_url)
    return db_url


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["migrate"],
        ["token"],
        ["token", "create"],
        ["demo"],
        ["status"],
        ["prices"],
        ["prices", "list"],
        ["prices", "set"],
        ["prices", "remove"],
    ],
)
def test_help(args: list[str]) -> None:
    r = runner.invoke(app, [*args, "--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_token_create(env: str, client: TestClient, db: psycopg.Connection[Row]) -> None:
    r = runner.invoke(
        app, ["token", "create", "--email", "a@example.com", "--workspace", "w1", "--role", "admin"]
    )
    assert r.exit_code == 0
    token = r.output.strip().splitlines()[-1]
    assert token.startswith("mul_")
    assert client.get("/api/workspaces", headers=auth(token)).json()[0]["role"] == "admin"
    r = runner.invoke(
        app,
        ["token", "create", "--email", "a@example.com", "--workspace", "w1", "--role", "member"],
    )
    assert client.get("/api/workspaces", headers=auth(token)).json()[0]["role"] == "member"
    r = runner.invoke(app, ["token", "create", "--daemon", "--workspace", "w1"])
    daemon = r.output.strip().splitlines()[-1]
    assert daemon.startswith("mdt_")
    assert client.get("/api/runtimes", headers=auth(daemon, "w1")).status_code == 200
    assert runner.invoke(app, ["token", "create", "--daemon"]).exit_code != 0
    assert (
        runner.invoke(
            app, ["token", "create", "--email", "b@example.com", "--role", "king"]
        ).exit_code
        != 0
    )


def test_demo_and_status(env: str, client: TestClient) -> None:
    r = runner.invoke(app, ["demo", "--days", "10"])
    assert r.exit_code == 0, r.output
    token = r.output.strip().splitlines()[-1]
    assert "open http://127.0.0.1:8080/ and sign in with" in " ".join(r.output.split())
    h = auth(token, "demo")
    runtimes = client.get("/api/runtimes", headers=h).json()
    assert {rt["timezone"] for rt in runtimes} == {
        "America/New_York",
        "Asia/Kolkata",
        "Europe/Berlin",
    }
    summary = client.get("/api/usage/summary", headers=h).json()
    assert len(summary) >= 5 and all(row["total_input_tokens"] > 0 for row in summary)
    # Catalogue prices and reported costs price every model but gemini-2.5-flash.
    assert all((row["cost_usd"] > 0) != (row["model"] == "gemini-2.5-flash") for row in summary)
    assert all(
        (row["unpriced_tokens"] > 0) == (row["model"] == "gemini-2.5-flash") for row in summary
    )
    again = runner.invoke(app, ["demo"])
    assert again.exit_code == 0 and "already has runtimes" in again.output
    assert client.get("/api/usage/summary", headers=h).json() == summary
    status = runner.invoke(app, ["status"])
    assert (
        status.exit_code == 0
        and "usage rows" in status.output
        and "pending migrations  none" in status.output
    )


def test_openapi_lists_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert {(r.method, r.path) for r in ROUTES} <= documented
    assert len(ROUTES) >= 34


def test_readme_documents_every_setting_and_the_test_command() -> None:
    from pathlib import Path

    from usagemeter.config import SETTINGS

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert all(f"`{s.env}`" in readme for s in SETTINGS)
    assert "./scripts/test" in readme.split("\n\n")[1] and "./scripts/test" in ci


def test_prices_set_list_remove(env: str, client: TestClient, db: psycopg.Connection[Row]) -> None:
    token = runner.invoke(app, ["token", "create", "--email", "a@x.io", "--workspace", "w1"])
    assert token.exit_code == 0, token.output
    h = auth(token.output.strip().splitlines()[-1], "w1")
    args = ["prices", "set", "new-model", "--input", "1.5", "--output", "6", "--cache-read", "0.15"]
    r = runner.invoke(app, [*args, "--cache-write", "1.875", "--from", "2026-02-01"])
    assert r.exit_code == 0 and "new-model" in r.output, r.output
    r = runner.invoke(app, [*args, "--cache-write", "2", "--workspace", "w1", "--provider", "p"])
    assert r.exit_code == 0, r.output
    listed = client.get("/api/pricing?model=new-model", headers=h).json()
    assert [(p["scope"], p["provider"], p["cache_write_per_mtok"]) for p in listed] == [
        ("global", None, 1.875),
        ("workspace", "p", 2),
    ]
    r = runner.invoke(app, ["prices", "list", "--model", "new-model"])
    assert r.exit_code == 0 and "1.875" in r.output and "workspace" not in r.output
    r = runner.invoke(app, ["prices", "remove", "new-model", "--from", "2026-02-01"])
    assert r.exit_code == 0 and "removed" in r.output
    r = runner.invoke(app, ["prices", "remove", "new-model", "--from", "2026-02-01"])
    assert r.exit_code == 1 and "no such price entry" in r.output
    assert len(client.get("/api/pricing?model=new-model", headers=h).json()) == 1
    for bad in (["--input", "abc"], ["--input", "-1"], ["--input", "0.00001"], ["--from", "x"]):
        r = runner.invoke(app, [*args, "--cache-write", "1", *bad])
        assert r.exit_code == 2, (bad, r.output)
    r = runner.invoke(app, [*args, "--cache-write", "1", "--workspace", "nope"])
    assert r.exit_code == 2 and "no workspace" in r.output


def test_version() -> None:
    r = runner.invoke(app, ["--version"])
    assert (r.exit_code, r.output.strip()) == (0, f"usagemeter {__version__}")


def test_serve_help_names_its_settings() -> None:
    r = runner.invoke(app, ["serve", "--help"])
    assert "USAGEMETER_HOST" in r.output and "USAGEMETER_PORT" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "create", "--daemon", "--workspace", "Bad_Slug"], "invalid slug"),
        (["token", "create", "--email", "a@example.com", "--workspace", "x" * 64], "invalid slug"),
        (["demo", "--workspace", "Bad_Slug"], "invalid slug"),
        (["demo", "--days", "-3"], "--days"),
        (["demo", "--days", "366"], "--days"),
        (["rollup", "--loop", "--every", "0"], "--every"),
        (["rollup", "--loop", "--every", "-1"], "--every"),
    ],
)
def test_the_cli_refuses_what_the_api_refuses(
    env: str, db: psycopg.Connection[Row], args: list[str], message: str
) -> None:
    r = runner.invoke(app, args)
    assert r.exit_code == 2 and message in r.output, r.output
    assert db.execute("SELECT count(*) AS n FROM workspace").fetchone() == {"n": 0}


def test_rollup_loop_outlives_a_lost_connection(db_url: str, world: World) -> None:
    usagemeter = Path(sys.executable).with_name("usagemeter")
    env = {**os.environ, "DATABASE_URL": db_url}
    loop = subprocess.Popen(
        [usagemeter, "rollup", "--loop", "--every", "0.1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ws = world.workspace()
        rt = world.runtime(ws)
        agent = world.agent(ws, rt)

        def drained() -> bool:
            deadline = time.monotonic() + 30
            while rollup.health(world.db)["queue_depth"] and time.monotonic() < deadline:
                assert loop.poll() is None, "the loop exited"
                time.sleep(0.1)
            return bool(rollup.health(world.db)["queue_depth"] == 0)

        world.usage(world.task(agent, rt))
        assert drained()  # the loop is connected and ticking
        world.db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        world.usage(world.task(agent, rt), model="after")
        assert drained()
    finally:
        loop.terminate()
        _, stderr = loop.communicate(timeout=10)
    assert "rollup: database unavailable" in stderr and "retrying" in stderr


def test_serve_with_workers_answers_from_several_processes_and_ticks_one_at_a_time(
    db_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    import socket

    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "USAGEMETER_PORT": str(port),
        "USAGEMETER_TICK_SECONDS": "0.2",
    }
    cmd = [sys.executable, "-m", "usagemeter.cli", "serve", "--workers", "2"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
            try:
                if requests.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        commands = [Path(f"/proc/{c}/cmdline").read_bytes() for c in children]
        assert sum(b"spawn_main" in c for c in commands) == 2  # workers under a supervisor
        token = world.token()
        ws = world.workspace()
        rt = world.runtime(ws)
        world.usage(world.task(world.agent(ws, rt), rt), tokens=(7, 0, 0, 0))
        h = auth(token, "acme")
        answers = [
            requests.get(f"{base}/api/usage/summary", headers=h, timeout=5) for _ in range(40)
        ]
        assert {r.status_code for r in answers} == {200}
        assert {r.json()[0]["total_input_tokens"] for r in answers} == {7}
        while db.execute("SELECT count(*) AS n FROM usage_dirty").fetchone() != {"n": 0}:
            assert time.monotonic() < deadline, "no process ticked"
            time.sleep(0.1)
        assert db.execute("SELECT sum(input_tokens) AS n FROM usage_rollup").fetchone() == {"n": 7}
    finally:
        server.terminate()
        server.wait(20)
