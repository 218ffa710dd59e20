"""Issues: list, create, delete (docs/api.md). Issue usage lives in usage.py."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from usagemeter.auth import Caller, CallerDep, current_workspace, visible
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.web import Conn, Title, bad_request, parse_model, parse_uuid

Q = queries(__file__)


class IssueIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    title: Title


async def issue_for_caller(conn: AConn, caller: Caller, issue_id: UUID) -> Row:
    """The issue (with its workspace); 404 `issue not found` unless the caller may see it."""
    return await visible(conn, Q.issue_access, {**caller.params, "id": issue_id}, "issue")


async def list_issues(request: Request, caller: CallerDep, conn: Conn) -> list[Row]:
    ws = await current_workspace(request, caller, conn)
    return await many(conn, Q.list_issues, {"workspace_id": ws.id})


async def create_issue(request: Request, caller: CallerDep, conn: Conn) -> Any:
    body = await parse_model(request, IssueIn)
    title = body.title.strip()
    if not title:
        raise bad_request("invalid title")
    ws = await current_workspace(request, caller, conn)
    return await one(conn, Q.create_issue, {"workspace_id": ws.id, "title": title})


async def delete_issue(issue_id: str, caller: CallerDep, conn: Conn) -> dict[str, str]:
    """Delete an issue with its tasks and their usage."""
    iid = parse_uuid(issue_id, "issue_id")
    await issue_for_caller(conn, caller, iid)
    await conn.execute(Q.delete_issue, {"id": iid})
    return {"status": "ok"}
