"""`usagemeter demo`: a workspace with realistic usage, so a new user sees numbers at once."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from usagemeter.db import Row, queries

Q = queries(__file__)

# name, provider, zone, [(agent name, [(provider, model), ...]), ...]
RUNTIMES = [
    (
        "mac-studio",
        "claude",
        "America/New_York",
        [
            ("reviewer", [("anthropic", "claude-sonnet-4-5")]),
            ("triager", [("anthropic", "claude-haiku-4-5"), ("anthropic", "claude-sonnet-4-5")]),
        ],
    ),
    (
        "build-box",
        "codex",
        "Asia/Kolkata",
        [
            ("implementer", [("openai", "gpt-5")]),
            ("test-writer", [("openai", "gpt-5-mini"), ("openai", "o3")]),
        ],
    ),
    (
        "berlin-laptop",
        "gemini",
        "Europe/Berlin",
        [
            ("researcher", [("google", "gemini-2.5-pro")]),
            ("docs-writer", [("anthropic", "claude-opus-4-5"), ("google", "gemini-2.5-flash")]),
        ],
    ),
]
ISSUES = [
    "Flaky login test",
    "Migrate billing to v2",
    "Dark mode",
    "Slow dashboard query",
    "Upgrade PostgreSQL",
    "CSV export",
    "Rate limit the API",
    "Onboarding emails",
]
# Share of a day's tasks per local hour: a working day with a lunch dip and a late tail.
RHYTHM = [1, 1, 0, 0, 0, 0, 1, 2, 5, 8, 9, 8, 5, 6, 8, 9, 8, 6, 4, 3, 2, 2, 1, 1]
# Models whose daemon reports the cost itself (USD per million input, output tokens);
# gemini-2.5-flash reports none and has no catalogue price: it shows as unpriced tokens.
REPORTED = {"gemini-2.5-pro": (Decimal("1.25"), Decimal(10))}


def _tokens(rng: random.Random, model: str) -> tuple[int, int, int, int]:
    scale = 0.3 if ("mini" in model or "haiku" in model or "flash" in model) else 1.0
    base = rng.lognormvariate(9.5, 0.8) * scale
    return (
        int(base),
        int(base * rng.uniform(0.1, 0.4)),
        int(base * rng.uniform(2, 12)),
        int(base * rng.uniform(0.1, 0.8)),
    )


def _one(conn: psycopg.Connection[Row], sql: str, params: dict[str, Any]) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row["id"]


def fill(conn: psycopg.Connection[Row], *, slug: str, days: int, seed: int) -> str:
    """Create runtimes, agents, issues, tasks and usage for `days` days; return a summary."""
    rng = random.Random(seed)
    ws = conn.execute(Q.workspace_id, {"slug": slug}).fetchone()
    assert ws is not None, "the workspace is created before it is filled"
    wid = ws["id"]
    if conn.execute(Q.has_runtimes, {"workspace_id": wid}).fetchone() == {"filled": True}:
        return f"workspace {slug!r} already has runtimes; left as it is"
    now = datetime.now(UTC)
    tasks: list[tuple[Any, ...]] = []
    usage: list[tuple[Any, ...]] = []
    with conn.transaction():
        issue_ids = [
            _one(conn, Q.insert_issue, {"workspace_id": wid, "title": t, "number": n})
            for n, t in enumerate(ISSUES, 1)
        ]
        conn.execute(Q.set_issue_counter, {"workspace_id": wid, "number": len(ISSUES)})
        for name, provider, zone, agents in RUNTIMES:
            rid = _one(
                conn,
                Q.insert_runtime,
                {
                    "workspace_id": wid,
                    "daemon_id": f"demo-{name}",
                    "name": name,
                    "provider": provider,
                    "device_info": f"{name} · 1.0.0",
                    "timezone": zone,
                },
            )
            for agent_name, models in agents:
                aid = _one(
                    conn,
                    Q.insert_agent,
                    {"workspace_id": wid, "name": agent_name, "runtime_id": rid},
                )
                _agent_history(
                    rng, now, ZoneInfo(zone), days, aid, rid, issue_ids, models, tasks, usage
                )
        with conn.cursor().copy(Q.copy_tasks) as copy:
            for t in tasks:
                copy.write_row(t)
        with conn.cursor().copy(Q.copy_usage) as copy:
            for u in usage:
                copy.write_row(u)
    return f"workspace {slug!r}: 3 runtimes, 6 agents, {len(tasks)} tasks, {len(usage)} usage rows"


def _reported(model: str, tokens: tuple[int, int, int, int]) -> Decimal | None:
    if model not in REPORTED:
        return None
    per_input, per_output = REPORTED[model]
    return (tokens[0] * per_input + tokens[1] * per_output) / 1_000_000


def _agent_history(
    rng: random.Random,
    now: datetime,
    zone: ZoneInfo,
    days: int,
    agent_id: Any,
    runtime_id: Any,
    issue_ids: list[Any],
    models: list[tuple[str, str]],
    tasks: list[tuple[Any, ...]],
    usage: list[tuple[Any, ...]],
) -> None:
    today = now.astimezone(zone).date()
    for back in range(days, -1, -1):
        day = today - timedelta(days=back)
        weekend = day.weekday() >= 5
        for _ in range(rng.randint(0, 3) if weekend else rng.randint(4, 14)):
            hour = rng.choices(range(24), weights=RHYTHM)[0]
            local = datetime(day.year, day.month, day.day, hour, rng.randrange(60), tzinfo=zone)
            start = local.astimezone(UTC)
            if start > now:
                continue
            end = min(start + timedelta(minutes=rng.uniform(1, 40)), now)
            tid = uuid.uuid4()
            status = "failed" if rng.random() < 0.06 else "completed"
            issue = rng.choice(issue_ids) if rng.random() < 0.7 else None
            tasks.append((tid, agent_id, runtime_id, issue, status, start, end, start))
            for provider, model in rng.sample(models, k=rng.randint(1, len(models))):
                tokens = _tokens(rng, model)
                usage.append((tid, provider, model, *tokens, _reported(model, tokens), end, end))
