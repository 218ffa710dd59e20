"""pg_cron ticks the rollup where it is loaded (the PostgreSQL 15 pass of scripts/test)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from tests.conftest import World
from usagemeter import rollup
from usagemeter.db import Row, connect
from usagemeter.migrate import migrate


@pytest.fixture
def cron_db(server_url: str, admin: psycopg.Connection[Row]) -> Iterator[str]:
    row = admin.execute("SELECT current_setting('cron.database_name', true) AS name").fetchone()
    name = row["name"] if row else None
    if not name:
        pytest.skip("pg_cron is not loaded on this server")
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(server_url, dbname=name)
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migration_schedules_the_tick_and_pg_cron_runs_it(cron_db: str) -> None:
    with connect(cron_db) as conn:
        migrate(conn)
        jobs = conn.execute("SELECT jobname, schedule, command FROM cron.job").fetchall()
        assert jobs == [
            {"jobname": "usagemeter-rollup", "schedule": "* * * * *", "command": "SELECT rollup()"}
        ]
        w = World(conn)
        ws = w.workspace()
        rid = w.runtime(ws)
        w.usage(w.task(w.agent(ws, rid), rid))
        assert rollup.health(conn)["queue_depth"] == 1
        # pg_cron runs every minute on the minute.
        deadline = time.monotonic() + 90
        while rollup.health(conn)["queue_depth"] and time.monotonic() < deadline:
            time.sleep(0.5)
        details = conn.execute("SELECT status, return_message FROM cron.job_run_details").fetchall()
        assert rollup.health(conn)["queue_depth"] == 0, details
        # pg_cron records the run's end after the tick has committed.
        last = "SELECT status FROM cron.job_run_details ORDER BY runid DESC LIMIT 1"
        while (
            conn.execute(last).fetchone() == {"status": "running"} and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert conn.execute(last).fetchone() == {"status": "succeeded"}


def test_no_schedule_without_pg_cron(db: psycopg.Connection[Row]) -> None:
    row = db.execute("SELECT count(*) AS n FROM pg_extension WHERE extname = 'pg_cron'").fetchone()
    assert row == {"n": 0}
