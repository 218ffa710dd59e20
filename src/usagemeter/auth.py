"""Authentication (hashed bearer tokens) and workspace resolution, docs/api.md."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import Depends, Request

from usagemeter.db import AConn, Row, one, queries
from usagemeter.web import ApiError, Conn, bad_request, not_found, parse_uuid

Q = queries(__file__)

PAT_PREFIX = "mul_"
DAEMON_PREFIX = "mdt_"
ROLES = ("owner", "admin", "member")
MANAGERS = ("owner", "admin")


# A workspace slug: the API and the CLI accept the same ones.
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
SLUG_RULE = "invalid slug: use a-z, 0-9 and '-', at most 63 characters"


def new_token(prefix: str) -> str:
    return prefix + secrets.token_hex(20)


def digest(token: str) -> bytes:
    """Tokens are 160 random bits, so an unsalted SHA-256 is a safe one-way store."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class Caller:
    """Who is calling: a user (PAT) or a daemon bound to one workspace."""

    user_id: UUID | None
    daemon_workspace_id: UUID | None
    timezone: str | None = None  # the user's own zone: the default of workspace reports
    # The runtime the route names (its id, and runtime_access's row or None), read with the
    # token: runtimes.runtime_for_caller then needs no statement of its own.
    runtime: tuple[UUID, Row | None] | None = field(default=None, compare=False)

    @property
    def params(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "daemon_workspace_id": self.daemon_workspace_id}


@dataclass(frozen=True)
class Workspace:
    id: UUID
    role: str


async def authenticate(request: Request, conn: Conn) -> Caller:
    """The Bearer token's owner, or 401."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "missing authorization")
    if not token.startswith((PAT_PREFIX, DAEMON_PREFIX)):
        raise ApiError(401, "invalid token")
    runtime_id = _route_runtime(request)
    row = await one(conn, Q.authenticate, {"token_hash": digest(token), "runtime_id": runtime_id})
    if row is None:
        raise ApiError(401, "invalid token")
    kind, user_id, workspace_id, user_zone = (
        row.pop(k) for k in ("kind", "user_id", "token_workspace_id", "user_timezone")
    )
    runtime = None if runtime_id is None else (runtime_id, row if row["id"] else None)
    if kind == "daemon":
        return Caller(user_id=None, daemon_workspace_id=workspace_id, runtime=runtime)
    return Caller(user_id=user_id, daemon_workspace_id=None, timezone=user_zone, runtime=runtime)


def _route_runtime(request: Request) -> UUID | None:
    """The runtime a route's path names, if it is a valid id (else its handler answers 400)."""
    value = request.path_params.get("runtime_id")
    try:
        return None if value is None else parse_uuid(value, "runtime_id")
    except ApiError:
        return None


CallerDep = Annotated[Caller, Depends(authenticate)]


def _workspace_ref(request: Request) -> tuple[str, str] | None:
    """The first workspace identifier present, in the order of docs/api.md."""
    q, h = request.query_params, request.headers
    for kind, value in (
        ("slug", q.get("workspace_slug")),
        ("slug", h.get("x-workspace-slug")),
        ("id", q.get("workspace_id")),
        ("id", h.get("x-workspace-id")),
    ):
        if value:
            return kind, value
    return None


async def workspace_access(
    conn: AConn, caller: Caller, *, id: UUID | None, slug: str | None
) -> Workspace:
    """The workspace with the caller's role in it; 404 when unknown or not a member."""
    params = {**caller.params, "id": id, "slug": slug}
    row = await visible(conn, Q.workspace_access, params, "workspace")
    return Workspace(id=row["id"], role=row["role"])


async def current_workspace(request: Request, caller: CallerDep, conn: Conn) -> Workspace:
    """The workspace a workspace-level route works on, from query or headers."""
    ref = _workspace_ref(request)
    if ref is None:
        raise bad_request("workspace_id or workspace_slug is required")
    kind, value = ref
    if kind == "id":
        return await workspace_access(conn, caller, id=parse_uuid(value, "workspace_id"), slug=None)
    return await workspace_access(conn, caller, id=None, slug=value)


def require_user(caller: Caller) -> UUID:
    """Routes about people need a personal access token, not a daemon token."""
    if caller.user_id is None:
        raise ApiError(403, "a personal access token is required")
    return caller.user_id


async def visible(conn: AConn, sql: str, params: dict[str, Any], what: str) -> Row:
    """The row `sql` selects with the caller's `role` in its workspace; 404 `<what> not found`
    when it does not exist or the caller has no role there (never reveal that it exists)."""
    return seen(await one(conn, sql, params), what)


def seen(row: Row | None, what: str) -> Row:
    """The row, if the caller has a role in its workspace, else 404 (see visible)."""
    if row is None or row["role"] is None:
        raise not_found(what)
    return row


def create_token(
    conn: psycopg.Connection[Row],
    *,
    email: str | None,
    name: str,
    workspace_slug: str | None,
    role: str,
    daemon: bool,
) -> str:
    """Create the user/workspace/membership as needed and return one new token."""
    with conn.transaction():
        workspace_id = None
        if workspace_slug:
            if not SLUG.fullmatch(workspace_slug):
                raise ValueError(SLUG_RULE)
            ws = conn.execute(Q.upsert_workspace, {"slug": workspace_slug}).fetchone()
            assert ws is not None
            workspace_id = ws["id"]
        if daemon:
            if workspace_id is None:
                raise ValueError("a daemon token needs --workspace")
            token = new_token(DAEMON_PREFIX)
            user_id = None
        else:
            if not email:
                raise ValueError("a personal access token needs --email")
            user = conn.execute(Q.upsert_user, {"email": email, "name": name}).fetchone()
            assert user is not None
            user_id = user["id"]
            if workspace_id is not None:
                member = {"workspace_id": workspace_id, "user_id": user_id, "role": role}
                conn.execute(Q.upsert_member, member)
            token = new_token(PAT_PREFIX)
        conn.execute(
            Q.insert_token,
            {
                "kind": "daemon" if daemon else "pat",
                "token_hash": digest(token),
                "name": name,
                "user_id": user_id,
                "workspace_id": workspace_id,
            },
        )
    return token
