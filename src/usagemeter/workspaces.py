"""Workspaces, members and the caller's own profile (docs/api.md)."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import Request
from pydantic import BaseModel, ConfigDict

from usagemeter import auth
from usagemeter.auth import (
    MANAGERS,
    ROLES,
    SLUG,
    SLUG_RULE,
    CallerDep,
    Workspace,
    current_workspace,
    require_user,
)
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.web import (
    ApiError,
    Conn,
    Label,
    Name,
    bad_request,
    is_zone,
    parse_model,
    parse_uuid,
)

Q = queries(__file__)


class WorkspaceIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    slug: Label
    name: Name | None = None


class MemberIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    email: Label
    role: Label = "member"


class MeIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    name: Name | None = None
    timezone: Label | None = None


async def list_workspaces(caller: CallerDep, conn: Conn) -> list[Row]:
    """The workspaces the caller belongs to (or the daemon token's one)."""
    return await many(conn, Q.list_workspaces, caller.params)


async def create_workspace(request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Create a workspace; the caller becomes its owner."""
    user_id = require_user(caller)
    body = await parse_model(request, WorkspaceIn)
    if not SLUG.fullmatch(body.slug):
        raise bad_request(SLUG_RULE)
    name = (body.name or "").strip() or body.slug
    try:
        async with conn.transaction():
            row = await one(conn, Q.create_workspace, {"name": name, "slug": body.slug})
            assert row is not None
            await conn.execute(Q.add_owner, {"workspace_id": row["id"], "user_id": user_id})
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, "workspace slug already taken") from None
    return row


async def list_members(request: Request, caller: CallerDep, conn: Conn) -> list[Row]:
    """The workspace's members with their emails (people only: not a daemon token)."""
    require_user(caller)
    ws = await current_workspace(request, caller, conn)
    return await many(conn, Q.list_members, {"workspace_id": ws.id, "user_id": None})


async def put_member(request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Add a member by email (creating the user) or change their role; owners/admins only."""
    body = await parse_model(request, MemberIn)
    if "@" not in body.email:
        raise bad_request("invalid email")
    if body.role not in ROLES:
        raise bad_request("invalid role")
    ws = await current_workspace(request, caller, conn)
    if ws.role not in MANAGERS:
        raise ApiError(403, "only owners and admins can manage members")
    if body.role == "owner" and ws.role != "owner":
        raise ApiError(403, "only owners can make owners")
    async with conn.transaction():
        await conn.execute(Q.lock_members, {"workspace_id": ws.id})
        user = await one(conn, auth.Q.upsert_user, {"email": body.email, "name": ""})
        assert user is not None
        params = {"workspace_id": ws.id, "user_id": user["id"], "role": body.role}
        await _owner_change(conn, ws, params, "change an owner's role", "demote")
        await conn.execute(auth.Q.upsert_member, params)
        return await one(conn, Q.list_members, params)


async def delete_member(user_id: str, request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Remove a member; a workspace always keeps at least one owner."""
    uid = parse_uuid(user_id, "user_id")
    ws = await current_workspace(request, caller, conn)
    if ws.role not in MANAGERS and uid != caller.user_id:
        raise ApiError(403, "only owners and admins can manage members")
    params = {"workspace_id": ws.id, "user_id": uid}
    async with conn.transaction():
        await conn.execute(Q.lock_members, params)
        if await one(conn, Q.member_role, params) is None:
            raise ApiError(404, "member not found")
        await _owner_change(conn, ws, {**params, "role": None}, "remove an owner", "remove")
        await conn.execute(Q.delete_member, params)
    return {"status": "ok"}


async def _owner_change(conn: AConn, ws: Workspace, change: Row, act: str, verb: str) -> None:
    """Refuse a change of a member (its new role; None: removed) that touches an owner
    unless an owner makes it (403), or that leaves the workspace without one (409). Callers
    hold lock_members."""
    row = await one(conn, Q.member_role, change)
    if row is None or row["role"] != "owner" or change["role"] == "owner":
        return
    if ws.role != "owner":
        raise ApiError(403, f"only owners can {act}")
    others = await one(conn, Q.other_owners, change)
    if others and not others["n"]:
        raise ApiError(409, f"cannot {verb} the last owner")


async def get_me(caller: CallerDep, conn: Conn) -> Any:
    user_id = require_user(caller)
    return await one(conn, Q.get_me, {"user_id": user_id})


async def patch_me(request: Request, caller: CallerDep, conn: Conn) -> Any:
    """Change the caller's name or zone (the default zone of workspace reports)."""
    user_id = require_user(caller)
    body = await parse_model(request, MeIn)
    set_tz = "timezone" in body.model_fields_set
    if body.timezone and not is_zone(body.timezone):
        raise bad_request("invalid IANA timezone")
    params = {
        "user_id": user_id,
        "name": body.name,
        "set_timezone": set_tz,
        "timezone": body.timezone or None,
    }
    return await one(conn, Q.update_me, params)
