"""Usage reports, API.md §3."""

from __future__ import annotations

from uuid import UUID

from fastapi import Request, Response

from usagemeter.auth import Caller, CallerDep, current_workspace
from usagemeter.db import AConn, one, queries
from usagemeter.issues import issue_for_caller
from usagemeter.runtimes import runtime_for_caller
from usagemeter.web import (
    Conn,
    exact_json,
    json_rows,
    parse_days,
    parse_tz,
    parse_uuid,
    rollup_enabled,
)

Q = queries(__file__)


async def _zone(
    request: Request, conn: AConn, zone: str | None, runtime_id: UUID | None = None
) -> None:
    """Have the rollup cut days in a zone asked for by name and, given a runtime whose daily
    report is asked in it, cut that runtime's day buckets in it too (once per process each):
    the first reads in a new zone are exact but slower, until a tick has built them."""
    if zone is None:
        return
    known: set[str] = request.app.state.zones
    if zone not in known:
        await conn.execute(Q.register_zone, {"tz": zone})
        known.add(zone)
    pairs: set[tuple[UUID, str]] = request.app.state.runtime_zones
    if runtime_id is not None and (runtime_id, zone) not in pairs:
        await conn.execute(Q.register_runtime_zone, {"runtime_id": runtime_id, "tz": zone})
        pairs.add((runtime_id, zone))


async def _runtime_report(
    request: Request,
    conn: AConn,
    caller: Caller,
    runtime_id: str,
    sql: str,
    days: str | None,
    tz: str | None,
    default_days: int,
    day_buckets: bool = False,
) -> Response:
    rid = parse_uuid(runtime_id, "runtime_id")
    n = parse_days(days, default_days)
    zone = parse_tz(tz)
    runtime = await runtime_for_caller(conn, caller, rid)
    await _zone(request, conn, zone, rid if day_buckets else None)
    tz_name = zone or runtime["timezone"]
    params = {"runtime_id": rid, "days": n, "tz": tz_name, "rollup": rollup_enabled(request)}
    return await json_rows(conn, sql, params)


async def runtime_usage(
    runtime_id: str,
    request: Request,
    caller: CallerDep,
    conn: Conn,
    days: str | None = None,
    tz: str | None = None,
) -> Response:
    """Daily tokens per provider and model (default 90 days), in the runtime's zone."""
    return await _runtime_report(
        request, conn, caller, runtime_id, Q.runtime_usage, days, tz, 90, day_buckets=True
    )


async def runtime_usage_by_agent(
    runtime_id: str,
    request: Request,
    caller: CallerDep,
    conn: Conn,
    days: str | None = None,
    tz: str | None = None,
) -> Response:
    """Tokens and task counts per agent and model (default 30 days)."""
    return await _runtime_report(
        request, conn, caller, runtime_id, Q.runtime_usage_by_agent, days, tz, 30
    )


async def runtime_usage_by_hour(
    runtime_id: str,
    request: Request,
    caller: CallerDep,
    conn: Conn,
    days: str | None = None,
    tz: str | None = None,
) -> Response:
    """Tokens and task counts per local hour of day and model (default 30 days)."""
    return await _runtime_report(
        request, conn, caller, runtime_id, Q.runtime_usage_by_hour, days, tz, 30
    )


async def runtime_activity(
    runtime_id: str,
    request: Request,
    caller: CallerDep,
    conn: Conn,
    tz: str | None = None,
) -> Response:
    """Started tasks per local hour of day, all time (`days` is ignored)."""
    rid = parse_uuid(runtime_id, "runtime_id")
    zone = parse_tz(tz)
    runtime = await runtime_for_caller(conn, caller, rid)
    await _zone(request, conn, zone)
    params = {
        "runtime_id": rid,
        "tz": zone or runtime["timezone"],
        "rollup": rollup_enabled(request),
    }
    return await json_rows(conn, Q.runtime_activity, params)


async def _workspace_report(
    request: Request,
    conn: AConn,
    caller: Caller,
    workspace_id: UUID,
    sql: str,
    days: int,
    zone: str | None,
) -> Response:
    await _zone(request, conn, zone)
    tz = zone or caller.timezone or "UTC"
    params = {
        "workspace_id": workspace_id,
        "days": days,
        "tz": tz,
        "rollup": rollup_enabled(request),
    }
    return await json_rows(conn, sql, params)


async def workspace_daily(
    request: Request,
    caller: CallerDep,
    conn: Conn,
    days: str | None = None,
    tz: str | None = None,
) -> Response:
    """Daily tokens and task counts per model of the whole workspace (default 30 days)."""
    n, zone = parse_days(days, 30), parse_tz(tz)
    ws = await current_workspace(request, caller, conn)
    return await _workspace_report(request, conn, caller, ws.id, Q.workspace_daily, n, zone)


async def workspace_summary(
    request: Request,
    caller: CallerDep,
    conn: Conn,
    days: str | None = None,
    tz: str | None = None,
) -> Response:
    """Tokens and task counts per model of the whole workspace, biggest first."""
    n, zone = parse_days(days, 30), parse_tz(tz)
    ws = await current_workspace(request, caller, conn)
    return await _workspace_report(request, conn, caller, ws.id, Q.workspace_summary, n, zone)


async def issue_usage(issue_id: str, caller: CallerDep, conn: Conn) -> Response:
    """All-time totals of every task on the issue."""
    iid = parse_uuid(issue_id, "issue_id")
    await issue_for_caller(conn, caller, iid)
    row = await one(conn, Q.issue_usage, {"issue_id": iid})
    assert row is not None  # an aggregate always has one row
    return exact_json(row)
