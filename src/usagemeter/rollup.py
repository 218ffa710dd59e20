"""Running the rollup: the tick loop of `serve`, one-off ticks, backfill and health."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import date
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from usagemeter.db import Row, queries

Q = queries(__file__)
TICK_LIMIT = 10000  # queued changes (days to re-cut, usage rows to rebuild) per tick
# Changes folded between VACUUMs of the queue: every read of it visits the deltas folded and
# not yet vacuumed (under sustained ingest autovacuum, which visits a database once a minute,
# let a million pile up and a report read 840k of them to find 10k), so the ticker vacuums
# it itself, at most once a second.
VACUUM_AFTER = 10000
log = logging.getLogger("usagemeter.rollup")


def tick(conn: psycopg.Connection[Row], limit: int = TICK_LIMIT) -> int | None:
    """One tick in its own transaction: changes folded plus runtime days re-cut plus runtimes
    whose day buckets were rebuilt, or None if another tick ran."""
    row = conn.execute(Q.tick, {"limit": limit}).fetchone()
    assert row is not None
    return row["done"]  # type: ignore[no-any-return]


def drain(conn: psycopg.Connection[Row], limit: int = TICK_LIMIT) -> int:
    """Tick until the queue (but held deltas) and any rebuild are done; the work done, as
    tick() counts it."""
    total = 0
    while True:
        done = tick(conn, limit)
        if done is None:
            time.sleep(0.05)
            continue
        total += done
        state = health(conn)
        if state["queue_depth"] == state["held"] and not any(
            state[k] for k in ("rebuild_keys", "offsets_building", "zones_building")
        ):
            return total


def catch_up(conn: psycopg.Connection[Row]) -> None:
    """Tick while ticks find a full batch of work (a backlog), as the ticker does, unless
    another tick holds the rollup: bounded where drain() is not (new writes keep a queue)."""
    while (done := tick(conn)) is not None and done >= TICK_LIMIT:
        pass


class Vacuum:
    """When the ticker should vacuum the queue: VACUUM_AFTER changes folded and a second
    passed since it last did."""

    def __init__(self) -> None:
        self.folded, self.at = 0, 0.0

    def due(self, done: int) -> bool:
        self.folded += done
        if self.folded < VACUUM_AFTER or time.monotonic() - self.at < 1:
            return False
        self.folded, self.at = 0, time.monotonic()
        return True


def retry_held(conn: psycopg.Connection[Row]) -> int:
    """Release the deltas a tick held (after what failed them is fixed); how many."""
    row = conn.execute(Q.retry_held).fetchone()
    assert row is not None
    return int(row["released"])


def health(conn: psycopg.Connection[Row]) -> Row:
    """Queue depth, oldest pending age, rebuild backlog, last tick."""
    row = conn.execute(Q.health).fetchone()
    assert row is not None
    return row


def backfill_keys(conn: psycopg.Connection[Row], start: date, end: date) -> list[Row]:
    return conn.execute(Q.backfill_keys, {"from": start, "to": end}).fetchall()


def recompute(conn: psycopg.Connection[Row], keys: list[Row]) -> None:
    """Recompute keys in one transaction under the rollup lock."""
    with conn.transaction():
        conn.execute(Q.lock)
        conn.execute(
            Q.recompute,
            {"runtime_ids": [k["runtime_id"] for k in keys], "days": [k["day"] for k in keys]},
        )


def batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def tick_loop(
    pool: AsyncConnectionPool[Any], seconds: float, on_error: Callable[[], object]
) -> None:
    """Tick every `seconds`, forever, and again at once while a tick finds a full batch of
    work (a backlog): the queue never waits on the period (harmless on several replicas:
    one tick at a time). Vacuums the queue as Vacuum says."""
    vacuum = Vacuum()
    while True:
        done = 0
        try:
            async with pool.connection() as conn:
                row = await (await conn.execute(Q.tick, {"limit": TICK_LIMIT})).fetchone()
                done = (row or {}).get("done") or 0
                if vacuum.due(done):
                    await conn.execute(Q.vacuum_queue)
        except Exception:
            on_error()
            log.exception("rollup tick failed")
        if done < TICK_LIMIT:
            await asyncio.sleep(seconds)
