"""Database access: named SQL queries from .sql files, the embedded server, the pool."""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from usagemeter import embedded
from usagemeter.config import Config

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)

Row = dict[str, Any]
AConn = psycopg.AsyncConnection[Row]


class Queries:
    """The named queries of one .sql file: `-- name: foo` starts query `foo`."""

    def __init__(self, path: Path) -> None:
        parts = _NAME.split(path.read_text())
        names = parts[1::2]
        if len(set(names)) < len(names):
            twice = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{path.name} names a query twice: {', '.join(twice)}")
        self._sql = {name: sql.strip() for name, sql in zip(names, parts[2::2], strict=True)}

    def __getattr__(self, name: str) -> str:
        try:
            return self._sql[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r}") from None


def queries(module_file: str) -> Queries:
    """Load the .sql file that sits beside a module."""
    return Queries(Path(module_file).with_suffix(".sql"))


async def one(conn: AConn, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
    """The first row of a query, or None."""
    return await (await conn.execute(sql, params)).fetchone()


async def many(conn: AConn, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
    """Every row of a query."""
    return await (await conn.execute(sql, params)).fetchall()


def database_url(cfg: Config) -> str:
    """DATABASE_URL if set, else the URL of the embedded server (started on demand)."""
    if cfg.database_url:
        return cfg.database_url
    try:
        return embedded.start(cfg.data_dir)
    except embedded.EmbeddedError as e:
        raise SystemExit(f"cannot start the embedded PostgreSQL: {e}") from None


# Report math never depends on the zone; it only fixes how timestamps are rendered. Dates
# are rendered in ISO form (web.json_query).
# Reports are index reads whose cost estimates (a window of unknown size) can pass
# jit_above_cost, and compiling them took seconds where running them takes milliseconds.
_SESSION = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET jit = off"


def connect(url: str) -> psycopg.Connection[Row]:
    """A synchronous autocommit connection (CLI, migrations, tests)."""
    conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
    conn.execute(_SESSION)
    return conn


def make_pool(
    url: str, max_size: int, statement_timeout: float
) -> AsyncConnectionPool[psycopg.AsyncConnection[Row]]:
    """The server's connection pool (opened by the caller): no statement runs longer than
    statement_timeout seconds. Through an outage: a request waits at most 2 s for a
    connection (then 503), a connection idle for over a second is pinged at checkout and
    replaced if dead rather than handed out, and a failed reconnection is not retried on a
    growing backoff but when the next request asks, so service resumes with the database's
    first accepted connection."""
    session = f"{_SESSION}; SET statement_timeout = {int(statement_timeout * 1000)}"
    returned: weakref.WeakKeyDictionary[psycopg.AsyncConnection[Any], float] = (
        weakref.WeakKeyDictionary()
    )

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(session)

    async def reset(conn: psycopg.AsyncConnection[Any]) -> None:
        returned[conn] = time.monotonic()

    async def check(conn: psycopg.AsyncConnection[Any]) -> None:
        # One back in use within a second has just worked (a round trip per request cost
        # 10-15% of the server's requests/s); one idle longer may have outlived a restart.
        if time.monotonic() - returned.get(conn, 0.0) > 1.0:
            await AsyncConnectionPool.check_connection(conn)

    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        configure=configure,
        reset=reset,
        check=check,
        timeout=2,
        reconnect_timeout=1,
        open=False,
    )
