"""Runtime management, docs/api.md."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from usagemeter.auth import MANAGERS, Caller, CallerDep, current_workspace, visible
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.web import (
    ApiError,
    Conn,
    Label,
    bad_request,
    exact_json,
    is_zone,
    parse_uuid,
    read_json,
    rollup_enabled,
)

Q = queries(__file__)


class RuntimePatch(BaseModel):
    """A runtime's new zone: an IANA name; "" means UTC; absent leaves it unchanged."""

    model_config = ConfigDict(strict=True, extra="ignore")
    timezone: Label | None = None


async def runtime_for_caller(conn: AConn, caller: Caller, runtime_id: UUID) -> Row:
    """The runtime, if the caller may see it (its own workspace decides), else 404."""
    return await visible(conn, Q.runtime_access, {**caller.params, "id": runtime_id}, "runtime")


def _may_edit(runtime: Row, caller: Caller) -> bool:
    return runtime["role"] in MANAGERS or (
        caller.user_id is not None and runtime["owner_id"] == caller.user_id
    )


async def list_runtimes(
    request: Request, caller: CallerDep, conn: Conn, owner: str | None = None
) -> Response:
    """The workspace's runtimes (created_at ascending) with their cost of the last 7 local
    days and the 7 before; `?owner=me` keeps the caller's."""
    if owner not in (None, "", "me"):
        raise bad_request("invalid owner")
    ws = await current_workspace(request, caller, conn)
    params = {
        "workspace_id": ws.id,
        "mine": owner == "me",
        "user_id": caller.user_id,
        "rollup": rollup_enabled(request),
    }
    return exact_json(runtime_rows(await many(conn, Q.list_runtimes, params)))


def runtime_rows(rows: list[Row]) -> list[Row]:
    """list_runtimes' rows as the API answers them: the runtime's fields and its costs."""
    return [{**r.pop("runtime"), **r} for r in rows]


async def patch_runtime(runtime_id: str, request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Change a runtime's time zone; the next read buckets in it."""
    rid = parse_uuid(runtime_id, "runtime_id")
    body = await read_json(request, "invalid JSON body")
    if not isinstance(body, dict):
        raise bad_request("invalid JSON body")
    try:
        timezone = RuntimePatch.model_validate(body).timezone
    except ValidationError:
        raise bad_request("invalid IANA timezone") from None
    if timezone is not None:
        if not (timezone == "" or is_zone(timezone)):
            raise bad_request("invalid IANA timezone")
        timezone = timezone or "UTC"
    return await set_zone(conn, caller, rid, timezone)


async def set_zone(conn: AConn, caller: Caller, runtime_id: UUID, zone: str | None) -> Any:
    """Set a runtime's zone (None: leave it) if the caller may edit it; the runtime."""
    runtime = await runtime_for_caller(conn, caller, runtime_id)
    if not _may_edit(runtime, caller):
        raise ApiError(403, "you can only edit your own runtimes")
    row = await one(conn, Q.set_runtime_timezone, {"id": runtime_id, "timezone": zone})
    if row is None:
        raise ApiError(404, "runtime not found")
    return row["runtime"]


class UnbindBody(BaseModel):
    """The active agents the person confirmed: the delete goes on only if they still are."""

    model_config = ConfigDict(strict=True, extra="ignore")
    expected_active_agent_ids: list[Label]


HAS_ACTIVE_AGENTS = (
    "cannot delete runtime: it has active agents bound to it. Archive or reassign the agents first."
)
PLAN_CHANGED = "the active agent set changed; please review and confirm again."


async def delete_runtime(runtime_id: str, caller: CallerDep, conn: Conn) -> Any:
    """Delete a runtime with no active agents (archived ones go with it); with active ones,
    409 `runtime_has_active_agents` listing them."""
    rid = parse_uuid(runtime_id, "runtime_id")
    return await _delete(conn, caller, rid, None)


async def unbind_agents_and_delete(
    runtime_id: str, request: Request, caller: CallerDep, conn: Conn
) -> Any:
    """Archive the runtime's active agents the caller confirmed and delete it; 409
    `runtime_delete_plan_changed` with the agents as they are when the set changed."""
    rid = parse_uuid(runtime_id, "runtime_id")
    body = await read_json(request, "invalid request body")
    try:
        expected = UnbindBody.model_validate(body).expected_active_agent_ids
        ids = {parse_uuid(i, "expected_active_agent_ids") for i in expected}
    except (ValidationError, ApiError):
        raise bad_request("expected_active_agent_ids must be a list of valid UUIDs") from None
    return await _delete(conn, caller, rid, ids)


async def _delete(conn: AConn, caller: Caller, rid: UUID, confirmed: set[UUID] | None) -> Any:
    """Delete a runtime (its archived agents, tasks and usage go with it). Its active agents
    block it, unless they are exactly `confirmed`: those are archived first."""
    runtime = await runtime_for_caller(conn, caller, rid)
    if not _may_edit(runtime, caller):
        raise ApiError(403, "you can only delete your own runtimes")
    async with conn.transaction():
        if await one(conn, Q.lock_runtime, {"id": rid}) is None:
            raise ApiError(404, "runtime not found")
        active = await many(conn, Q.active_agents, {"id": rid})
        if active and (confirmed is None or {a["id"] for a in active} != confirmed):
            code = (
                "runtime_has_active_agents" if confirmed is None else "runtime_delete_plan_changed"
            )
            message = HAS_ACTIVE_AGENTS if confirmed is None else PLAN_CHANGED
            body = {"error": message, "code": code, "active_agents": active}
            return JSONResponse(jsonable_encoder(body), status_code=409)
        if confirmed and active:
            await conn.execute(Q.archive_agents, {"id": rid})
        await conn.execute(Q.delete_archived_agents, {"id": rid})
        await conn.execute(Q.delete_runtime, {"id": rid})
    return {"status": "ok"}
