"""`usagemeter import`: Claude Code and Codex logs, each request counted once, at its time.

Every rule of docs/import.md has a case here that fails without it. The logs are written by
tests/logfiles.py in the shape the agent CLIs write them."""

from __future__ import annotations

import io
import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from typer.testing import CliRunner

from tests.conftest import World, auth, ok
from tests.logfiles import (
    claude_history,
    claude_line,
    claude_user_line,
    codex_history,
    codex_meta,
    codex_tokens,
    codex_turn,
    write,
)
from usagemeter import imports
from usagemeter.app import create_app
from usagemeter.cli import app
from usagemeter.config import Config
from usagemeter.db import Row

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def run(
    db: psycopg.Connection[Row],
    source: imports.Source,
    *paths: Path,
    dry_run: bool = False,
    since: datetime | None = None,
    workspace: str = "personal",
) -> imports.Summary:
    return imports.run_import(
        db.info.dsn,
        source,
        list(paths),
        workspace=workspace,
        since=since,
        dry_run=dry_run,
        console=Console(file=io.StringIO()),
    )


def rows(db: psycopg.Connection[Row], workspace: str = "personal") -> list[dict[str, Any]]:
    """The workspace's usage rows, oldest first."""
    return db.execute(
        "SELECT u.model, u.input_tokens AS i, u.output_tokens AS o, u.cache_read_tokens AS r,"
        " u.cache_write_tokens AS w, u.cache_write_1h_tokens AS h, u.created_at AS at,"
        " t.session_id, t.source, t.started_at"
        " FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id"
        " JOIN workspace ws ON ws.id = u.workspace_id WHERE ws.slug = %s"
        " ORDER BY u.created_at, u.model, u.output_tokens, u.input_tokens",
        (workspace,),
    ).fetchall()


def tokens(db: psycopg.Connection[Row]) -> list[tuple[int, int, int, int]]:
    return [(r["i"], r["o"], r["r"], r["w"]) for r in rows(db)]


# Claude Code


