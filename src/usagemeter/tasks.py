"""Tasks: created for an agent on its runtime, then started and finished (docs/api.md)."""

from __future__ import annotations

import re
from typing import Any
from uuid import UUID

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from usagemeter.auth import Caller, CallerDep, current_workspace, visible
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.issues import issue_for_caller
from usagemeter.web import ApiError, Conn, Label, Name, bad_request, parse_model, parse_uuid

Q = queries(__file__)
_LIMIT = re.compile(r"[0-9]{1,4}")  # ASCII digits only (str.isdigit accepts "²")
STATUSES = ("queued", "dispatched", "running", "completed", "failed", "cancelled")
# target status -> the statuses it may be reached from
TRANSITIONS = {
    "running": ["queued", "dispatched"],
    "completed": ["running"],
    "failed": ["queued", "dispatched", "running"],
    "cancelled": ["queued", "dispatched", "running"],
}


class TaskIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    agent_id: Label
    issue_id: Label | None = None


async def task_for_caller(conn: AConn, caller: Caller, task_id: UUID) -> Row:
    """The task (with its agent's workspace) if the caller may see it, else 404."""
    return await visible(conn, Q.task_access, {**caller.params, "id": task_id}, "task")


async def _get(conn: AConn, task_id: UUID) -> Any:
    return await one(conn, Q.get_task, {"id": task_id})


async def create_task(request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Queue a task for an agent of the workspace, on the agent's current runtime."""
    body = await parse_model(request, TaskIn)
    agent_id = parse_uuid(body.agent_id, "agent_id")
    issue_id = parse_uuid(body.issue_id, "issue_id") if body.issue_id is not None else None
    ws = await current_workspace(request, caller, conn)
    # An issue of another workspace is not found here, even by a member of both: its
    # owners could otherwise delete this workspace's tasks with their issue.
    if (
        issue_id is not None
        and (await issue_for_caller(conn, caller, issue_id))["workspace_id"] != ws.id
    ):
        raise ApiError(404, "issue not found")
    async with conn.transaction():
        scope = {"agent_id": agent_id, "workspace_id": ws.id}
        agent = await one(conn, Q.agent_for_task, scope)
        if agent is None:
            raise ApiError(404, "agent not found")
        if agent["archived"]:
            raise ApiError(409, "agent is archived")
        params = {"agent_id": agent_id, "runtime_id": agent["runtime_id"], "issue_id": issue_id}
        row = await one(conn, Q.create_task, params)
        assert row is not None
    return await _get(conn, row["id"])


async def get_task(task_id: str, caller: CallerDep, conn: Conn) -> Any:
    tid = parse_uuid(task_id, "task_id")
    await task_for_caller(conn, caller, tid)
    return await _get(conn, tid)


async def list_tasks(
    request: Request,
    caller: CallerDep,
    conn: Conn,
    status: str | None = None,
    limit: str | None = None,
) -> list[Row]:
    """The workspace's tasks, newest first (`?status=`, `?limit=` up to 1000, default 100)."""
    if status is not None and status not in STATUSES:
        raise bad_request("invalid status")
    if limit is not None and not (_LIMIT.fullmatch(limit) and 1 <= int(limit) <= 1000):
        raise bad_request("invalid limit")
    ws = await current_workspace(request, caller, conn)
    params = {"workspace_id": ws.id, "status": status, "limit": int(limit or 100)}
    return await many(conn, Q.list_tasks, params)


class EndBody(BaseModel):
    """The agent CLI's session the task ran in (optional; the body too), as today's Multica
    daemon sends it: the usage of that session is then counted from the daemon's reports
    only, and the records an import or OpenTelemetry wrote of it are deleted (docs/otlp.md).
    Other fields the daemon sends (`output`, `work_dir`, ...) are not kept."""

    model_config = ConfigDict(strict=True, extra="ignore")
    session_id: Name | None = None


class FailBody(EndBody):
    """Also why the task failed, as the daemon classified it (optional)."""

    failure_reason: Name | None = None


async def _transition(
    conn: AConn,
    caller: Caller,
    task_id: str,
    status: str,
    body: EndBody | None = None,
) -> Any:
    tid = parse_uuid(task_id, "task_id")
    task = await task_for_caller(conn, caller, tid)
    session_id = body.session_id if body else None
    params = {
        "id": tid,
        "status": status,
        "from": TRANSITIONS[status],
        "failure_reason": getattr(body, "failure_reason", None),
        "session_id": session_id,
        "workspace_id": task["workspace_id"],
    }
    async with conn.transaction():
        if session_id:
            await conn.execute(Q.lock_sessions, params)
        if await one(conn, Q.transition_task, params) is None:
            task = await _get(conn, tid)
            raise ApiError(409, f"task is {task['status'] if task else 'gone'}")
        if session_id:
            await conn.execute(Q.drop_session_records, params)
    return await _get(conn, tid)


async def _body(request: Request, model: type[EndBody]) -> EndBody:
    return await parse_model(request, model) if await request.body() else model()


async def start_task(task_id: str, caller: CallerDep, conn: Conn) -> Any:
    """queued/dispatched -> running (sets started_at)."""
    return await _transition(conn, caller, task_id, "running")


async def complete_task(task_id: str, request: Request, caller: CallerDep, conn: Conn) -> Any:
    """running -> completed, with the `session_id` the body may give."""
    return await _transition(conn, caller, task_id, "completed", await _body(request, EndBody))


async def fail_task(task_id: str, request: Request, caller: CallerDep, conn: Conn) -> Any:
    """queued/dispatched/running -> failed, with the `failure_reason` and `session_id` the body
    may give."""
    return await _transition(conn, caller, task_id, "failed", await _body(request, FailBody))
