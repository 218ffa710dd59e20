"""Codex's session logs ("rollouts"): one JSON object per line, in
`$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<session>.jsonl` and `archived_sessions/`.

The first line is the session's `session_meta` (its id, working directory and, for a fork,
`forked_from_id`); a `turn_context` line names the model of the turns after it; an
`event_msg` line of `payload.type` "token_count" carries the session's cumulative counters
(`info.total_token_usage`) and the last request's (`info.last_token_usage`). The rules that
count each request once are in docs/import.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import jiter

from usagemeter.logs import Record, Run, counts, lines, other_line, parse_json, parse_time, text

SOURCE = "import:codex"
PROVIDER = "openai"
# input includes cached input; output includes reasoning output.
COUNTERS = ("input_tokens", "cached_input_tokens", "output_tokens", "reasoning_output_tokens")
Counters = tuple[int, ...]
ZERO: Counters = (0, 0, 0, 0)


def _counters(value: object) -> Counters | None:
    return counts(value, COUNTERS)


def roots() -> list[Path]:
    """sessions/ and archived_sessions/ of CODEX_HOME, by default ~/.codex."""
    home = Path(os.environ.get("CODEX_HOME") or "~/.codex").expanduser()
    return [home / "sessions", home / "archived_sessions"]


def why(kept: Record, dropped: Record) -> str:
    if kept.session != dropped.session:
        return "replayed by a forked session"
    return "copy of a session file"


def parent_of(path: Path) -> tuple[str, str] | None:
    """(session, parent session or '') from the file's first line, its session_meta."""
    try:
        with path.open("rb") as f:
            obj = jiter.from_json(f.readline())
    except (OSError, ValueError):  # unreadable: counted when it is read
        return None
    payload = obj.get("payload") if isinstance(obj, dict) else None
    if not isinstance(obj, dict) or obj.get("type") != "session_meta":
        return None
    if not isinstance(payload, dict) or not (session := text(payload.get("id"))):
        return None
    parent = text(payload.get("forked_from_id"))
    if not parent:  # a sub-agent's thread names the thread that spawned it
        spawn = payload.get("source")
        for step in ("subagent", "thread_spawn", "parent_thread_id"):
            spawn = spawn.get(step) if isinstance(spawn, dict) else None
        parent = text(spawn)
    return session, parent


def lineage(parents: dict[str, str]) -> Callable[[str], str]:
    """The first session of a session's line of forks, as far as the logs tell."""

    def root(session: str) -> str:
        seen = {session}
        while (parent := parents.get(session)) and parent not in seen:
            seen.add(parent)
            session = parent
        return session

    return root


def read(path: Path, run: Run, parents: dict[str, str]) -> None:
    """Add the file's usage records to the run; `parents` tells forks from their first line."""
    root = lineage(parents)
    session = ""
    project = ""
    provider = PROVIDER
    model = ""
    last_total: Counters | None = None
    for line in lines(path, run):
        if not (b'"token_count"' in line or b'"turn_context"' in line or b'"session_meta"' in line):
            other_line(line, run)
            continue
        obj = parse_json(line, run)
        if not isinstance(obj, dict) or not isinstance(payload := obj.get("payload"), dict):
            continue
        kind = obj.get("type")
        if kind == "session_meta":
            if not session:  # a fork's log goes on with its parent's session_meta: not its own
                session = text(payload.get("id"))
                project = text(payload.get("cwd"), 4096)
                provider = text(payload.get("model_provider")) or PROVIDER
        elif kind == "turn_context":
            model = text(payload.get("model")) or model
            project = project or text(payload.get("cwd"), 4096)
        elif kind == "event_msg" and payload.get("type") == "token_count":
            info = payload.get("info")
            if not isinstance(info, dict):
                continue  # rate limits only
            total = _counters(info.get("total_token_usage"))
            at = parse_time(obj.get("timestamp"))
            if total is None:
                run.skipped["token_count without valid counters"] += 1
                continue
            if at is None:
                run.skipped["no valid timestamp"] += 1
                continue
            since, last_total = _base(last_total, total, info.get("last_token_usage")), total
            if since == total:
                run.duplicates["counters repeated unchanged"] += 1
                continue
            spent = tuple(t - s for t, s in zip(total, since, strict=True))
            cached = min(spent[1], spent[0])
            session = session or path.stem[-36:]
            run.add(
                Record(
                    key=f"{root(session)}/{since}/{total}",
                    at=at,
                    session=session,
                    project=project or "unknown",
                    provider=provider,
                    model=model,
                    input=spent[0] - cached,
                    output=spent[2],
                    cache_read=cached,
                    cache_write=0,
                )
            )


def _base(previous: Counters | None, total: Counters, last: object) -> Counters:
    """The counters an event's spending is measured from: the previous event's, unless the
    counters do not go on from them (the first event of a log, a fork's first that already
    holds its parent's, a restart): then the total less what the last request spent."""
    if previous is not None and all(t >= p for t, p in zip(total, previous, strict=True)):
        return previous
    spent = _counters(last)
    if spent is None or any(s > t for s, t in zip(spent, total, strict=True)):
        return ZERO
    return tuple(t - s for t, s in zip(total, spent, strict=True))
