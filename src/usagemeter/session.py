"""Sessions of the pages: sign in with a personal access token, a cookie, CSRF tokens.

The cookie is HttpOnly and SameSite=Lax and holds a random token whose hash is the
session's row; it authorises pages only (auth.authenticate reads the Authorization header
alone, so a cookie never authorises /api/*). Every form carries a CSRF token: the
session's own, or before sign-in the value of a cookie the form repeats.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

from fastapi import Request, Response

from usagemeter.auth import PAT_PREFIX, Caller, digest, new_token
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.web import ApiError

Q = queries(__file__)

COOKIE = "usagemeter_session"
SIGNIN_COOKIE = "usagemeter_signin"  # the CSRF token of the sign-in form
SESSION_DAYS = 14
FORM_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Viewer:
    """The signed-in user of a page."""

    session_id: UUID
    csrf_token: str
    user_id: UUID
    email: str
    name: str
    timezone: str | None
    workspace_id: UUID | None  # the page's workspace, when the viewer is a member
    role: str | None
    workspaces: list[dict[str, str]]  # slug and name of each of the viewer's workspaces

    @property
    def caller(self) -> Caller:
        return Caller(user_id=self.user_id, daemon_workspace_id=None, timezone=self.timezone)

    @property
    def zone(self) -> str:
        return self.timezone or "UTC"


def viewer_query(request: Request, slug: str | None = None) -> tuple[str, dict[str, Any]]:
    """The query of the request's viewer (see viewer()), to run with others."""
    token = request.cookies.get(COOKIE) or ""
    return Q.session_viewer, {"token_hash": digest(token), "slug": slug}


def viewer_of(rows: list[Row]) -> Viewer | None:
    """The viewer viewer_query found, if any."""
    return Viewer(**rows[0]) if rows else None


async def viewer(request: Request, conn: AConn, slug: str | None = None) -> Viewer | None:
    """The user of the request's live session, if any (with their role in `slug`)."""
    if not request.cookies.get(COOKIE):
        return None
    return viewer_of(await many(conn, *viewer_query(request, slug)))


async def read_form(request: Request) -> dict[str, str]:
    """A posted form's fields (the last value of each), or 415/400. An empty body is an
    empty form, whatever its type."""
    body = await request.body()
    if not body:
        return {}
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM_TYPE:
        raise ApiError(415, f"a form is posted as {FORM_TYPE}")
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid form body") from None


def check_csrf(form: dict[str, str], expected: str | None) -> None:
    """403 unless the form carries the expected CSRF token."""
    sent = form.get("csrf_token", "")
    if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise ApiError(403, "this form has expired or did not come from this site: reload it")


def signin_csrf(request: Request) -> str:
    """The sign-in form's CSRF token: the cookie's, else a new one (set by the page)."""
    return request.cookies.get(SIGNIN_COOKIE) or secrets.token_urlsafe(24)


async def sign_in(request: Request, conn: AConn, form: dict[str, str], response: Response) -> None:
    """Check the form and its token; start a session and set its cookie on `response`."""
    check_csrf(form, request.cookies.get(SIGNIN_COOKIE))
    token = form.get("token", "").strip()
    if not token.startswith(PAT_PREFIX):
        raise ApiError(401, f"sign in with a personal access token (it starts with {PAT_PREFIX})")
    row = await one(conn, Q.signin_token, {"token_hash": digest(token)})
    if row is None:
        raise ApiError(401, "this token is unknown or has been revoked")
    session = new_token("")
    params = {
        "token_hash": digest(session),
        "token_id": row["id"],
        "csrf_token": secrets.token_urlsafe(24),
        "days": SESSION_DAYS,
    }
    await conn.execute(Q.create_session, params)
    set_cookie(request, response, COOKIE, session, SESSION_DAYS * 86400)
    response.delete_cookie(SIGNIN_COOKIE, path="/")


async def sign_out(conn: AConn, who: Viewer, response: Response) -> None:
    """End the session (its row deleted) and clear the cookie."""
    await conn.execute(Q.delete_session, {"session_id": who.session_id})
    response.delete_cookie(COOKIE, path="/")


def set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    """An HttpOnly, SameSite=Lax cookie for the whole site, Secure over HTTPS."""
    options: dict[str, Any] = {"httponly": True, "samesite": "lax", "path": "/"}
    response.set_cookie(name, value, max_age=age, secure=request.url.scheme == "https", **options)
