"""The OpenTelemetry receiver (docs/otlp.md): the official SDK's OTLP/HTTP exporters send to a
running server, and each rule of what counts, once, has a case that fails without it."""

from __future__ import annotations

import gzip
import io
import socket
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk._logs.export import LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExportResult, MetricsData
from rich.console import Console

from tests import otel
from tests.conftest import World, auth, ok, price
from tests.logfiles import claude_line, codex_meta, codex_tokens, codex_turn, write
from usagemeter import imports
from usagemeter.db import Row

AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
S = timedelta(seconds=1)
SONNET = "claude-sonnet-4-5"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


def rows(db: psycopg.Connection[Row]) -> list[dict[str, Any]]:
    """Every usage row, with its task's session and source, oldest first."""
    return db.execute(
        "SELECT u.provider, u.model, u.input_tokens AS i, u.output_tokens AS o,"
        " u.cache_read_tokens AS r, u.cache_write_tokens AS w, u.cost_usd,"
        " u.estimated_cost_usd, u.created_at AS at, t.session_id, t.source"
        " FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id"
        " ORDER BY u.created_at, t.source, u.input_tokens"
    ).fetchall()


def tokens(db: psycopg.Connection[Row]) -> list[tuple[int, int, int, int]]:
    return [(r["i"], r["o"], r["r"], r["w"]) for r in rows(db)]


def export_logs(url: str, token: str, events: list[dict[str, Any]], **kw: Any) -> None:
    records = otel.log_records(events, kw.pop("resource", otel.CLAUDE))
    assert otel.log_exporter(url, token, **kw).export(records) == LogRecordExportResult.SUCCESS


def export_metrics(url: str, token: str, data: MetricsData, json: bool = False) -> None:
    exporter = otel.metric_exporter(url, token, json=json)
    assert exporter.export(data) == MetricExportResult.SUCCESS


# Claude Code's events


