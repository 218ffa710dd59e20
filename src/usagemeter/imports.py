"""`usagemeter import`: the usage in Claude Code's and Codex's own logs, counted exactly once.

Each request a log records becomes one completed task with one usage row, at the request's
time, on the machine's runtime for that agent CLI and the agent of its project directory
(docs/import.md). Task ids are fixed by the request's identity, so importing again writes
nothing but what is new; a file unchanged since its last import is not read again.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from usagemeter import claude_logs, codex_logs, records, rollup
from usagemeter.db import Row, connect, queries
from usagemeter.logs import Reader, Record, Run, home_path, jsonl_files, parse

Q = queries(__file__)
CHUNK = 10_000  # records per transaction
PARSE_BATCH = 8 << 20  # bytes of logs a worker reads at a time
WORKERS = min(4, os.cpu_count() or 1)  # processes reading, connections writing
DEFAULT_WORKSPACE = "personal"


@dataclass(frozen=True)
class Source:
    name: str  # as on the command line
    tag: str  # agent_task_queue.source
    label: str
    read: Reader
    why: Callable[[Record, Record], str]  # why a duplicate was dropped
    roots: Callable[[], list[Path]]  # where the agent CLI keeps its logs by default
    # (session, parent session) from a log's first line, for CLIs whose sessions fork
    parent_of: Callable[[Path], tuple[str, str] | None] | None = None


CLAUDE_CODE = Source(
    "claude-code",
    claude_logs.SOURCE,
    "Claude Code",
    claude_logs.read,
    claude_logs.why,
    claude_logs.roots,
)
CODEX = Source(
    "codex",
    codex_logs.SOURCE,
    "Codex",
    codex_logs.read,
    codex_logs.why,
    codex_logs.roots,
    codex_logs.parent_of,
)


@dataclass
class Summary:
    """What an import found and wrote."""

    source: Source
    run: Run
    files_unchanged: int = 0
    reported_live: int = 0  # records of sessions a daemon or OpenTelemetry counts
    new: int = 0
    grown: int = 0
    tokens: int = 0
    cost: Decimal = Decimal(0)
    unpriced_tokens: int = 0
    workspace: str = ""


def machine_zone() -> str:
    """This machine's IANA zone (TZ, /etc/localtime, /etc/timezone), else UTC."""
    candidates = [os.environ.get("TZ", "").lstrip(":")]
    with suppress(OSError):
        candidates.append(os.readlink("/etc/localtime").partition("zoneinfo/")[2])
    with suppress(OSError):
        candidates.append(Path("/etc/timezone").read_text().strip())
    for name in filter(None, candidates):
        try:
            ZoneInfo(name)
        except (ValueError, OSError):
            continue
        return name
    return "UTC"


def batches(files: list[Path], sizes: list[int], size: int) -> Iterator[tuple[list[Path], int]]:
    """Files in batches of about `size` bytes: (files, bytes)."""
    batch: list[Path] = []
    total = 0
    for path, n in zip(files, sizes, strict=True):
        batch.append(path)
        total += n
        if total >= size:
            yield batch, total
            batch, total = [], 0
    if batch:
        yield batch, total


def read_logs(
    summary: Summary, files: list[Path], sizes: list[int], every: list[Path], progress: Progress
) -> None:
    """Read the files (of these sizes) into the summary's run, in worker processes when there
    is much to read, with a progress bar over their bytes."""
    source, run = summary.source, summary.run
    what = f"{source.label}: reading {len(files):,} files, {sum(sizes) / 1e6:,.1f} MB"
    bar = progress.add_task(what, total=sum(sizes))
    # Forks are told by the first line of every log, read or not.
    parents = dict(filter(None, map(source.parent_of, every))) if source.parent_of else {}
    work = list(batches(files, sizes, PARSE_BATCH))
    if len(work) < 2 or WORKERS < 2:
        for batch, n in work:
            run.merge(parse(source.read, source.why, batch, run.since, parents))
            progress.advance(bar, n)
        return
    # spawn: a forked worker would share the parent's database connections
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        jobs = {
            pool.submit(parse, source.read, source.why, b, run.since, parents): n for b, n in work
        }
        for job in as_completed(jobs):
            run.merge(job.result())
            progress.advance(bar, jobs[job])


def run_import(
    url: str,
    source: Source,
    paths: list[Path],
    *,
    workspace: str,
    since: datetime | None,
    dry_run: bool,
    console: Console,
) -> Summary:
    """Import the logs under `paths` into the workspace (created when missing); with
    dry_run, do all of it in one transaction and roll it back."""
    summary = Summary(source, Run(why=source.why, since=since), workspace=workspace)
    with connect(url) as conn:
        if not dry_run:
            _import(conn, summary, jsonl_files(paths, summary.run), console, url)
            return summary
        with conn.transaction(force_rollback=True):
            _import(conn, summary, jsonl_files(paths, summary.run), console, None)
    return summary


