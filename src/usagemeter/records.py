"""Writing the usage records of the agent CLIs' own accounts: log files imported
(imports.py) and OpenTelemetry received (otlp.py).

Each record is one request: one completed task and one usage row at the request's time,
under a task id fixed by the record's identity, so that writing it again changes nothing.
INVARIANT: a session is counted from one source only, the highest that has seen it: a daemon,
then OpenTelemetry log events, then OpenTelemetry metrics, then an imported log
(docs/otlp.md). `write` is that rule, written once and run on a connection of either kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from usagemeter.db import AConn, Row, queries

Q = queries(__file__)

# The runtime provider of each agent CLI that both the importer and OpenTelemetry see: its
# usage lands on one runtime per machine and CLI, whichever way it comes.
CLI_PROVIDERS = {"claude-code": "claude", "codex": "codex"}

# Sources from the lowest to the highest; a daemon (source NULL) is above them all.
RANKS: tuple[tuple[str, ...], ...] = (
    ("import:claude-code", "import:codex"),
    ("otlp:metric",),
    ("otlp:log",),
)


def agent_name(project: str, cli: str, machine: str) -> str:
    """An agent per project directory, agent CLI and machine, in at most 200 characters."""
    suffix = f" ({cli[:40]}, {machine[:80]})"
    room = 200 - len(suffix)
    if len(project) > room:
        project = "…" + project[-(room - 1) :]
    return project + suffix


def _rank(source: str) -> int:
    return next(i for i, tier in enumerate(RANKS) if source in tier)


def higher(source: str) -> list[str]:
    return [s for tier in RANKS[_rank(source) + 1 :] for s in tier]


def lower(source: str) -> list[str]:
    return [s for tier in RANKS[: _rank(source)] for s in tier]


@dataclass(frozen=True)
class Copy:
    """A step that COPYs rows into the staging table."""

    rows: list[tuple[Any, ...]]


Step = tuple[str | bytes, dict[str, Any] | None] | Copy
Steps = Generator[Step, list[Row], Counter[str]]


# The columns of a record, in the order of its tuple (and of records.sql: copy_staging), and
# their types.
COLUMNS = (
    "key",
    "runtime_id",
    "agent_id",
    "session_id",
    "at",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "estimated_cost_usd",
)
SESSION = COLUMNS.index("session_id")
TYPES = ["text", "uuid", "uuid", "text", "timestamptz", "text", "text", *["int8"] * 5, "numeric"]


def write(rows: list[tuple[Any, ...]], workspace_id: UUID, source: str, grow: bool) -> Steps:
    """The statements that write records of one source (tuples of COLUMNS) in the caller's
    transaction. With `grow`, a record written before takes more tokens or an earlier time
    (a log's), and the answer says what changed (write_usage's columns); without, a record
    is the same whenever it comes again (OpenTelemetry's) and only new ones are written.
    The answer's `outranked`: the records of sessions a higher source counts, not written."""
    params: dict[str, Any] = {"workspace_id": workspace_id, "source": source}
    sessions = sorted({row[SESSION] for row in rows if row[SESSION] is not None})
    below = lower(source)
    new: list[str] = []
    if below and sessions:  # sessions this source has not counted yet take over from below
        seen = yield Q.sessions_with, {**params, "sessions": sessions, "sources": [source],
                                       "daemon": False}  # fmt: skip
        known = {r["session_id"] for r in seen}
        new = [s for s in sessions if s not in known]
    yield (Q.lock_alone if new else Q.lock_shared), params
    done: Counter[str] = Counter()
    if sessions:
        above = {**params, "sessions": sessions, "sources": higher(source), "daemon": True}
        outranked = {r["session_id"] for r in (yield Q.sessions_with, above)}
        if outranked:
            kept = [row for row in rows if row[SESSION] not in outranked]
            done["outranked"] = len(rows) - len(kept)
            rows = kept
            new = [s for s in new if s not in outranked]
    if new:
        yield Q.drop_sessions, {**params, "sessions": new, "sources": below}
    if not rows:
        return done
    yield Q.create_staging.encode(), None
    yield Copy(rows)
    if not grow:
        yield Q.insert_tasks, params
        yield Q.insert_usage, params
        return done
    yield Q.write_tasks, params
    (summary,) = yield Q.write_usage, params
    done.update({k: int(v) for k, v in summary.items()})
    return done


def run(conn: psycopg.Connection[Row], steps: Steps) -> Counter[str]:
    """Run the steps on a synchronous connection."""
    step = next(steps)
    while True:
        if isinstance(step, Copy):
            with conn.cursor().copy(Q.copy_staging) as copy:
                copy.set_types(TYPES)
                for row in step.rows:
                    copy.write_row(row)
            result = []
        else:
            cur = conn.execute(*step)
            result = cur.fetchall() if cur.description else []
        try:
            step = steps.send(result)
        except StopIteration as stop:
            done: Counter[str] = stop.value
            return done


async def arun(conn: AConn, steps: Steps) -> Counter[str]:
    """Run the steps on an asynchronous connection."""
    step = next(steps)
    while True:
        if isinstance(step, Copy):
            async with conn.cursor().copy(Q.copy_staging) as copy:
                copy.set_types(TYPES)
                for row in step.rows:
                    await copy.write_row(row)
            result = []
        else:
            cur = await conn.execute(*step)
            result = await cur.fetchall() if cur.description else []
        try:
            step = steps.send(result)
        except StopIteration as stop:
            done: Counter[str] = stop.value
            return done
