"""Runtime management, docs/api.md."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from usagemeter.auth import MANAGERS, Caller, CallerDep, current_workspace, seen, visible
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
    reason,
    rollup_enabled,
)

Q = queries(__file__)


class RuntimePatch(BaseModel):
    """What a person may change of a runtime; an absent field is left as it is.
    `timezone`: an IANA name ("" means UTC). `custom_name`: a display name of at most 100
    characters ("" or blanks clear it); with `apply_to_machine`, every runtime of the same
    daemon gets it (a member: only those they own). `visibility`: "private" or "public"
    (only the runtime's owner changes it). Any other field is refused."""

    model_config = ConfigDict(strict=True, extra="forbid")
    timezone: Label | None = None
    custom_name: Label | None = None
    visibility: Label | None = None
    apply_to_machine: bool = False


MAX_CUSTOM_NAME = 100


async def runtime_for_caller(conn: AConn, caller: Caller, runtime_id: UUID) -> Row:
    """The runtime, if the caller may see it (its own workspace decides), else 404."""
    if caller.runtime is not None and caller.runtime[0] == runtime_id:
        return seen(caller.runtime[1], "runtime")
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
    """Change a runtime's zone (the next read buckets in it), display name or visibility."""
    rid = parse_uuid(runtime_id, "runtime_id")
    body = await read_json(request, "invalid JSON body")
    if not isinstance(body, dict):
        raise bad_request("invalid JSON body")
    try:
        patch = RuntimePatch.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            raise bad_request(f"invalid request body: {field} cannot be changed") from None
        if field == "timezone":
            raise bad_request("invalid IANA timezone") from None
        raise bad_request(f"invalid request body: {field} {reason(first)}") from None
    timezone = patch.timezone
    if timezone is not None:
        if not (timezone == "" or is_zone(timezone)):
            raise bad_request("invalid IANA timezone")
        timezone = timezone or "UTC"
    if patch.visibility not in (None, "private", "public"):
        raise bad_request("visibility must be 'private' or 'public'")
    name = None if patch.custom_name is None else patch.custom_name.strip()
    if name is not None and len(name) > MAX_CUSTOM_NAME:
        raise bad_request("custom name is too long")
    runtime = await runtime_for_caller(conn, caller, rid)
    if not _may_edit(runtime, caller):
        raise ApiError(403, "you can only edit your own runtimes")
    visibility = patch.visibility if patch.visibility != runtime["visibility"] else None
    if visibility is not None and (caller.user_id is None or runtime["owner_id"] != caller.user_id):
        raise ApiError(403, "only the runtime owner can change its visibility")
    async with conn.transaction():
        if name is not None and patch.apply_to_machine and runtime["daemon_id"] is not None:
            owner = None if runtime["role"] in MANAGERS else caller.user_id
            await conn.execute(
                Q.rename_machine,
                {
                    "custom_name": name or None,
                    "workspace_id": runtime["workspace_id"],
                    "daemon_id": runtime["daemon_id"],
                    "owner_id": owner,
                },
            )
        return await _update(conn, rid, timezone, visibility, name)


async def set_zone(conn: AConn, caller: Caller, runtime_id: UUID, zone: str | None) -> Any:
    """Set a runtime's zone (None: leave it) if the caller may edit it; the runtime."""
    runtime = await runtime_for_caller(conn, caller, runtime_id)
    if not _may_edit(runtime, caller):
        raise ApiError(403, "you can only edit your own runtimes")
    return await _update(conn, runtime_id, zone, None, None)


async def _update(
    conn: AConn, rid: UUID, timezone: str | None, visibility: str | None, name: str | None
) -> Any:
    params = {
        "id": rid,
        "timezone": timezone,
        "visibility": visibility,
        "set_name": name is not None,
        "custom_name": name or None,
    }
    row = await one(conn, Q.update_runtime, params)
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
