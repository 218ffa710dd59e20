"""The OpenTelemetry receiver: POST /v1/logs and /v1/metrics, OTLP/HTTP in protobuf or JSON,
plain or gzip, authorised by a workspace's daemon token (docs/otlp.md).

An export is written in one transaction: its usage records (telemetry.py) as tasks of the
runtime of their machine and agent CLI (records.py), or nothing. The answer is OTLP's: the
export's response message, whose partial success counts the records rejected and says why;
a request that cannot be read is a 4xx whose body is a google.rpc.Status.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterable
from typing import Any
from uuid import UUID

import psycopg
from fastapi import Request, Response
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from usagemeter import records, telemetry
from usagemeter.auth import authenticate
from usagemeter.db import AConn, many, queries
from usagemeter.telemetry import Found, Point, Usage
from usagemeter.web import ApiError, Conn, database_trouble

Q = queries(__file__)
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# gRPC status codes (google.rpc.Code) of the answers that are not 200.
_CODES = {400: 3, 401: 16, 403: 7, 413: 8, 415: 3, 503: 14}


class Refused(Exception):
    """An export answered with a status and a message, nothing written."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def export_logs(request: Request, conn: Conn) -> Response:
    """OTLP/HTTP logs: Claude Code's api_request events and GenAI usage events."""
    media = _media(request)
    try:
        found = await _receive(request, conn, media, ExportLogsServiceRequest(), telemetry.LOG)
    except Refused as e:
        return _refusal(media, e)
    answer = ExportLogsServiceResponse()
    if found.rejected:  # a full success leaves it unset
        answer.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=found.rejected, error_message=found.why)
        )
    return _answer(media, answer)


async def export_metrics(request: Request, conn: Conn) -> Response:
    """OTLP/HTTP metrics: Claude Code's token and cost counters, the GenAI token histogram."""
    media = _media(request)
    try:
        message = ExportMetricsServiceRequest()
        found = await _receive(request, conn, media, message, telemetry.METRIC)
    except Refused as e:
        return _refusal(media, e)
    answer = ExportMetricsServiceResponse()
    if found.rejected:
        answer.partial_success.CopyFrom(
            ExportMetricsPartialSuccess(
                rejected_data_points=found.rejected, error_message=found.why
            )
        )
    return _answer(media, answer)


async def _receive(
    request: Request,
    conn: AConn,
    media: str,
    message: ExportLogsServiceRequest | ExportMetricsServiceRequest,
    source: str,
) -> Found:
    """Authorise, read and write one export; what it found. Refused: nothing was written."""
    try:
        workspace_id = await _workspace(request, conn)
        await _decode(request, media, message)
        # In a thread: its bytecode then gives the event loop the interpreter every few
        # milliseconds, so the requests beside a large export wait that long, not its whole.
        if isinstance(message, ExportLogsServiceRequest):
            found = await asyncio.to_thread(telemetry.from_logs, message)
        else:
            found = await asyncio.to_thread(telemetry.from_metrics, message)
        await _write(conn, workspace_id, found, source)
    except psycopg.errors.TransactionRollback:
        raise  # a deadlock or serialization conflict: the export runs again (web.retrying)
    except psycopg.OperationalError as e:
        raise Refused(503, database_trouble(e)) from None
    return found


async def _workspace(request: Request, conn: AConn) -> UUID:
    """The workspace of the daemon token the export carries (401, 403)."""
    try:
        caller = await authenticate(request, conn)
    except ApiError as e:
        raise Refused(e.status, e.message) from None
    if caller.daemon_workspace_id is None:
        raise Refused(403, "OTLP exports take a workspace's daemon token")
    return caller.daemon_workspace_id


def _given(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _media(request: Request) -> str:
    """The encoding of the answer: the request's, protobuf when it is neither."""
    return JSON if _given(request) == JSON else PROTOBUF


async def _decode(request: Request, media: str, message: Message) -> None:
    """Read the export request in the body into message (415: a media type or encoding not
    OTLP's; 413: larger than USAGEMETER_MAX_BODY once unzipped; 400: not the message)."""
    if _given(request) not in (PROTOBUF, JSON):
        raise Refused(415, f"Content-Type must be {PROTOBUF} or {JSON}")
    body = await request.body()
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, request.app.state.config.max_body)
    elif encoding != "identity":
        raise Refused(415, "Content-Encoding must be gzip or identity")
    try:
        if media == JSON:
            json_format.Parse(body, message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError) as e:
        raise Refused(400, f"not an OTLP {type(message).__name__}: {e}") from None


def _gunzip(body: bytes, limit: int) -> bytes:
    unzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = unzip.decompress(body, limit + 1)
    except zlib.error:
        raise Refused(400, "the body is not gzip") from None
    if len(data) > limit:
        raise Refused(413, f"request body larger than {limit} bytes once unzipped")
    if not unzip.eof:
        raise Refused(400, "the gzip body is truncated")
    return data