def test_a_response_written_as_several_lines_counts_once_with_its_final_tokens(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    write(
        tmp_path / "p" / "sess-1.jsonl",
        [
            claude_line("msg_1", T0, tokens=(10, 1, 1000, 200)),  # placeholder output_tokens
            claude_user_line(T0 + S),
            claude_line("msg_1", T0 + 2 * S, tokens=(10, 1, 1000, 200)),
            claude_line("msg_1", T0 + 3 * S, tokens=(10, 420, 1000, 200)),
        ],
    )
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert tokens(db) == [(10, 420, 1000, 200)]
    assert rows(db)[0]["at"] == T0  # the response's first line: when it was spent
    assert s.run.duplicates == {"repeated line of one response": 2}
    assert (s.new, s.run.lines) == (1, 4)
    assert s.tokens == 1630


def test_without_request_ids_a_message_id_is_one_response_within_its_session(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    # Behind some proxies lines carry no requestId, and message ids are unique per session
    # only: two sessions' msg_1 are two responses.
    write(
        tmp_path / "p" / "a.jsonl",
        [
            claude_line("msg_1", T0, request_id=None, session="a", tokens=(1, 1, 0, 0)),
            claude_line("msg_1", T0 + S, request_id=None, session="a", tokens=(1, 50, 0, 0)),
            claude_line("msg_2", T0 + 2 * S, request_id=None, session="a", tokens=(2, 60, 0, 0)),
        ],
    )
    write(
        tmp_path / "p" / "b.jsonl",
        [claude_line("msg_1", T0 + 3 * S, request_id=None, session="b", tokens=(3, 70, 0, 0))],
    )
    run(db, imports.CLAUDE_CODE, tmp_path)
    assert tokens(db) == [(1, 50, 0, 0), (2, 60, 0, 0), (3, 70, 0, 0)]


def test_a_response_copied_into_another_session_counts_once(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    # A resumed or branched session starts with a copy of its parent's lines: same message
    # and request ids, a later time.
    original = claude_line("msg_1", T0, request_id="req_1", session="a")
    copy = claude_line("msg_1", T0 + timedelta(hours=3), request_id="req_1", session="b")
    write(tmp_path / "p" / "b.jsonl", [copy])
    write(tmp_path / "p" / "a.jsonl", [original])
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert [(r["session_id"], r["at"]) for r in rows(db)] == [("a", T0)]
    assert s.run.duplicates == {"copy in another session": 1}


def test_a_sidechain_replay_never_counts_and_the_parent_line_wins(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    # A sub-agent's log replays its parent's message under a new requestId; the sub-agent's
    # own response (another message id) counts.
    parent = claude_line("msg_1", T0, request_id="req_1", tokens=(10, 300, 0, 0))
    replay = claude_line(
        "msg_1",
        T0 + timedelta(minutes=30),
        request_id="req_9",
        tokens=(10, 900, 0, 0),
        sidechain=True,
    )
    own = claude_line(
        "msg_2",
        T0 + timedelta(minutes=31),
        request_id="req_2",
        sidechain=True,
        tokens=(5, 50, 0, 0),
    )
    write(tmp_path / "p" / "sess-1" / "subagents" / "agent-1.jsonl", [replay, own])
    write(tmp_path / "p" / "sess-1.jsonl", [parent])
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert [(r["o"], r["at"], r["session_id"]) for r in rows(db)] == [
        (300, T0, "sess-1"),
        (50, T0 + timedelta(minutes=31), "sess-1"),
    ]
    assert s.run.duplicates == {"sidechain replay of a message": 1}


def test_synthetic_messages_are_not_requests(db: psycopg.Connection[Row], tmp_path: Path) -> None:
    write(
        tmp_path / "p" / "s.jsonl",
        [
            claude_line("msg_1", T0, model="<synthetic>", tokens=(5, 5, 5, 5)),
            claude_line("msg_2", T0 + S, tokens=(1, 2, 3, 4)),
        ],
    )
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert tokens(db) == [(1, 2, 3, 4)]
    assert s.run.skipped == {"synthetic message (no request)": 1}


def test_cache_writes_keep_their_hour_long_part(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    write(
        tmp_path / "p" / "s.jsonl",
        [
            claude_line("msg_1", T0, tokens=(1, 2, 3, 400), hour_writes=150),
            claude_line("msg_2", T0 + S, tokens=(1, 2, 3, 400)),  # no split given
        ],
    )
    run(db, imports.CLAUDE_CODE, tmp_path)
    assert [(r["w"], r["h"]) for r in rows(db)] == [(400, 150), (400, 0)]


def test_malformed_lines_are_skipped_and_counted_never_fatal(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    good = claude_line("msg_1", T0, tokens=(1, 2, 3, 4))
    write(
        tmp_path / "p" / "s.jsonl",
        [
            good[: len(good) // 2],  # a write cut short
            '{"type": "user", "message": {"content": "x"}, "cut',  # cut before any usage
            "[1, 2, 3]",
            claude_line("msg_2", T0, tokens=(-1, 2, 3, 4)),
            claude_line("msg_3", T0).replace('"timestamp"', '"ts"'),
            claude_line("", T0),
            "",
            good,
        ],
    )
    write(tmp_path / "p" / os.fsdecode(b"\xff.jsonl"), [claude_line("msg_9", T0)])
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert tokens(db) == [(1, 2, 3, 4)]
    assert s.run.skipped == {
        "file path not UTF-8": 1,
        "not a JSON object": 3,
        "token count not a whole number up to 10^12": 1,
        "no valid timestamp": 1,
        "no message id": 1,
    }


# Codex


def codex_session(path: Path, session: str, lines: list[str], **meta: Any) -> Path:
    return write(
        path / f"rollout-2026-11-20T10-00-00-{session}.jsonl",
        [codex_meta(session, T0, **meta), *lines],
    )


def test_codex_counts_deltas_of_the_cumulative_counters_once(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    codex_session(
        tmp_path,
        "s1",
        [
            codex_turn(T0),
            codex_tokens(T0 + S, (1000, 0, 100, 40), (1000, 0, 100, 40)),
            codex_tokens(T0 + 2 * S, (1000, 0, 100, 40), (1000, 0, 100, 40)),  # re-emitted
            codex_tokens(T0 + 3 * S, (3000, 800, 150, 40), (2000, 800, 50, 0)),
        ],
    )
    s = run(db, imports.CODEX, tmp_path)
    # input includes cached input: 2000 new of which 800 cached -> 1200 input, 800 read.
    assert tokens(db) == [(1000, 100, 0, 0), (1200, 50, 800, 0)]
    assert s.run.duplicates == {"counters repeated unchanged": 1}
    assert {r["model"] for r in rows(db)} == {"gpt-5"}


def test_codex_takes_the_model_of_the_turn_before(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    codex_session(
        tmp_path,
        "s1",
        [
            codex_turn(T0, model="gpt-5"),
            codex_tokens(T0 + S, (1000, 0, 100, 0), (1000, 0, 100, 0)),
            codex_turn(T0 + 2 * S, model="gpt-5-mini"),
            codex_tokens(T0 + 3 * S, (1500, 0, 130, 0), (500, 0, 30, 0)),
        ],
    )
    run(db, imports.CODEX, tmp_path)
    assert [(r["model"], r["i"], r["o"]) for r in rows(db)] == [
        ("gpt-5", 1000, 100),
        ("gpt-5-mini", 500, 30),
    ]


def test_a_fork_does_not_count_its_parents_counters_again(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    parent = [
        codex_turn(T0),
        codex_tokens(T0 + S, (1000, 0, 100, 0), (1000, 0, 100, 0)),
        codex_tokens(T0 + 2 * S, (2500, 500, 160, 0), (1500, 500, 60, 0)),
    ]
    forked_at = T0 + timedelta(hours=5)
    codex_session(tmp_path / "a", "parent", parent)
    codex_session(
        tmp_path / "b",
        "child",
        [
            # the parent's history, its times rewritten to the fork's
            codex_meta("parent", T0),
            codex_turn(forked_at),
            codex_tokens(forked_at, (1000, 0, 100, 0), (1000, 0, 100, 0)),
            codex_tokens(forked_at, (2500, 500, 160, 0), (1500, 500, 60, 0)),
            # the fork's own request
            codex_turn(forked_at + S, model="gpt-5-mini"),
            codex_tokens(forked_at + 2 * S, (2800, 600, 170, 0), (300, 100, 10, 0)),
        ],
        forked_from_id="parent",
    )
    s = run(db, imports.CODEX, tmp_path)
    assert [(r["session_id"], r["at"], r["i"], r["r"], r["o"]) for r in rows(db)] == [
        ("parent", T0 + S, 1000, 0, 100),
        ("parent", T0 + 2 * S, 1000, 500, 60),
        ("child", forked_at + 2 * S, 200, 100, 10),
    ]
    assert s.run.duplicates == {"replayed by a forked session": 2}


def test_a_fork_whose_first_counters_hold_its_parents_counts_its_last_request(
    db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    codex_session(
        tmp_path,
        "child",
        [codex_turn(T0), codex_tokens(T0 + S, (90_000, 80_000, 5000, 0), (3000, 2000, 100, 0))],
        forked_from_id="gone",
    )
    run(db, imports.CODEX, tmp_path)
    assert tokens(db) == [(1000, 100, 2000, 0)]


# Idempotence, growth, crashes, daemons


def test_importing_again_changes_nothing(db: psycopg.Connection[Row], tmp_path: Path) -> None:
    write(tmp_path / "p" / "s.jsonl", [claude_line(f"m{i}", T0 + i * S) for i in range(5)])
    first = run(db, imports.CLAUDE_CODE, tmp_path)
    before = rows(db)
    again = run(db, imports.CLAUDE_CODE, tmp_path)
    assert (first.new, again.files_unchanged, again.run.files, again.new) == (5, 1, 0, 0)
    db.execute("DELETE FROM import_file")  # forget the files: all read again
    forced = run(db, imports.CLAUDE_CODE, tmp_path)
    assert (forced.run.files, len(forced.run.records), forced.new, forced.grown) == (1, 5, 0, 0)
    assert forced.tokens == 0 and rows(db) == before


def test_a_growing_log_adds_only_what_is_new(db: psycopg.Connection[Row], tmp_path: Path) -> None:
    path = write(
        tmp_path / "p" / "s.jsonl",
        [
            claude_line("m1", T0, tokens=(1, 10, 0, 0)),
            claude_line("m2", T0 + S, tokens=(1, 1, 0, 0)),
        ],
    )
    run(db, imports.CLAUDE_CODE, tmp_path)
    assert tokens(db) == [(1, 10, 0, 0), (1, 1, 0, 0)]  # m2 still streaming
    with path.open("a") as f:
        f.write(claude_line("m2", T0 + 2 * S, tokens=(1, 80, 0, 0)) + "\n")
        f.write(claude_line("m3", T0 + 3 * S, tokens=(2, 20, 0, 0)) + "\n")
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert tokens(db) == [(1, 10, 0, 0), (1, 80, 0, 0), (2, 20, 0, 0)]
    assert rows(db)[1]["at"] == T0 + S
    assert (s.new, s.grown, s.tokens) == (1, 1, 79 + 22)


def test_a_crash_half_way_loses_nothing_and_doubles_nothing(
    db: psycopg.Connection[Row], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "p" / "s.jsonl", [claude_line(f"m{i}", T0 + i * S) for i in range(7)])
    monkeypatch.setattr(imports, "CHUNK", 3)
    monkeypatch.setattr(imports, "WORKERS", 1)
    real = imports.Writer.write
    calls = []

    def dies_on_the_second_chunk(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(imports.Writer, "write", dies_on_the_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        run(db, imports.CLAUDE_CODE, tmp_path)
    assert len(rows(db)) == 3  # the first chunk committed, the file not marked read
    monkeypatch.setattr(imports.Writer, "write", real)
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert (s.run.files, s.new, len(rows(db))) == (1, 4, 7)


def test_a_dry_run_writes_nothing(db: psycopg.Connection[Row], tmp_path: Path) -> None:
    write(tmp_path / "p" / "s.jsonl", [claude_line("m1", T0), claude_line("m2", T0 + S)])
    s = run(db, imports.CLAUDE_CODE, tmp_path, dry_run=True)
    assert (s.new, s.tokens) == (2, 2620)
    assert s.cost > 0
    counts = db.execute(
        "SELECT (SELECT count(*) FROM workspace) AS ws, (SELECT count(*) FROM task_usage) AS u,"
        " (SELECT count(*) FROM import_file) AS f, (SELECT count(*) FROM usage_dirty) AS q"
    ).fetchone()
    assert counts == {"ws": 0, "u": 0, "f": 0, "q": 0}


def test_since_keeps_later_requests_only(db: psycopg.Connection[Row], tmp_path: Path) -> None:
    write(tmp_path / "p" / "s.jsonl", [claude_line("m1", T0), claude_line("m2", T0 + 2 * S)])
    s = run(db, imports.CLAUDE_CODE, tmp_path, since=T0 + S)
    assert len(rows(db)) == 1 and s.run.skipped == {"before --since": 1}


def _daemon_task(world: World, client: TestClient, token: str) -> Any:
    ws = world.workspace("personal")
    rt = world.runtime(ws)
    task = world.task(world.agent(ws, rt), rt)
    ok(client.post(f"/api/tasks/{task}/start", headers=auth(token)))
    return task


def test_a_session_a_daemon_reported_is_not_imported(
    db: psycopg.Connection[Row], world: World, client: TestClient, tmp_path: Path
) -> None:
    token = world.token(workspace="personal")
    task = _daemon_task(world, client, token)
    ok(
        client.post(
            f"/api/tasks/{task}/complete", json={"session_id": "sess-d"}, headers=auth(token)
        )
    )
    write(
        tmp_path / "p" / "sess-d.jsonl",
        [claude_line("m1", T0, session="sess-d"), claude_line("m2", T0, session="sess-x")],
    )
    s = run(db, imports.CLAUDE_CODE, tmp_path)
    assert [r["session_id"] for r in rows(db)] == ["sess-x"]
    assert s.reported_live == 1


def test_a_daemon_naming_a_session_later_replaces_its_imported_usage(
    db: psycopg.Connection[Row], world: World, client: TestClient, tmp_path: Path
) -> None:
    token = world.token(workspace="personal")
    write(
        tmp_path / "p" / "s.jsonl",
        [claude_line("m1", T0, session="sess-d"), claude_line("m2", T0, session="sess-x")],
    )
    run(db, imports.CLAUDE_CODE, tmp_path)
    task = _daemon_task(world, client, token)
    world.usage(task, tokens=(7, 7, 7, 7))
    r = client.post(f"/api/tasks/{task}/fail", json={"session_id": "sess-d"}, headers=auth(token))
    assert ok(r)["session_id"] == "sess-d"
    assert [(r["session_id"], r["source"]) for r in rows(db)] == [
        ("sess-x", "import:claude-code"),
        ("sess-d", None),
    ]
    assert sum(r["i"] for r in rows(db)) == 10 + 7


@pytest.mark.parametrize("source", [imports.CLAUDE_CODE, imports.CODEX])
def test_reading_and_writing_side_by_side_gives_what_one_at_a_time_gives(
    db: psycopg.Connection[Row],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    source: imports.Source,
) -> None:
    make = claude_history if source is imports.CLAUDE_CODE else codex_history
    make(tmp_path / "logs", 3000, seed=3)
    # Copies of some logs, read in other batches than their originals and better: Claude's
    # responses with one token more, Codex's counters an hour earlier. Whichever is read
    # first, the copies win (and are written over the originals, or not at all).
    for path in sorted((tmp_path / "logs").rglob("*.jsonl"))[:4]:
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        for line in lines:
            if source is imports.CODEX:
                at = datetime.fromisoformat(line["timestamp"]) - timedelta(hours=1)
                line["timestamp"] = at.isoformat()
            elif "usage" in line["message"]:
                line["message"]["usage"]["output_tokens"] += 1
        write(tmp_path / "zz-copies" / path.name, [json.dumps(line) for line in lines])
    monkeypatch.setattr(imports, "WORKERS", 1)
    alone = run(db, source, tmp_path / "logs", tmp_path / "zz-copies", workspace="alone")
    monkeypatch.setattr(imports, "WORKERS", 2)
    monkeypatch.setattr(imports, "PARSE_BATCH", 20_000)  # many files per worker
    monkeypatch.setattr(imports, "CHUNK", 97)  # many chunks per writer
    both = run(db, source, tmp_path / "logs", tmp_path / "zz-copies", workspace="both")

    def seen(s: imports.Summary) -> tuple[Any, ...]:
        r = s.run
        return (r.files, r.lines, len(r.records), r.duplicates, r.skipped, s.new, s.tokens, s.cost)

    assert seen(both) == seen(alone) and alone.new > 500
    drop = ("session_id", "source", "started_at")
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows(db, "both")] == [
        {k: v for k, v in r.items() if k not in drop} for r in rows(db, "alone")
    ]


# Reports


def test_a_session_across_midnight_in_kolkata_lands_on_both_dates(
    db: psycopg.Connection[Row], db_url: str, config: Config, world: World, tmp_path: Path
) -> None:
    day = world.today_utc() - timedelta(days=2)
    before = day + timedelta(hours=18, minutes=20)  # 23:50 in Kolkata (+05:30)
    after = day + timedelta(hours=18, minutes=40)  # 00:10 the next day
    write(
        tmp_path / "p" / "s.jsonl",
        [
            claude_line("m1", before, tokens=(1, 0, 0, 0)),
            claude_line("m2", after, tokens=(2, 0, 0, 0)),
        ],
    )
    run(db, imports.CLAUDE_CODE, tmp_path)
    # The import folded what it queued; the raw scan answers the same.
    assert db.execute("SELECT count(*) AS n FROM usage_dirty").fetchone() == {"n": 0}
    token = world.token(workspace="personal")
    first = day.date().isoformat()
    second = (day.date() + timedelta(days=1)).isoformat()
    for rollup_enabled in (True, False):
        with TestClient(create_app(replace(config, rollup_enabled=rollup_enabled), db_url)) as c:
            rt = ok(c.get("/api/runtimes", headers=auth(token, "personal")))[0]
            assert (rt["provider"], rt["device_info"]) == ("claude", "Claude Code logs")
            path = f"/api/runtimes/{rt['id']}/usage?days=7"
            kolkata = ok(c.get(f"{path}&tz=Asia/Kolkata", headers=auth(token)))
            assert {(u["date"], u["input_tokens"]) for u in kolkata} == {(first, 1), (second, 2)}
            utc = ok(c.get(f"{path}&tz=UTC", headers=auth(token)))
            assert {(u["date"], u["input_tokens"]) for u in utc} == {(first, 3)}


# The command line


def test_the_default_paths_of_both_agent_clis(
    db_url: str, db: psycopg.Connection[Row], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    one, two = tmp_path / "cfg1", tmp_path / "cfg2"
    write(one / "projects" / "-p" / "s1.jsonl", [claude_line("m1", T0, session="s1")])
    write(
        two / "projects" / "-p" / "s2" / "subagents" / "agent-a.jsonl",
        [claude_line("m2", T0, session="s2", sidechain=True)],
    )
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f"{one}, {two}")
    codex_home = tmp_path / "codex"
    codex_session(
        codex_home / "sessions" / "2026" / "11" / "20",
        "c1",
        [codex_turn(T0), codex_tokens(T0, (10, 0, 1, 0), (10, 0, 1, 0))],
    )
    codex_session(
        codex_home / "archived_sessions",
        "c2",
        [codex_turn(T0), codex_tokens(T0, (20, 0, 2, 0), (20, 0, 2, 0))],
    )
    monkeypatch.setenv("CODEX_HOME", str(codex_home))
    runner = CliRunner()
    r = runner.invoke(app, ["import", "claude-code", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "dry run" in r.output and rows(db) == []
    r = runner.invoke(app, ["import", "claude-code"])
    assert r.exit_code == 0, r.output
    assert "usage records kept" in r.output
    r = runner.invoke(app, ["import", "codex", "--since", "2026-11-01"])
    assert r.exit_code == 0, r.output
    assert sorted(r["session_id"] for r in rows(db)) == ["c1", "c2", "s1", "s2"]
    monkeypatch.delenv("CLAUDE_CONFIG_DIR")
    write(
        tmp_path / "home" / ".claude" / "projects" / "-p" / "s3.jsonl",
        [claude_line("m3", T0, session="s3")],
    )
    r = runner.invoke(app, ["import", "claude-code"])
    assert r.exit_code == 0, r.output
    assert "s3" in {r["session_id"] for r in rows(db)}
    r = runner.invoke(app, ["import", "codex", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "No Codex logs" in r.output