def _import(
    conn: psycopg.Connection[Row],
    summary: Summary,
    every: list[Path],
    console: Console,
    url: str | None,
) -> None:
    source, run = summary.source, summary.run
    host = socket.gethostname() or "localhost"
    ws = conn.execute(Q.workspace_id, {"slug": summary.workspace}).fetchone()
    if ws is None:
        ws = conn.execute(
            Q.create_workspace, {"slug": summary.workspace, "name": summary.workspace.title()}
        ).fetchone()
    assert ws is not None
    wid = ws["id"]
    known = {
        r["path"]: (r["size"], r["mtime_ns"])
        for r in conn.execute(Q.files_imported, {"workspace_id": wid, "source": source.tag})
    }
    stamps = {p: stamp for p in every if (stamp := _stamp(p))}
    every = list(stamps)  # less any file gone since it was listed
    changed = [p for p in every if known.get(str(p)) != stamps[p]]
    summary.files_unchanged = len(every) - len(changed)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        read_logs(summary, changed, [stamps[p][0] for p in changed], every, progress)
        rid = _made(
            conn,
            records.Q.runtime,
            {
                "workspace_id": wid,
                "daemon_id": f"host:{host}",
                "name": host,
                "provider": records.CLI_PROVIDERS[source.name],
                "device_info": f"{source.label} logs",
                "source": source.tag,
                "timezone": machine_zone(),
                "email": None,
            },
        )["id"]
        found = sorted(run.records.values(), key=lambda r: r.at)
        agents = _agents(conn, wid, rid, source, host, {r.project for r in found})
        bar = progress.add_task(f"{source.label}: writing {len(found):,} records", total=len(found))
        writer = Writer(f"{wid}/{source.tag}/", wid, rid, source.tag, agents)

        def write(conn: psycopg.Connection[Row], chunks: Iterable[list[Record]]) -> Counter[str]:
            done: Counter[str] = Counter()
            for chunk in chunks:
                with conn.transaction():
                    done.update(writer.write(conn, chunk))
                progress.advance(bar, len(chunk))
            return done

        chunks = [found[i : i + CHUNK] for i in range(0, len(found), CHUNK)]
        if url is None or WORKERS < 2 or len(chunks) < 2:
            done = write(conn, chunks)
        else:  # writers side by side, each with a connection and a share of the chunks
            with ThreadPoolExecutor(WORKERS) as pool:
                shares = [chunks[i::WORKERS] for i in range(WORKERS)]
                jobs = [pool.submit(_with_connection, url, write, share) for share in shares]
                done = sum((job.result() for job in jobs), Counter())
        if url is not None:
            progress.add_task(f"{source.label}: folding into the rollup", total=None)
            rollup.catch_up(conn)  # no report reads the import's deltas after it
    conn.execute(
        Q.record_files,
        {
            "workspace_id": wid,
            "source": source.tag,
            "paths": [str(p) for p in changed],
            "sizes": [stamps[p][0] for p in changed],
            "mtimes_ns": [stamps[p][1] for p in changed],
        },
    )
    summary.new = done["new"]
    summary.grown = done["grown"]
    summary.reported_live = done["outranked"]
    summary.tokens = done["tokens"]
    summary.cost = Decimal(done["cost_units"]).scaleb(-10)
    summary.unpriced_tokens = done["unpriced_tokens"]


def _with_connection(url: str, write: Callable[..., Counter[str]], share: Any) -> Counter[str]:
    with connect(url) as conn:
        return write(conn, share)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _agents(
    conn: psycopg.Connection[Row],
    wid: Any,
    rid: Any,
    source: Source,
    host: str,
    projects: set[str],
) -> dict[str, Any]:
    found = {}
    for project in sorted(projects):
        name = records.agent_name(home_path(project), source.name, host)
        row = _made(conn, records.Q.agent, {"workspace_id": wid, "name": name, "runtime_id": rid})
        if row["runtime_id"] != rid:
            raise ValueError(f"agent {name!r} already exists on another runtime")
        found[project] = row["id"]
    return found


def _made(conn: psycopg.Connection[Row], sql: str, params: dict[str, Any]) -> Row:
    """The row a find-or-make query answers (asked again when another writer made it first)."""
    for _ in range(2):
        row = conn.execute(sql, params).fetchone()
        if row is not None:
            return row
    raise RuntimeError("a runtime or agent made and deleted while importing")


@dataclass(frozen=True)
class Writer:
    """Writes chunks of records of one import, each in the caller's transaction."""

    prefix: str  # of every record's key: the workspace and the source
    workspace_id: Any
    runtime_id: Any
    source: str
    agents: dict[str, Any]

    def write(self, conn: psycopg.Connection[Row], chunk: list[Record]) -> Counter[str]:
        rows = [
            (
                self.prefix + r.key,
                self.runtime_id,
                self.agents[r.project],
                r.session,
                r.at,
                r.provider,
                r.model,
                r.input,
                r.output,
                r.cache_read,
                r.cache_write,
                r.cache_write_1h,
                None,
            )
            for r in chunk
        ]
        return records.run(conn, records.write(rows, self.workspace_id, self.source, grow=True))