async def _write(conn: AConn, workspace_id: UUID, found: Found, source: str) -> None:
    """Write what the export found, in one transaction."""
    async with conn.transaction():
        usages = found.usages + await _resolve(conn, workspace_id, found.points)
        rows = await _rows(conn, workspace_id, source, usages, found)
        if rows:
            await records.arun(conn, records.write(rows, workspace_id, source, grow=False))


async def _resolve(conn: AConn, workspace_id: UUID, points: list[Point]) -> list[Usage]:
    """The records the points add up to: a delta point counts whole; a cumulative one what its
    series grew by since the point of it seen last, and nothing when it is not newer (a
    retry) or a counter that went down (a reset) counts from zero."""
    series = sorted({p.series for p in points if p.series})
    last: dict[str, tuple[int, float]] = {}
    if series:
        params = {"workspace_id": workspace_id, "series": series}
        await conn.execute(Q.add_series, params)
        rows = await many(conn, Q.lock_series, params)
        last = {r["series"]: (r["time_ns"], r["value"]) for r in rows}
    amounts: list[tuple[Point, float]] = []
    for p in sorted(points, key=lambda p: p.time_ns):
        if p.series is None:
            amounts.append((p, p.value))
            continue
        time_ns, value = last[p.series]
        if p.time_ns <= time_ns:
            continue
        amounts.append((p, p.value - value if p.value >= value else p.value))
        last[p.series] = (p.time_ns, p.value)
    if series:
        await conn.execute(
            Q.save_series,
            {
                "workspace_id": workspace_id,
                "series": series,
                "times": [last[s][0] for s in series],
                "values": [last[s][1] for s in series],
            },
        )
    return telemetry.records(amounts)


def _cli(service: str) -> tuple[str, str]:
    """The runtime provider and agent CLI of a service: the importer's for the agent CLIs
    whose logs it reads (Codex names its service after its client: codex_cli_rs,
    codex_exec, codex_vscode, ...), else the service's name."""
    cli = "codex" if service.startswith("codex") else service
    return records.CLI_PROVIDERS.get(cli, cli), cli


async def _rows(
    conn: AConn, workspace_id: UUID, source: str, usages: Iterable[Usage], found: Found
) -> list[tuple[Any, ...]]:
    """The staged rows of the records with tokens, on the runtime of their machine and agent
    CLI and the agent of their project (or service); a record whose agent's name belongs to
    another runtime is rejected."""
    runtimes: dict[tuple[str, str], UUID] = {}
    agents: dict[str, tuple[UUID, UUID]] = {}
    rows = []
    for u in usages:
        if not (u.input or u.output or u.cache_read or u.cache_write):
            continue
        who = u.who
        provider, cli = _cli(who.cli)
        rid = runtimes.get((who.machine, provider))
        if rid is None:
            params = {
                "workspace_id": workspace_id,
                "daemon_id": f"host:{who.machine}",
                "name": who.machine,
                "provider": provider,
                "device_info": f"OpenTelemetry ({who.cli})",
                "source": source,
                "timezone": "UTC",
                "email": who.email,
            }
            row = await _made(conn, records.Q.runtime, params)
            rid = runtimes[who.machine, provider] = row["id"]
        if who.project:
            name = records.agent_name(who.project, cli, who.machine)
        else:
            name = f"{who.cli[:80]} ({who.machine[:80]})"
        agent = agents.get(name)
        if agent is None:
            params = {"workspace_id": workspace_id, "name": name, "runtime_id": rid}
            row = await _made(conn, records.Q.agent, params)
            agent = agents[name] = (row["id"], row["runtime_id"])
        if agent[1] != rid:
            found.reject(f"agent {name!r} belongs to another runtime")
            continue
        rows.append(
            (
                f"{workspace_id}/{source}/{u.key}",
                rid,
                agent[0],
                who.session,
                u.at,
                u.provider,
                u.model,
                u.input,
                u.output,
                u.cache_read,
                u.cache_write,
                0,
                u.estimated_cost_usd,
            )
        )
    return rows


async def _made(conn: AConn, sql: str, params: dict[str, Any]) -> dict[str, Any]:
    for _ in range(2):
        row = await (await conn.execute(sql, params)).fetchone()
        if row is not None:
            return row
    raise Refused(503, "a runtime or agent was deleted while this export was written")


def _answer(media: str, message: Message, status: int = 200) -> Response:
    if media == JSON:
        body = json_format.MessageToJson(message, indent=None).encode()
    else:
        body = message.SerializeToString()
    return Response(body, status_code=status, media_type=media)


def _refusal(media: str, refused: Refused) -> Response:
    status = Status(code=_CODES.get(refused.status, 2), message=refused.message)
    response = _answer(media, status, refused.status)
    if refused.status == 503:
        response.headers["Retry-After"] = "1"
    return response
