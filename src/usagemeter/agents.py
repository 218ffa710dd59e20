"""Agents: create, rename, archive, rebind to another runtime (docs/api.md)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from fastapi import Request
from pydantic import BaseModel, ConfigDict

from usagemeter.auth import MANAGERS, CallerDep, current_workspace, visible
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.web import ApiError, Conn, Label, Name, bad_request, parse_model, parse_uuid

Q = queries(__file__)


class AgentIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    name: Name
    runtime_id: Label


class AgentPatch(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    name: Name | None = None
    runtime_id: Label | None = None
    archived: bool | None = None


def _name(value: str) -> str:
    name = value.strip()
    if not name or len(name) > 200:
        raise bad_request("invalid name")
    return name


async def _check_runtime(conn: AConn, runtime_id: UUID, ws_id: UUID) -> None:
    row = await one(conn, Q.runtime_workspace, {"runtime_id": runtime_id})
    if row is None or row["workspace_id"] != ws_id:
        raise ApiError(404, "runtime not found")


async def list_agents(request: Request, caller: CallerDep, conn: Conn) -> list[Row]:
    ws = await current_workspace(request, caller, conn)
    return await many(conn, Q.list_agents, {"workspace_id": ws.id})


async def create_agent(request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Create an agent bound to a runtime of the same workspace."""
    body = await parse_model(request, AgentIn)
    name, runtime_id = _name(body.name), parse_uuid(body.runtime_id, "runtime_id")
    ws = await current_workspace(request, caller, conn)
    params = {
        "workspace_id": ws.id,
        "name": name,
        "runtime_id": runtime_id,
        "owner_id": caller.user_id,
    }
    try:
        async with conn.transaction():
            await _check_runtime(conn, runtime_id, ws.id)
            return await one(conn, Q.create_agent, params)
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, "agent name already taken") from None


async def patch_agent(agent_id: str, request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Rename, archive/unarchive or rebind an agent (owners, admins, the agent's owner)."""
    aid = parse_uuid(agent_id, "agent_id")
    body = await parse_model(request, AgentPatch)
    name = _name(body.name) if body.name is not None else None
    runtime_id = parse_uuid(body.runtime_id, "runtime_id") if body.runtime_id is not None else None
    agent = await visible(conn, Q.agent_access, {**caller.params, "id": aid}, "agent")
    if agent["role"] not in MANAGERS and (
        caller.user_id is None or agent["owner_id"] != caller.user_id
    ):
        raise ApiError(403, "you can only edit your own agents")
    params = {"id": aid, "name": name, "runtime_id": runtime_id, "archived": body.archived}
    try:
        async with conn.transaction():
            if runtime_id is not None:
                await _check_runtime(conn, runtime_id, agent["workspace_id"])
            return await one(conn, Q.update_agent, params)
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, "agent name already taken") from None
