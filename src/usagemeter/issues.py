"""Issues and the projects that group them: list, create, delete (docs/api.md). Issue usage
lives in usage.py."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from usagemeter.auth import Caller, CallerDep, current_workspace, visible
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.web import ApiError, Conn, Label, Title, bad_request, parse_model, parse_uuid

Q = queries(__file__)


class IssueIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    title: Title
    project_id: Label | None = None


class ProjectIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    name: Title


async def issue_for_caller(conn: AConn, caller: Caller, issue_id: UUID) -> Row:
    """The issue (with its workspace); 404 `issue not found` unless the caller may see it."""
    return await visible(conn, Q.issue_access, {**caller.params, "id": issue_id}, "issue")


async def list_issues(request: Request, caller: CallerDep, conn: Conn) -> list[Row]:
    ws = await current_workspace(request, caller, conn)
    return await many(conn, Q.list_issues, {"workspace_id": ws.id})


async def project_of_workspace(conn: AConn, project_id: UUID, workspace_id: UUID) -> None:
    """404 `project not found` unless the project is the workspace's."""
    params = {"id": project_id, "workspace_id": workspace_id}
    if await one(conn, Q.project_of_workspace, params) is None:
        raise ApiError(404, "project not found")


async def create_issue(request: Request, caller: CallerDep, conn: Conn) -> Any:
    """An issue, optionally of a project of the workspace."""
    body = await parse_model(request, IssueIn)
    title = body.title.strip()
    if not title:
        raise bad_request("invalid title")
    project = parse_uuid(body.project_id, "project_id") if body.project_id is not None else None
    ws = await current_workspace(request, caller, conn)
    if project is not None:
        await project_of_workspace(conn, project, ws.id)
    params = {"workspace_id": ws.id, "title": title, "project_id": project}
    return await one(conn, Q.create_issue, params)


async def list_projects(request: Request, caller: CallerDep, conn: Conn) -> list[Row]:
    ws = await current_workspace(request, caller, conn)
    return await many(conn, Q.list_projects, {"workspace_id": ws.id})


async def create_project(request: Request, caller: CallerDep, conn: Conn) -> Any:
    """A project of the workspace, to group its issues."""
    body = await parse_model(request, ProjectIn)
    name = body.name.strip()
    if not name:
        raise bad_request("invalid name")
    ws = await current_workspace(request, caller, conn)
    return await one(conn, Q.create_project, {"workspace_id": ws.id, "name": name})


async def delete_issue(issue_id: str, caller: CallerDep, conn: Conn) -> dict[str, str]:
    """Delete an issue with its tasks and their usage."""
    iid = parse_uuid(issue_id, "issue_id")
    await issue_for_caller(conn, caller, iid)
    await conn.execute(Q.delete_issue, {"id": iid})
    return {"status": "ok"}
