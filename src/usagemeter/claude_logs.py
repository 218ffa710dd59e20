"""Claude Code's session logs: one JSON object per line, in
`<config dir>/projects/<project>/<session>.jsonl` and the session's `subagents/*.jsonl`.

An assistant line carries `message.usage` of the API response it belongs to. One response
is written as several lines that share `message.id` (and `requestId` when the API gave
one); the early ones carry a placeholder `output_tokens`. The rules that count each
response once are in docs/import.md.
"""

from __future__ import annotations

import os
from pathlib import Path

from usagemeter.logs import (
    Record,
    Run,
    count,
    counts,
    lines,
    other_line,
    parse_json,
    parse_time,
    text,
)

SOURCE = "import:claude-code"
PROVIDER = "anthropic"
# input_tokens counts neither cache reads nor cache writes.
USAGE = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
SYNTHETIC = "<synthetic>"  # a message Claude Code made up itself: no request, no billing


def roots() -> list[Path]:
    """The projects/ directory of each directory in CLAUDE_CONFIG_DIR (comma-separated), by
    default of ~/.claude and ~/.config/claude."""
    dirs = [d.strip() for d in os.environ.get("CLAUDE_CONFIG_DIR", "").split(",") if d.strip()]
    bases = dirs or ["~/.claude", "~/.config/claude"]
    return [Path(b).expanduser() / "projects" for b in bases]


def why(kept: Record, dropped: Record) -> str:
    if kept.rank != dropped.rank:
        return "sidechain replay of a message"
    if kept.session != dropped.session:
        return "copy in another session"
    return "repeated line of one response"


def _session_of(path: Path) -> str:
    """The session a file belongs to by its place: `<session>.jsonl` or
    `<session>/subagents/<agent>.jsonl`."""
    return path.parent.parent.name if path.parent.name == "subagents" else path.stem


def _project_of(path: Path) -> str:
    """The project directory's name as Claude Code encodes it under projects/."""
    parent = path.parent.parent.parent if path.parent.name == "subagents" else path.parent
    return parent.name


def read(path: Path, run: Run, parents: dict[str, str]) -> None:
    """Add the file's usage records to the run (forks do not concern Claude Code's logs)."""
    file_session = _session_of(path)
    file_project = _project_of(path)
    skipped = run.skipped
    for line in lines(path, run):
        if b'"usage"' not in line:
            other_line(line, run)
            continue
        obj = parse_json(line, run)
        if obj is None:
            continue
        message = obj.get("message")
        if not isinstance(message, dict) or not isinstance(usage := message.get("usage"), dict):
            continue  # a line that mentions usage, not a response's
        model = text(message.get("model"))
        if model == SYNTHETIC:
            skipped["synthetic message (no request)"] += 1
            continue
        message_id = text(message.get("id"))
        at = parse_time(obj.get("timestamp"))
        tokens = counts(usage, USAGE)
        split = usage.get("cache_creation")
        hour = count(split.get("ephemeral_1h_input_tokens", 0)) if isinstance(split, dict) else 0
        if not model:
            skipped["no model"] += 1
        elif not message_id:
            skipped["no message id"] += 1
        elif at is None:
            skipped["no valid timestamp"] += 1
        elif tokens is None or hour is None:
            skipped["token count not a whole number up to 10^12"] += 1
        else:
            session = text(obj.get("sessionId")) or file_session
            # A message id is unique to its response; behind some proxies there is no
            # requestId and the id is unique within its session only.
            key = message_id if text(obj.get("requestId")) else f"{session}/{message_id}"
            project = text(obj.get("cwd"), 4096) or file_project
            rank = 0 if obj.get("isSidechain") is True else 1
            input_, output, cache_read, cache_write = tokens
            run.add(
                Record(
                    key,
                    at,
                    session,
                    project,
                    PROVIDER,
                    model,
                    input_,
                    output,
                    cache_read,
                    cache_write,
                    min(hour, cache_write),
                    rank,
                )
            )
