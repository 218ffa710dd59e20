"""The embedded PostgreSQL (embedded.py): stopped by the last usagemeter process to exit,
however it exits, and nothing outside the data dir changes permissions."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import embedded_data_dir
from usagemeter.app import create_app
from usagemeter.config import Config
from usagemeter.db import connect
from usagemeter.embedded import Embedded, EmbeddedError, _wheel_install
from usagemeter.migrate import migrate


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = embedded_data_dir()
    yield base
    Embedded(base).release()
    shutil.rmtree(base)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(data_dir: Path) -> subprocess.Popen[bytes]:
    """`usagemeter serve` on the embedded server of data_dir, once it answers."""
    port = _free_port()
    env = {
        **os.environ,
        "USAGEMETER_DATA_DIR": str(data_dir),
        "USAGEMETER_PORT": str(port),
        "DATABASE_URL": "",
    }
    usagemeter = Path(sys.executable).with_name("usagemeter")
    proc = subprocess.Popen([usagemeter, "serve"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                assert r.status == 200
                return proc
        except OSError:
            assert proc.poll() is None, "usagemeter serve exited"
            assert time.monotonic() < deadline, "usagemeter serve did not answer"
            time.sleep(0.2)


def postgres_running(data_dir: Path) -> bool:
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(proc: subprocess.Popen[bytes], sig: int) -> None:
    proc.send_signal(sig)
    assert proc.wait(30) in (0, -sig, 128 + sig)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_last_server_to_exit_stops_postgres(data_dir: Path, sig: int) -> None:
    first, second = serve(data_dir), serve(data_dir)
    assert postgres_running(data_dir)
    stop(first, sig)
    assert postgres_running(data_dir)  # the second still uses it
    stop(second, sig)
    assert not postgres_running(data_dir)


def test_a_killed_user_does_not_keep_postgres_up(data_dir: Path) -> None:
    killed, other = serve(data_dir), serve(data_dir)
    killed.kill()  # exits without a word: its pid stays in the list
    killed.wait(10)
    stop(other, signal.SIGTERM)
    assert not postgres_running(data_dir)
    again = serve(data_dir)  # and it starts again on the same data
    stop(again, signal.SIGTERM)
    assert not postgres_running(data_dir)


def _modes(path: Path) -> dict[Path, int]:
    return {p: p.stat().st_mode for p in [path, *path.parents]}


@pytest.mark.skipif(os.geteuid() != 0, reason="the permission rules concern root")
def test_as_root_nothing_outside_the_data_dir_changes_permissions(data_dir: Path) -> None:
    data_dir.chmod(0o711)  # the test's own directory holds one open and one closed
    closed = data_dir / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    before = {**_modes(closed), **_modes(_wheel_install() / "bin" / "postgres")}
    with pytest.raises(EmbeddedError, match=r"cannot reach .*/closed/data"):
        Embedded(closed / "data").start()
    server = Embedded(data_dir / "open")
    url = server.start()
    assert url.startswith("postgresql://postgres@/postgres?host=")
    after = {**_modes(closed), **_modes(_wheel_install() / "bin" / "postgres")}
    assert after == before
    assert (closed.stat().st_mode & 0o777) == 0o700
    assert (data_dir / "open" / "pgdata").stat().st_uid != 0  # PostgreSQL's own user
    server.release()
    assert not postgres_running(data_dir / "open")


@pytest.mark.skipif(os.geteuid() != 0, reason="the permission rules concern root")
def test_a_data_dir_postgres_cannot_reach_is_refused_with_the_reason(data_dir: Path) -> None:
    closed = data_dir / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    usagemeter = Path(sys.executable).with_name("usagemeter")
    env = {**os.environ, "USAGEMETER_DATA_DIR": str(closed / "data"), "DATABASE_URL": ""}
    r = subprocess.run([usagemeter, "migrate"], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("cannot start the embedded PostgreSQL: as root"), r.stderr
    assert (closed.stat().st_mode & 0o777) == 0o700


def test_an_outage_answers_503_at_once_and_service_resumes_with_the_database(
    data_dir: Path,
) -> None:
    # A server on its own PostgreSQL, which is stopped and started again under it.
    server = Embedded(data_dir)
    url = server.start()
    with connect(url) as conn:
        migrate(conn)
    config = Config.from_env({"DATABASE_URL": "set", "USAGEMETER_TICK_SECONDS": "0"})
    with TestClient(create_app(config, url)) as client:
        assert client.get("/readyz").json() == {"status": "ready"}
        server.release()  # the last user: PostgreSQL stops
        assert not postgres_running(data_dir)
        for path in ("/readyz", "/api/workspaces", "/api/workspaces"):
            started = time.monotonic()
            r = client.get(path, headers={"Authorization": "Bearer mul_" + "0" * 40})
            assert (r.status_code, r.json()) == (503, {"error": "database unavailable"}), path
            assert r.headers["retry-after"] == "1"
            assert time.monotonic() - started < 3
        assert client.get("/healthz").status_code == 200  # the process itself is alive
        server.start()
        back = time.monotonic()
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() - back < 1, "not serving a second after the database"
            time.sleep(0.05)
        print(f"\nserving again {time.monotonic() - back:.2f} s after the database")
        r = client.get("/api/workspaces", headers={"Authorization": "Bearer mul_" + "0" * 40})
        assert (r.status_code, r.json()) == (401, {"error": "invalid token"})