def test_an_api_request_event_is_one_request_at_its_time_with_its_four_kinds(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    export_logs(live_url, token, [otel.api_request(AT, tokens=(100, 20, 3000, 400))])
    (row,) = rows(db)
    assert (row["provider"], row["model"], row["at"]) == ("anthropic", SONNET, AT)
    assert tokens(db) == [(100, 20, 3000, 400)]
    assert (row["session_id"], row["source"]) == ("s-1", "otlp:log")
    runtime = db.execute(
        "SELECT daemon_id, name, provider, device_info FROM agent_runtime"
    ).fetchone()
    assert runtime == {
        "daemon_id": "host:devbox",
        "name": "devbox",
        "provider": "claude",
        "device_info": "OpenTelemetry (claude-code)",
    }
    assert db.execute("SELECT name FROM agent").fetchone() == {"name": "claude-code (devbox)"}


def test_an_exporter_configured_as_claude_code_is_works_unchanged(
    live_url: str, world: World, db: psycopg.Connection[Row], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings docs/otlp.md gives: the base endpoint and the header, from the environment.
    token = world.daemon_token()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", live_url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{token}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    records = otel.log_records([otel.api_request(AT)], otel.CLAUDE)
    assert OTLPLogExporter().export(records) == LogRecordExportResult.SUCCESS
    assert tokens(db) == [(100, 20, 3000, 400)]


def test_claude_codes_cost_is_an_estimate_kept_apart_from_the_cost(
    live_url: str, world: World, db: psycopg.Connection[Row], client: TestClient
) -> None:
    token = world.daemon_token()
    ws = world.workspace()
    price(db, SONNET, ("3", "15", "0.3", "3.75"), workspace_id=ws, provider="anthropic")
    export_logs(live_url, token, [otel.api_request(AT, tokens=(1000, 1000, 0, 0), cost="9.5")])
    (row,) = rows(db)
    assert (row["cost_usd"], str(row["estimated_cost_usd"])) == (None, "9.5000000000")
    reader = world.token()
    days = ok(client.get("/api/usage/timeline?days=7", headers=auth(reader, "acme")))
    assert sum(d["cost_usd"] for d in days) == 0.018  # the prices', not Claude Code's 9.5


def test_values_sent_as_numbers_count_as_those_sent_as_strings(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    event = otel.api_request(AT, as_strings=False, tokens=(5, 6, 7, 8))
    # A double cost, beside attributes of the other kinds (a boolean, an empty string, a list).
    event["attributes"] |= {"cost_usd": 0.25, "fast": True, "prompt.id": "", "tools": ["Edit"]}
    export_logs(live_url, token, [event])
    assert tokens(db) == [(5, 6, 7, 8)]
    assert str(rows(db)[0]["estimated_cost_usd"]) == "0.2500000000"


def test_a_retried_export_changes_nothing_in_either_encoding(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    events = [otel.api_request(AT, seq=1), otel.api_request(AT + S, seq=2)]
    export_logs(live_url, token, events)
    before = rows(db)
    export_logs(live_url, token, events)  # the same batch again, as an exporter retries it
    export_logs(live_url, token, events, json=True)
    export_logs(live_url, token, events, gzip=False)
    assert rows(db) == before
    assert len(before) == 2


def test_the_events_of_a_session_win_over_its_metrics_in_either_order(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    attrs = {"model": SONNET, "session.id": "s-1"}
    with otel.meter() as m:
        m.tokens.add(70, {**attrs, "type": "input"})
        m.tokens.add(9, {**attrs, "type": "output"})
        m.cost.add(0.25, attrs)
        first = m.collect()
        m.tokens.add(30, {**attrs, "type": "input"})
        second = m.collect()
    export_metrics(live_url, token, first)
    assert [(r["source"], r["i"], r["o"]) for r in rows(db)] == [("otlp:metric", 70, 9)]
    assert str(rows(db)[0]["estimated_cost_usd"]) == "0.2500000000"
    # The session's events arrive: they are the record; the metrics of it go, now and later.
    export_logs(live_url, token, [otel.api_request(AT, tokens=(100, 9, 0, 0))])
    export_metrics(live_url, token, second)
    assert [(r["source"], r["i"], r["o"]) for r in rows(db)] == [("otlp:log", 100, 9)]
    # Metrics of a session without events still count.
    with otel.meter() as m:
        m.tokens.add(5, {"model": SONNET, "session.id": "s-2", "type": "input"})
        export_metrics(live_url, token, m.collect())
    assert sorted((r["session_id"], r["source"], r["i"]) for r in rows(db)) == [
        ("s-1", "otlp:log", 100),
        ("s-2", "otlp:metric", 5),
    ]


# The GenAI semantic conventions


def genai_event(at: datetime, **attrs: Any) -> dict[str, Any]:
    base = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-5",
        "gen_ai.response.model": "gpt-5-2025-08-07",
        "gen_ai.usage.input_tokens": 1000,
        "gen_ai.usage.output_tokens": 50,
    }
    return {
        "timestamp": otel.ns(at),
        "event_name": "gen_ai.client.inference.operation.details",
        "attributes": {**base, **attrs},
    }


# Codex's events


def test_a_codex_response_counts_its_cached_input_and_reasoning_once(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    failed = otel.codex_completed(AT + S)
    failed["attributes"] = {
        k: v for k, v in failed["attributes"].items() if not k.endswith("_token_count")
    } | {"error.message": "stream closed before response.completed"}
    other = otel.codex_completed(AT + 2 * S)
    other["attributes"]["event.kind"] = "response.output_item.done"
    export_logs(live_url, token, [otel.codex_completed(AT), failed, other], resource=otel.CODEX)
    (row,) = rows(db)
    assert (row["provider"], row["model"], row["at"]) == ("openai", "gpt-5-codex", AT)
    # input 5,000 holds the 4,000 cached; output 300 holds the 120 of reasoning
    assert tokens(db) == [(1000, 300, 4000, 0)]
    assert (row["session_id"], row["source"]) == ("c-1", "otlp:log")
    runtime = db.execute("SELECT daemon_id, provider FROM agent_runtime").fetchone()
    assert runtime == {"daemon_id": "host:devbox", "provider": "codex"}


def test_a_codex_session_sent_live_replaces_its_import(
    live_url: str, world: World, db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    token = world.daemon_token("personal")
    session = "0199a213-81c0-7800-8aa1-bbab2a035a53"
    log = tmp_path / "2026" / "12" / "03" / f"rollout-2026-12-03T01-00-00-{session}.jsonl"
    counts = (5000, 4000, 300, 120)
    write(log, [codex_meta(session, AT), codex_turn(AT), codex_tokens(AT + S, counts, counts)])
    run_import(db, tmp_path, imports.CODEX)
    assert [r["source"] for r in rows(db)] == ["import:codex"]
    resource = {**otel.CODEX, "host.name": socket.gethostname()}
    event = otel.codex_completed(AT + S, conversation=session, model="gpt-5", counts=counts)
    export_logs(live_url, token, [event], resource=resource)
    assert [r["source"] for r in rows(db)] == ["otlp:log"]
    assert tokens(db) == [(1000, 300, 4000, 0)]
    # The same machine and agent CLI are one runtime, whichever way their usage came.
    assert db.execute("SELECT count(*) AS n FROM agent_runtime").fetchone() == {"n": 1}


APP = {"service.name": "support-bot", "host.name": "web-1"}


def test_genai_input_tokens_hold_the_cached_parts_which_count_once(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    event = genai_event(
        AT,
        **{
            "gen_ai.usage.cache_read.input_tokens": 600,
            "gen_ai.usage.cache_creation.input_tokens": 100,
        },
    )
    export_logs(live_url, token, [event], resource=APP)
    (row,) = rows(db)
    assert (row["provider"], row["model"]) == ("openai", "gpt-5-2025-08-07")
    assert tokens(db) == [(300, 50, 600, 100)]


def test_genai_older_system_attribute_and_request_model(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    event = genai_event(AT)
    for name in ("gen_ai.provider.name", "gen_ai.response.model"):
        del event["attributes"][name]
    event["attributes"]["gen_ai.system"] = "anthropic"
    export_logs(live_url, token, [event], resource=APP)
    assert [(r["provider"], r["model"]) for r in rows(db)] == [("anthropic", "gpt-5")]


def test_the_genai_token_histogram_counts_input_and_output(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    attrs = {"gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-5"}
    with otel.meter(APP) as m:
        for n in (400, 600):
            m.genai.record(n, {**attrs, "gen_ai.token.type": "input"})
        m.genai.record(80, {**attrs, "gen_ai.token.type": "output"})
        data = m.collect()
    export_metrics(live_url, token, data, json=True)
    export_metrics(live_url, token, data)  # a delta export retried changes nothing
    assert [(r["provider"], r["model"], r["i"], r["o"]) for r in rows(db)] == [
        ("openai", "gpt-5", 1000, 80)
    ]


# Temporality


def test_cumulative_counters_count_what_they_grew_by_once(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    attrs = {"model": SONNET, "session.id": "s-1", "type": "input"}
    with otel.meter(temporality=otel.CUMULATIVE) as m:
        m.tokens.add(100, attrs)
        first = m.collect()
        m.tokens.add(50, attrs)
        second = m.collect()
    export_metrics(live_url, token, first)
    export_metrics(live_url, token, second)
    export_metrics(live_url, token, second)  # retried
    export_metrics(live_url, token, first)  # late: older than what was seen
    assert sum(r["i"] for r in rows(db)) == 150
    # A restarted exporter starts its counters again from zero, with a new start time.
    with otel.meter(temporality=otel.CUMULATIVE) as m:
        m.tokens.add(30, attrs)
        export_metrics(live_url, token, m.collect())
    assert sum(r["i"] for r in rows(db)) == 180


def test_a_cumulative_counter_that_goes_down_was_reset_and_counts_from_zero(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    attrs = {"model": SONNET, "session.id": "s-1", "type": "input"}
    with otel.meter(temporality=otel.CUMULATIVE) as m:
        m.tokens.add(100, attrs)
        message = encode_metrics(m.collect())
    point = message.resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0]
    headers = {**PROTOBUF, **auth(token)}
    ok_bytes(client.post("/v1/metrics", content=message.SerializeToString(), headers=headers))
    point.time_unix_nano += 10**9
    point.as_int = 40  # reset, then 40 more; the start time unchanged
    ok_bytes(client.post("/v1/metrics", content=message.SerializeToString(), headers=headers))
    assert sum(r["i"] for r in rows(db)) == 140


# Which source counts a session


def run_import(
    db: psycopg.Connection[Row], logs: Path, source: imports.Source = imports.CLAUDE_CODE
) -> imports.Summary:
    return imports.run_import(
        db.info.dsn,
        source,
        [logs],
        workspace="personal",
        since=None,
        dry_run=False,
        console=Console(file=io.StringIO()),
    )


def test_a_session_sent_live_replaces_its_import_and_is_not_imported_again(
    live_url: str, world: World, db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    token = world.daemon_token("personal")
    host = socket.gethostname()
    log = tmp_path / "p" / "s.jsonl"
    write(log, [claude_line("m1", AT, session="s-1", tokens=(1, 2, 3, 4))])

    run_import(db, tmp_path)
    assert [r["source"] for r in rows(db)] == ["import:claude-code"]
    resource = {**otel.CLAUDE, "host.name": host}
    export_logs(live_url, token, [otel.api_request(AT + S, tokens=(1, 2, 3, 4))], resource=resource)
    assert [r["source"] for r in rows(db)] == ["otlp:log"]
    write(
        log,
        [
            claude_line("m1", AT, session="s-1", tokens=(1, 2, 3, 4)),
            claude_line("m2", AT + 2 * S, session="s-1"),
        ],
    )
    assert run_import(db, tmp_path).reported_live == 2
    assert [r["source"] for r in rows(db)] == ["otlp:log"]
    # The same machine and agent CLI are one runtime, whichever way their usage came.
    assert db.execute("SELECT count(*) AS n FROM agent_runtime").fetchone() == {"n": 1}


def test_live_and_imported_sessions_written_side_by_side_count_once_each(
    live_url: str, world: World, db: psycopg.Connection[Row], tmp_path: Path
) -> None:
    token = world.daemon_token("personal")
    sessions = [f"s-{i}" for i in range(12)]
    for s in sessions:
        lines = [claude_line(f"{s}-m{j}", AT + j * S, session=s, tokens=(1, 0, 0, 0)) for j in range(40)]  # fmt: skip
        write(tmp_path / "p" / f"{s}.jsonl", lines)
    live = sessions[:6]
    events = {s: [otel.api_request(AT + j * S, session=s, seq=j, tokens=(2, 0, 0, 0)) for j in range(40)] for s in live}  # fmt: skip
    with ThreadPoolExecutor(4) as pool:
        jobs: list[Future[Any]] = [
            pool.submit(export_logs, live_url, token, events[s]) for s in live
        ]
        jobs.append(pool.submit(run_import, db, tmp_path))
        for job in jobs:
            job.result()
    run_import(db, tmp_path)  # again: nothing changes
    counted = db.execute(
        "SELECT t.session_id, array_agg(DISTINCT t.source) AS sources, sum(u.input_tokens) AS i"
        " FROM agent_task_queue t JOIN task_usage u ON u.task_id = t.id"
        " GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert {r["session_id"]: (r["sources"], r["i"]) for r in counted} == {
        s: (["otlp:log"], 80) if s in live else (["import:claude-code"], 40) for s in sessions
    }


def test_a_daemon_naming_a_session_replaces_what_opentelemetry_sent_of_it(
    live_url: str, world: World, db: psycopg.Connection[Row], client: TestClient
) -> None:
    daemon = world.daemon_token()
    export_logs(live_url, daemon, [otel.api_request(AT)])
    ws = world.workspace()
    rt = world.runtime(ws)
    task = world.task(world.agent(ws, rt), rt)
    ok(client.post(f"/api/tasks/{task}/start", headers=auth(daemon)))
    body = {"session_id": "s-1"}
    ok(client.post(f"/api/tasks/{task}/complete", json=body, headers=auth(daemon)))
    assert rows(db) == []
    export_logs(live_url, daemon, [otel.api_request(AT + S, seq=2)])
    assert rows(db) == []


# Attribution


def test_a_project_directory_and_a_members_email_name_the_agent_and_owner(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    world.token(email="dev@example.com", role="member")
    resource = {**otel.CLAUDE, "process.working_directory": "/home/dev/app"}
    export_logs(live_url, token, [otel.api_request(AT)], resource=resource)
    owner = world.user_id("dev@example.com")
    assert db.execute("SELECT owner_id FROM agent_runtime").fetchone() == {"owner_id": owner}
    agent = db.execute("SELECT name, owner_id FROM agent").fetchone()
    assert agent == {"name": "/home/dev/app (claude-code, devbox)", "owner_id": owner}


def test_without_a_host_name_the_machine_is_the_users(
    live_url: str, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    export_logs(live_url, token, [otel.api_request(AT)], resource={"service.name": "claude-code"})
    runtime = db.execute("SELECT daemon_id FROM agent_runtime").fetchone()
    assert runtime == {"daemon_id": "host:dev@example.com"}


# The protocol


def test_partial_success_counts_and_names_the_records_rejected(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    bad = genai_event(AT, **{"gen_ai.usage.cache_read.input_tokens": 5000})
    no_model = otel.api_request(AT + S, seq=2)
    del no_model["attributes"]["model"]
    good = otel.api_request(AT + 2 * S, seq=3)
    records = otel.log_records([bad, no_model, good], otel.CLAUDE)
    body = encode_logs(records).SerializeToString()
    r = client.post("/v1/logs", content=body, headers={**PROTOBUF, **auth(token)})
    assert (r.status_code, r.headers["content-type"]) == (200, "application/x-protobuf")
    answer = ExportLogsServiceResponse.FromString(r.content).partial_success
    assert answer.rejected_log_records == 2
    assert "less than its cached parts" in answer.error_message
    assert "model is required" in answer.error_message
    assert len(rows(db)) == 1  # the good one
    # In JSON, the answer is JSON.
    r = client.post("/v1/logs", json={"resourceLogs": []}, headers=auth(token))
    assert (r.status_code, r.json()) == (200, {})


def test_bad_exports_get_otlps_error_answer_and_write_nothing(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    records = otel.log_records([otel.api_request(AT)], otel.CLAUDE)
    body = encode_logs(records).SerializeToString()
    headers = {**PROTOBUF, **auth(token)}

    def refused(status: int, path: str = "/v1/logs", **kw: Any) -> str:
        r = client.post(path, **kw)
        assert r.status_code == status, r.content
        if r.headers["content-type"] == "application/json":
            return str(json_format.Parse(r.content, Status()).message)
        return str(Status.FromString(r.content).message)

    assert "not an OTLP" in refused(400, content=b"\xff\x00garbage", headers=headers)
    assert "not an OTLP" in refused(400, path="/v1/metrics", content=b"{", headers={**auth(token), "Content-Type": "application/json"})  # fmt: skip
    assert "Content-Type" in refused(415, content=body, headers={**auth(token), "Content-Type": "text/plain"})  # fmt: skip
    assert "gzip" in refused(400, content=b"not gzip", headers={**headers, "Content-Encoding": "gzip"})  # fmt: skip
    assert "authorization" in refused(401, content=body, headers=PROTOBUF)
    assert "daemon token" in refused(403, content=body, headers={**PROTOBUF, **auth(world.token())})  # fmt: skip
    bomb = gzip.compress(b"\x00" * (33 * 1024 * 1024))  # 33 MB of zeros in 33 kB
    assert "once unzipped" in refused(413, content=bomb, headers={**headers, "Content-Encoding": "gzip"})  # fmt: skip
    assert rows(db) == []
    ok_bytes(client.post("/v1/logs", content=gzip.compress(body), headers={**headers, "Content-Encoding": "gzip"}))  # fmt: skip
    assert len(rows(db)) == 1


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    client: TestClient, world: World
) -> None:
    token = world.daemon_token()
    headers = {**PROTOBUF, **auth(token), "Content-Length": str(64 * 1024 * 1024)}
    r = client.post("/v1/logs", content=b"", headers=headers)
    assert r.status_code == 413


def test_metrics_partial_success_counts_points(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.daemon_token()
    with otel.meter() as m:
        m.tokens.add(5, {"model": SONNET, "session.id": "s-1", "type": "reasoning"})
        m.tokens.add(6, {"model": SONNET, "session.id": "s-1", "type": "input"})
        body = encode_metrics(m.collect()).SerializeToString()
    r = client.post("/v1/metrics", content=body, headers={**PROTOBUF, **auth(token)})
    answer = ExportMetricsServiceResponse.FromString(ok_bytes(r)).partial_success
    assert answer.rejected_data_points == 1
    assert "type must be one of input, output, cacheRead, cacheCreation" in answer.error_message
    assert tokens(db) == [(6, 0, 0, 0)]


def ok_bytes(r: Any) -> bytes:
    assert r.status_code == 200, r.content
    return bytes(r.content)
