"""What the log readers share: a usage record, the counts of a run, and where logs live.

A reader (claude_logs, codex_logs) turns one file into records and counts what it passed
over; `Run.add` keeps one record per identity across every file of a run (docs/import.md).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any

import jiter

MAX_TOKENS = 10**12  # of one kind in one request, as the ingest API takes


@dataclass(slots=True)
class Record:
    """One request's usage, as a log tells it.

    `key` is the request's identity: the same request found again (a later line of one
    response, a copy in another file, a replay) has the same key, and one record is kept:
    of the candidates of the highest `rank`, the values of the one with the most tokens at
    the earliest time of them all (the request's first line)."""

    key: str
    at: datetime
    session: str
    project: str
    provider: str
    model: str
    input: int
    output: int
    cache_read: int
    cache_write: int
    cache_write_1h: int = 0
    rank: int = 0

    @property
    def tokens(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    @property
    def values(self) -> tuple[int, ...]:
        """Most tokens first; equal totals in a fixed order, whatever the order read."""
        return (self.tokens, self.output, self.input, self.cache_read, self.cache_write_1h)


_fields = attrgetter(*(f.name for f in fields(Record)))


@dataclass
class Run:
    """The records and counts of one import of one source."""

    # Why a record of a key already kept was dropped: why(kept, dropped).
    why: Callable[[Record, Record], str]
    since: datetime | None = None
    files: int = 0
    lines: int = 0
    records: dict[str, Record] = field(default_factory=dict)
    duplicates: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)

    def add(self, record: Record) -> None:
        """Keep `record` unless another of its key ranks higher; count the one dropped."""
        if self.since is not None and record.at < self.since:
            self.skipped["before --since"] += 1
            return
        old = self.records.get(record.key)
        if old is None:
            self.records[record.key] = record
            return
        if record.rank > old.rank:
            self.records[record.key] = record
            old, record = record, old
        elif record.rank == old.rank:
            at = min(old.at, record.at)
            if record.values > old.values:
                self.records[record.key] = record
                old, record = record, old
            old.at = at
        self.duplicates[self.why(old, record)] += 1

    def __getstate__(self) -> tuple[Any, ...]:
        # A worker's run crosses to the importing process: records as plain tuples pickle
        # several times faster than as objects.
        rows = list(map(_fields, self.records.values()))
        return (self.why, self.since, self.files, self.lines, rows, self.duplicates, self.skipped)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.why, self.since, self.files, self.lines, rows, self.duplicates, self.skipped = state
        self.records = {row[0]: Record(*row) for row in rows}

    def merge(self, other: Run) -> None:
        """Add another run's records and counts (the same source, files of their own)."""
        for record in other.records.values():
            self.add(record)
        self.files += other.files
        self.lines += other.lines
        self.duplicates.update(other.duplicates)
        self.skipped.update(other.skipped)


# A log reader: adds a file's records to a run, given every session's parent (forks).
Reader = Callable[[Path, Run, dict[str, str]], None]


def parse(
    read: Reader,
    why: Callable[[Record, Record], str],
    files: list[Path],
    since: datetime | None,
    parents: dict[str, str],
) -> Run:
    """Read files into a run of their own (in a worker process: this module and the reader's
    are all it imports)."""
    run = Run(why=why, since=since)
    for path in files:
        try:
            read(path, run, parents)
        except OSError as e:
            run.skipped[f"file unreadable ({e.strerror})"] += 1
        run.files += 1
    return run


def parse_json(line: bytes, run: Run) -> dict[str, Any] | None:
    """The line's JSON object, or None (counted as skipped) when it is not one."""
    try:
        value = jiter.from_json(line)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        run.skipped["not a JSON object"] += 1
        return None
    return value


def other_line(line: bytes, run: Run) -> None:
    """A line that cannot hold usage is not parsed; one cut short (a write interrupted) is
    counted as skipped all the same."""
    end = line.rstrip()
    if end and not end.endswith(b"}"):
        run.skipped["not a JSON object"] += 1


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time as an aware UTC datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        return None
    return at.astimezone(UTC) if at.tzinfo else None


def count(value: object) -> int | None:
    """A token count: a non-negative integer (None: absent or not one)."""
    return value if type(value) is int and 0 <= value <= MAX_TOKENS else None


def counts(value: object, keys: tuple[str, ...]) -> tuple[int, ...] | None:
    """The token counts of an object's keys (absent: 0); None when one is not a count."""
    if not isinstance(value, dict):
        return None
    found = [count(value.get(k, 0)) for k in keys]
    return None if None in found else tuple(found)  # type: ignore[arg-type]


def lines(path: Path, run: Run) -> list[bytes]:
    """The file's lines (read whole), counted as read."""
    found = path.read_bytes().splitlines()
    run.lines += len(found)
    return found


def jsonl_files(roots: Iterable[Path], run: Run) -> list[Path]:
    """Every .jsonl file under the roots (a root may be a file), sorted, each once; a path
    that is not UTF-8 (the database keeps text) is counted as skipped."""
    found: set[Path] = set()
    for root in roots:
        if root.is_file():
            found.add(root.resolve())
        elif root.is_dir():
            found.update(p.resolve() for p in root.rglob("*.jsonl") if p.is_file())
    named = [p for p in found if str(p).isascii() or _utf8(str(p))]
    if len(named) < len(found):
        run.skipped["file path not UTF-8"] += len(found) - len(named)
    return sorted(named)


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def home_path(path: str) -> str:
    """A path with the home directory written as ~."""
    home = os.path.expanduser("~")
    if home != "/" and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home) :]
    return path


def text(value: object, limit: int = 200) -> str:
    """A string fit for the database (no NUL, at most `limit` characters), else ''."""
    if type(value) is str and len(value) <= limit and "\x00" not in value:
        return value
    return ""
