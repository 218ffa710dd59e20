"""The pages' forms: sign-in and sign-out, the viewer's and a runtime's zone, prices.

Each checks the form's CSRF token (session.py) before anything else, writes through the
same functions as the API, and answers with a redirect to the page to show next.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from urllib.parse import quote, urlencode

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from usagemeter import pricing, runtimes, session, workspaces
from usagemeter.auth import workspace_access
from usagemeter.db import AConn
from usagemeter.pages import safe_next, signed_in, signin_form
from usagemeter.session import Viewer
from usagemeter.web import ApiError, Conn, is_zone, parse_uuid, reason


async def signin(request: Request, conn: Conn) -> Response:
    """Check the token and start a session."""
    form = await session.read_form(request)
    response = RedirectResponse(safe_next(form.get("next", "")), status_code=303)
    try:
        await session.sign_in(request, conn, form, response)
    except ApiError as e:
        return signin_form(request, form.get("next", ""), e.message, e.status)
    return response


async def signout(request: Request, conn: Conn) -> Response:
    """End the session."""
    form = await session.read_form(request)
    who = await session.viewer(request, conn)
    if who is None:
        return RedirectResponse("/", status_code=303)
    session.check_csrf(form, who.csrf_token)
    response = RedirectResponse("/", status_code=303)
    await session.sign_out(conn, who, response)
    return response


async def posted(request: Request, conn: AConn) -> tuple[Viewer, dict[str, str]]:
    """The signed-in viewer and the form, its CSRF token checked."""
    form = await session.read_form(request)
    who = await signed_in(request, conn)
    session.check_csrf(form, who.csrf_token)
    return who, form


def zone_field(form: dict[str, str]) -> str:
    zone = form.get("timezone", "").strip()
    if not is_zone(zone):
        raise ApiError(400, f"unknown time zone {zone!r}: choose an IANA name such as Asia/Kolkata")
    return zone


async def set_viewer_zone(request: Request, conn: Conn) -> Response:
    """The viewer's own zone (the user's timezone): the zone of workspace pages."""
    who, form = await posted(request, conn)
    params = {
        "user_id": who.user_id,
        "name": None,
        "set_timezone": True,
        "timezone": zone_field(form),
    }
    await conn.execute(workspaces.Q.update_me, params)
    return RedirectResponse(safe_next(form.get("next", "")), status_code=303)


async def set_runtime_zone(request: Request, slug: str, runtime_id: str, conn: Conn) -> Response:
    """The zone editor of a runtime page (owners, admins, the runtime's owner)."""
    who, form = await posted(request, conn)
    rid = parse_uuid(runtime_id, "runtime_id")
    zone = zone_field(form)
    await runtimes.set_zone(conn, who.caller, rid, zone)
    return RedirectResponse(f"/w/{quote(slug)}/runtimes/{rid}", status_code=303)


async def set_price(request: Request, slug: str, conn: Conn) -> Response:
    """Create or replace a workspace price from the form (owners and admins)."""
    who, form = await posted(request, conn)
    ws = await workspace_access(conn, who.caller, id=None, slug=slug)
    fields = {k: form.get(k, "").strip() for k in ("model", "provider", "effective_from", "next")}
    try:
        entry = pricing.PriceIn.model_validate(
            {
                "model": fields["model"],
                "provider": fields["provider"] or None,
                "effective_from": fields["effective_from"] or None,
                **{k: form_decimal(form, k) for k in pricing.PRICE_FIELDS},
            }
        )
    except ValidationError as e:
        first = e.errors()[0]
        why = f"{'.'.join(str(p) for p in first['loc'])} {reason(first)}"
        # The fields come back into the form (cut short: a redirect is a header).
        back = urlencode({**{k: v[:300] for k, v in fields.items()}, "error": why})
        return RedirectResponse(f"/w/{quote(slug)}/prices?{back}#set-price", status_code=303)
    await pricing.store(conn, ws, entry)
    return RedirectResponse(
        safe_next(form.get("next", "")) if form.get("next") else f"/w/{quote(slug)}/prices",
        status_code=303,
    )


def form_decimal(form: dict[str, str], name: str) -> Decimal | str:
    """A price field as an exact decimal (left as text when it is not one, which the model
    then refuses)."""
    text = form.get(name, "").strip()
    try:
        number = Decimal(text)
    except InvalidOperation:
        return text
    return number if number.is_finite() else text


async def delete_price(request: Request, slug: str, price_id: str, conn: Conn) -> Response:
    """Remove a workspace override (owners and admins)."""
    who, _ = await posted(request, conn)
    ws = await workspace_access(conn, who.caller, id=None, slug=slug)
    await pricing.remove(conn, ws, parse_uuid(price_id, "price_id"))
    return RedirectResponse(f"/w/{quote(slug)}/prices", status_code=303)
