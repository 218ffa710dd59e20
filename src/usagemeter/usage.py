"""Usage reports, docs/api.md."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from fastapi import Request, Response

from usagemeter.auth import Caller, CallerDep, current_workspace
from usagemeter.db import AConn, Row, one, queries
from usagemeter.issues import issue_for_caller, project_of_workspace
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
    request: Request,
    conn: AConn,
    zone: str | None,
    workspace_id: UUID,
    runtime_id: UUID | None = None,
) -> None:
    """Have the rollup cut days in a zone a workspace's report was asked in (within the
    workspace's share of new offsets) and, given a runtime whose daily report is asked in
    it, cut that runtime's day buckets in it too (once per process each): the first reads
    in a new zone are exact but slower, until a tick has built them."""
    if zone is None:
        return
    known: set[str] = request.app.state.zones
    if zone not in known:
        row = await one(conn, Q.register_zone, {"tz": zone, "workspace_id": workspace_id})
        if row and row["registered"]:
            known.add(zone)
    pairs: set[tuple[UUID, str]] = request.app.state.runtime_zones
    if runtime_id is not None and (runtime_id, zone) not in pairs:
        await conn.execute(Q.register_runtime_zone, {"runtime_id": runtime_id, "tz": zone})
        pairs.add((runtime_id, zone))


Handler = Callable[..., Awaitable[Response]]


async def runtime_params(
    request: Request,
    conn: AConn,
    caller: Caller,
    runtime_id: UUID,
    zone: str | None,
    day_buckets: bool = False,
) -> tuple[Row, dict[str, Any]]:
    """The runtime (if the caller may see it, else 404) and the parameters of its reports
    in `zone` (default the runtime's). With day_buckets, a read in a new zone has the
    rollup cut the runtime's day buckets in it."""
    runtime = await runtime_for_caller(conn, caller, runtime_id)
    await _zone(request, conn, zone, runtime["workspace_id"], runtime_id if day_buckets else None)
    return runtime, {
        "runtime_id": runtime_id,
        "workspace_id": runtime["workspace_id"],
        "tz": zone or runtime["timezone"],
        "rollup": rollup_enabled(request),
    }


async def workspace_params(
    request: Request, conn: AConn, caller: Caller, workspace_id: UUID, zone: str | None
) -> dict[str, Any]:
    """The parameters of a workspace's reports in `zone` (default the caller's own zone,
    else UTC)."""
    await _zone(request, conn, zone, workspace_id)
    return {
        "runtime_id": None,
        "workspace_id": workspace_id,
        "tz": zone or caller.timezone or "UTC",
        "rollup": rollup_enabled(request),
    }


def runtime_report(query: str, default_days: int, doc: str, day_buckets: bool = False) -> Handler:
    """The handler of a runtime report: `query` over `days` (default `default_days`) in `tz`
    (default the runtime's zone)."""

    async def handler(
        runtime_id: str,
        request: Request,
        caller: CallerDep,
        conn: Conn,
        days: str | None = None,
        tz: str | None = None,
    ) -> Response:
        rid = parse_uuid(runtime_id, "runtime_id")
        n, zone = parse_days(days, default_days), parse_tz(tz)
        _, params = await runtime_params(request, conn, caller, rid, zone, day_buckets)
        return await json_rows(conn, query, {**params, "days": n})

    handler.__doc__ = doc
    return handler


runtime_usage = runtime_report(
    Q.runtime_usage,
    90,
    "Daily tokens per provider and model (default 90 days), in the runtime's zone.",
    day_buckets=True,
)
runtime_usage_by_agent = runtime_report(
    Q.runtime_usage_by_agent, 30, "Tokens and task counts per agent and model (default 30 days)."
)
runtime_timeline = runtime_report(
    Q.usage_timeline,
    30,
    "Per local date, every date listed (default 30 days): tokens, cost and its split by"
    " kind, unpriced tokens, cache savings, tasks started.",
    day_buckets=True,
)
runtime_usage_by_hour = runtime_report(
    Q.runtime_usage_by_hour,
    30,
    "Tokens and task counts per local hour of day and model (default 30 days).",
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
    _, params = await runtime_params(request, conn, caller, rid, parse_tz(tz))
    return await json_rows(conn, Q.runtime_activity, params)


async def workspace_rows(
    request: Request,
    caller: Caller,
    conn: AConn,
    query: str,
    days: str | None,
    tz: str | None,
    project_id: UUID | None = None,
) -> Response:
    """A workspace report's rows: `query` over `days` (default 30) in `tz` (default the
    caller's own zone, else UTC), of one project of the workspace if given (else 404)."""
    n, zone = parse_days(days, 30), parse_tz(tz)
    ws = await current_workspace(request, caller, conn)
    if project_id is not None:
        await project_of_workspace(conn, project_id, ws.id)
    params = await workspace_params(request, conn, caller, ws.id, zone)
    return await json_rows(conn, query, {**params, "days": n, "project_id": project_id})


def workspace_report(query: str, doc: str) -> Handler:
    """The handler of a workspace report (workspace_rows)."""

    async def handler(
        request: Request,
        caller: CallerDep,
        conn: Conn,
        days: str | None = None,
        tz: str | None = None,
    ) -> Response:
        return await workspace_rows(request, caller, conn, query, days, tz)

    handler.__doc__ = doc
    return handler


workspace_daily = workspace_report(
    Q.workspace_daily,
    "Daily tokens and task counts per model of the whole workspace (default 30 days).",
)
workspace_summary = workspace_report(
    Q.workspace_summary, "Tokens and task counts per model of the whole workspace, biggest first."
)
workspace_by_agent = workspace_report(
    Q.workspace_usage_by_agent,
    "Tokens and task counts per agent and model of the whole workspace (default 30 days).",
)
workspace_timeline = workspace_report(
    Q.usage_timeline,
    "The workspace per local date, every date listed (default 30 days): tokens, cost and its"
    " split by kind, unpriced tokens, cache savings, tasks started.",
)


def dashboard_report(query: str, doc: str) -> Handler:
    """A report of today's Multica dashboard: a workspace report that also takes
    `project_id`, a project of the workspace, to report its issues' tasks only."""

    async def handler(
        request: Request,
        caller: CallerDep,
        conn: Conn,
        days: str | None = None,
        tz: str | None = None,
        project_id: str | None = None,
    ) -> Response:
        project = parse_uuid(project_id, "project_id") if project_id is not None else None
        return await workspace_rows(request, caller, conn, query, days, tz, project)

    handler.__doc__ = doc
    return handler


dashboard_usage_daily = dashboard_report(
    Q.dashboard_usage_daily,
    "Tokens, task counts and cost per local date, provider and model of the whole workspace"
    " (default 30 days plus today), as today's Multica dashboard reads them.",
)
dashboard_usage_by_agent = dashboard_report(
    Q.dashboard_usage_by_agent,
    "Tokens, task counts and cost per agent, provider and model of the whole workspace over"
    " exactly `days` local dates (default 30, today included).",
)
dashboard_agent_runtime = dashboard_report(
    Q.dashboard_agent_runtime,
    "Run time and counts of ended tasks per agent over exactly `days` local dates of their end"
    " (default 30, today included), longest first.",
)
dashboard_runtime_daily = dashboard_report(
    Q.dashboard_runtime_daily,
    "Run time and counts of ended tasks per local date of their end (default 30 days plus today).",
)

dashboard_failures_daily = dashboard_report(
    Q.dashboard_failures_daily,
    "Tasks that completed or failed per local date of their end (default 30 days plus today)"
    " and failure_reason ('' for those that completed).",
)
dashboard_failures_by_agent = dashboard_report(
    Q.dashboard_failures_by_agent,
    "Tasks that completed or failed per agent and failure_reason over exactly `days` local"
    " dates of their end (default 30, today included).",
)


async def issue_usage(issue_id: str, caller: CallerDep, conn: Conn) -> Response:
    """All-time totals of every task on the issue."""
    iid = parse_uuid(issue_id, "issue_id")
    await issue_for_caller(conn, caller, iid)
    row = await one(conn, Q.issue_usage, {"issue_id": iid})
    assert row is not None  # an aggregate always has one row
    return exact_json(row)
