"""Daemon endpoints, docs/api.md: registration and per-task usage reports."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Request
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from usagemeter.auth import CallerDep, workspace_access
from usagemeter.db import Row, many, one, queries
from usagemeter.ingest import DaemonUsageBody, parse_usage, write_usage
from usagemeter.tasks import task_for_caller
from usagemeter.web import (
    ApiError,
    Conn,
    Label,
    Title,
    bad_request,
    is_zone,
    parse_model,
    parse_uuid,
)

Q = queries(__file__)
MAX_DAEMON_ENTRIES = 1000


class RuntimeIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    name: Label | None = None
    type: Label | None = None
    version: Label | None = None
    status: Label | None = None
    profile_id: Label | None = None  # an instance of a custom runtime profile ("": none)


class FailedProfile(BaseModel):
    """A custom runtime profile the daemon could not start (today's Multica daemon)."""

    model_config = ConfigDict(strict=True, extra="ignore")
    profile_id: Label | None = None
    command_name: Label | None = None
    reason: Title | None = None


class RegisterBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    workspace_id: Label | None = None
    daemon_id: Label | None = None
    legacy_daemon_ids: Annotated[list[Label], Field(max_length=100)] | None = None
    device_name: Label | None = None
    cli_version: Label | None = None
    launched_by: Label | None = None
    timezone: Label | None = None
    runtimes: Annotated[list[RuntimeIn], Field(max_length=100)] | None = None
    failed_profiles: Annotated[list[FailedProfile], Field(max_length=100)] | None = None


# What today's Multica answers a register beside the runtimes: the workspace's repositories
# (none here), their version (SHA-256 of their sorted URLs, one per line: of none) and its
# settings.
NO_REPOS: dict[str, Any] = {
    "repos": [],
    "repos_version": hashlib.sha256(b"").hexdigest(),
    "settings": None,
}


def _runtime_row(body: RegisterBody, rt: RuntimeIn) -> dict[str, Any]:
    """The columns of one registered runtime, by the rules of docs/api.md."""
    provider = (rt.type or "").strip() or "unknown"
    device = (body.device_name or "").strip()
    version = (rt.version or "").strip()
    name = (rt.name or "").strip() or (f"{provider} ({device})" if device else provider)
    metadata = {
        "version": rt.version or "",
        "cli_version": body.cli_version or "",
        "launched_by": body.launched_by or "",
    }
    profile = (rt.profile_id or "").strip()
    return {
        "provider": provider,
        "profile_id": parse_uuid(profile, "profile_id") if profile else None,
        "name": name,
        "status": "offline" if rt.status == "offline" else "online",
        "device_info": " · ".join(part for part in (device, version) if part),
        "metadata": Jsonb(metadata),
        "timezone": body.timezone if body.timezone and is_zone(body.timezone) else "UTC",
    }


async def register(request: Request, caller: CallerDep, conn: Conn) -> dict[str, Any]:
    """Upsert the daemon's runtimes (merging legacy daemon ids) and return them."""
    body = await parse_model(request, RegisterBody, terse=True)
    daemon_id = (body.daemon_id or "").strip()
    if not daemon_id:
        raise bad_request("daemon_id is required")
    if not body.workspace_id:
        raise bad_request("workspace_id is required")
    if not body.runtimes and not body.failed_profiles:
        raise bad_request("at least one runtime is required")
    ws_id = parse_uuid(body.workspace_id, "workspace_id")
    rows = [_runtime_row(body, rt) for rt in body.runtimes or []]
    ws = await workspace_access(conn, caller, id=ws_id, slug=None)
    legacy = [x for x in body.legacy_daemon_ids or [] if x.strip()]
    runtimes = []
    async with conn.transaction():
        for row_in in rows:
            params = {
                **row_in,
                "workspace_id": ws.id,
                "daemon_id": daemon_id,
                "owner_id": caller.user_id,
                "set_owner": caller.user_id is not None,
            }
            row = await one(conn, Q.upsert_runtime, params)
            if row is None:
                raise ApiError(403, "this daemon's runtime belongs to another user")
            if legacy:
                merge = {"runtime_id": row["id"], "legacy_ids": legacy, "owner_id": caller.user_id}
                await conn.execute(Q.merge_legacy_runtimes, merge)
            runtimes.append(row["id"])
        rendered = await many(conn, Q.runtimes_json, {"ids": runtimes})
    return {"runtimes": [r["runtime"] for r in rendered], **NO_REPOS}


async def daemon_workspaces(caller: CallerDep, conn: Conn) -> list[Row]:
    """The workspaces a daemon may serve: a daemon token's own, or every one of the user's."""
    return await many(conn, Q.daemon_workspaces, caller.params)


async def task_usage(
    task_id: str, request: Request, caller: CallerDep, conn: Conn
) -> dict[str, str]:
    """Upsert the usage a daemon reports for one task (all entries or none)."""
    tid = parse_uuid(task_id, "task_id")
    body = await parse_usage(request, DaemonUsageBody, MAX_DAEMON_ENTRIES)
    task = await task_for_caller(conn, caller, tid)
    entries = body.usage or []
    await write_usage(conn, task["workspace_id"], [tid] * len(entries), entries)
    return {"status": "ok"}
