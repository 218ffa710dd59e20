"""Agent CLI logs written as Claude Code and Codex write them (in shape; the values are ours),
for the import's tests and benchmark."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def claude_line(
    message_id: str,
    at: datetime,
    *,
    request_id: str | None = "req",
    session: str = "sess-1",
    cwd: str = "/home/dev/app",
    model: str = "claude-sonnet-4-5",
    tokens: tuple[int, int, int, int] = (10, 100, 1000, 200),
    hour_writes: int | None = None,
    sidechain: bool = False,
) -> str:
    """An assistant line of one API response: (input, output, cache read, cache write)."""
    usage: dict[str, Any] = {
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cache_read_input_tokens": tokens[2],
        "cache_creation_input_tokens": tokens[3],
        "service_tier": "standard",
    }
    if hour_writes is not None:
        usage["cache_creation"] = {
            "ephemeral_5m_input_tokens": tokens[3] - hour_writes,
            "ephemeral_1h_input_tokens": hour_writes,
        }
    line: dict[str, Any] = {
        "parentUuid": None,
        "isSidechain": sidechain,
        "userType": "external",
        "cwd": cwd,
        "sessionId": session,
        "version": "2.0.30",
        "type": "assistant",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": "Done: the tests pass."}],
            "usage": usage,
        },
        "uuid": f"u-{message_id}-{tokens[1]}",
        "timestamp": iso(at),
    }
    if request_id is not None:
        line["requestId"] = request_id
    return json.dumps(line)


def claude_user_line(at: datetime, session: str = "sess-1", text: str = "fix the tests") -> str:
    return json.dumps(
        {
            "type": "user",
            "sessionId": session,
            "cwd": "/home/dev/app",
            "message": {"role": "user", "content": text},
            "timestamp": iso(at),
        }
    )


def codex_meta(session: str, at: datetime, cwd: str = "/home/dev/api", **more: Any) -> str:
    payload = {"id": session, "timestamp": iso(at), "cwd": cwd, "originator": "codex_cli_rs"}
    payload |= {"cli_version": "0.50.0", "model_provider": "openai", **more}
    return json.dumps({"timestamp": iso(at), "type": "session_meta", "payload": payload})


def codex_turn(at: datetime, model: str = "gpt-5", cwd: str = "/home/dev/api") -> str:
    payload = {"cwd": cwd, "approval_policy": "on-request", "model": model, "effort": "medium"}
    return json.dumps({"timestamp": iso(at), "type": "turn_context", "payload": payload})


def codex_counters(total: tuple[int, int, int, int], last: tuple[int, int, int, int]) -> Any:
    def usage(v: tuple[int, int, int, int]) -> dict[str, int]:
        return {
            "input_tokens": v[0],
            "cached_input_tokens": v[1],
            "output_tokens": v[2],
            "reasoning_output_tokens": v[3],
            "total_tokens": v[0] + v[2],
        }

    return {"total_token_usage": usage(total), "last_token_usage": usage(last)}


def codex_tokens(
    at: datetime, total: tuple[int, int, int, int], last: tuple[int, int, int, int]
) -> str:
    """A token_count event: cumulative (input incl. cached, cached, output, reasoning) and
    the last request's."""
    payload = {"type": "token_count", "info": codex_counters(total, last), "rate_limits": None}
    return json.dumps({"timestamp": iso(at), "type": "event_msg", "payload": payload})


def write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def claude_history(root: Path, lines: int, seed: int = 1, days: int = 90) -> int:
    """A Claude Code projects/ tree of about `lines` lines: sessions in a few projects, each
    response written as 1-3 lines, user and tool lines between; returns the lines written."""
    rng = random.Random(seed)
    end = datetime(2026, 11, 30, tzinfo=UTC)
    written = 0
    n = 0
    while written < lines:
        n += 1
        project = f"/home/dev/project-{n % 7}"
        session = f"sess-{seed}-{n}"
        at = end - timedelta(days=rng.uniform(0, days))
        out = []
        for _ in range(rng.randint(20, 400)):
            at += timedelta(seconds=rng.uniform(2, 90))
            out.append(claude_user_line(at, session, "x" * rng.randint(20, 600)))
            mid = f"msg_{seed}_{n}_{len(out)}"
            tokens = (rng.randint(1, 50), rng.randint(1, 3000), rng.randint(0, 90_000), 0)
            tokens = (*tokens[:3], rng.randint(0, 5000))
            model = "claude-sonnet-4-5" if rng.random() < 0.8 else "claude-haiku-4-5"
            repeats = rng.randint(1, 3)
            for k in range(repeats):  # the last line carries the final output_tokens
                placeholder = (tokens[0], 1, *tokens[2:]) if k < repeats - 1 else tokens
                out.append(
                    claude_line(
                        mid,
                        at + timedelta(milliseconds=300 * k),
                        request_id=f"req_{mid}",
                        session=session,
                        cwd=project,
                        model=model,
                        tokens=placeholder,
                    )
                )
        name = f"-home-dev-project-{n % 7}"
        write(root / name / f"{session}.jsonl", out)
        written += len(out)
    return written


def codex_history(root: Path, lines: int, seed: int = 1, days: int = 90) -> int:
    """A Codex sessions/ tree of about `lines` lines: sessions of turns, each with messages,
    tool calls and token_count events (every other one re-emitted unchanged)."""
    rng = random.Random(seed)
    end = datetime(2026, 11, 30, tzinfo=UTC)
    written = 0
    n = 0
    while written < lines:
        n += 1
        session = f"00000000-0000-4000-8000-{seed:04d}{n:08d}"
        at = end - timedelta(days=rng.uniform(0, days))
        cwd = f"/home/dev/service-{n % 5}"
        out = [codex_meta(session, at, cwd=cwd)]
        total = (0, 0, 0, 0)
        for _ in range(rng.randint(5, 80)):
            at += timedelta(seconds=rng.uniform(5, 120))
            out.append(
                codex_turn(at, model="gpt-5" if rng.random() < 0.7 else "gpt-5-mini", cwd=cwd)
            )
            for _ in range(rng.randint(1, 6)):
                at += timedelta(seconds=rng.uniform(1, 30))
                item = {
                    "type": "function_call",
                    "name": "shell",
                    "arguments": "x" * rng.randint(20, 400),
                }
                out.append(
                    json.dumps({"timestamp": iso(at), "type": "response_item", "payload": item})
                )
                cached = rng.randint(0, min(total[0], 150_000))
                last = (cached + rng.randint(100, 20_000), cached, rng.randint(10, 3000), 0)
                last = (*last[:3], rng.randint(0, last[2]))
                total = (
                    total[0] + last[0],
                    total[1] + last[1],
                    total[2] + last[2],
                    total[3] + last[3],
                )
                out.append(codex_tokens(at, total, last))
                if rng.random() < 0.5:
                    out.append(codex_tokens(at, total, last))
        day = at.strftime("%Y/%m/%d")
        write(root / day / f"rollout-{at.strftime('%Y-%m-%dT%H-%M-%S')}-{session}.jsonl", out)
        written += len(out)
    return written
