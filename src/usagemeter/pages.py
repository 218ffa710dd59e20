"""The pages: thin views over the API's own report queries, server-rendered (Jinja2).

A page runs the named queries its JSON twin's requests run, with the same parameters, and
lists those requests as `curl` commands. Charts are drawn by the vendored Chart.js from
the numbers the page prints in a table beside each chart, so a page reads without script.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, available_timezones

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from usagemeter import agents, charts, pricing, runtimes, session, usage
from usagemeter.auth import MANAGERS, Workspace
from usagemeter.db import AConn, Row, many
from usagemeter.session import Viewer
from usagemeter.web import (
    ApiError,
    Conn,
    not_found,
    parse_uuid,
    rollup_enabled,
)

TEMPLATES = Jinja2Templates(directory=Path(__file__).with_name("templates"))
# The zones a zone field suggests (a datalist, made once: a <select> of them weighed 25 kB
# per field and took milliseconds to render on every page).
ZONE_OPTIONS = Markup(
    "".join(
        f"<option>{z}</option>" for z in sorted(available_timezones() - {"localtime", "Factory"})
    )
)
PERIODS = (7, 30, 90)
HOURS = [f"{h:02d}" for h in range(24)]
# Days of history a page reads: the tiles' 90 days and the 90 before, the heatmap's 26 weeks.
HISTORY = 182


class SignIn(Exception):
    """The page needs a signed-in viewer."""


def page(handler: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """A page handler: its errors as an HTML page of their status; without a session, a
    redirect to the sign-in form (back here after)."""

    @wraps(handler)
    async def run(request: Request, *args: Any, **kwargs: Any) -> Response:
        request.scope["usagemeter.started"] = time.perf_counter()
        try:
            return await handler(request, *args, **kwargs)
        except SignIn:
            there = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/?" + urlencode({"next": there}), status_code=303)
        except ApiError as e:
            return render(
                request, "error.html", {"status": e.status, "message": e.message}, status=e.status
            )

    return run


def render(request: Request, name: str, ctx: dict[str, Any], status: int = 200) -> Response:
    """A template with what every page shows: the viewer, when and how fast it was made."""
    started = request.scope["usagemeter.started"]
    who: Viewer | None = ctx.get("who")
    zone = ZoneInfo(ctx.get("zone") or (who.zone if who else "UTC"))
    ctx = {
        "zone_options": ZONE_OPTIONS,
        "computed_at": datetime.now(zone),
        "server_ms": (time.perf_counter() - started) * 1000,
        "base_url": str(request.base_url).rstrip("/"),
        **ctx,
    }
    response = TEMPLATES.TemplateResponse(request, name, ctx, status_code=status)
    # The whole page's time, rendering included (bench/pages.py reads it).
    response.headers["Server-Timing"] = f"page;dur={(time.perf_counter() - started) * 1000:.2f}"
    return response


async def in_workspace(
    request: Request, conn: AConn, slug: str, *queries: tuple[str, dict[str, Any]]
) -> tuple[Viewer, Workspace, list[list[Row]]]:
    """The signed-in viewer and the workspace of the path (404 unless a member), with the
    rows of `queries` (which may name the workspace by its slug only), in one round trip:
    they run with the viewer's, and are shown only once the viewer may see them."""
    found, *rows = await run_all(conn, [session.viewer_query(request, slug), *queries])
    who = session.viewer_of(found)
    if who is None:
        raise SignIn
    if who.workspace_id is None or who.role is None:
        raise not_found("workspace")
    return who, Workspace(id=who.workspace_id, role=who.role), rows


async def signed_in(request: Request, conn: AConn) -> Viewer:
    """The signed-in viewer, else a redirect to the sign-in form."""
    who = await session.viewer(request, conn)
    if who is None:
        raise SignIn
    return who


def period(request: Request) -> int:
    """The page's window in days (`?days=`: 7, 30 or 90; default 30)."""
    raw = request.query_params.get("days", "30")
    if raw not in {str(p) for p in PERIODS}:
        raise ApiError(400, "days must be 7, 30 or 90")
    return int(raw)


async def with_timeline(
    request: Request, conn: AConn, params: dict[str, Any], queries: list[tuple[str, dict[str, Any]]]
) -> tuple[list[Row], list[list[Row]]]:
    """The scope's timeline of HISTORY days and the rows of `queries`, read side by side on
    two connections (the timeline takes as long as the rest together)."""
    async with request.app.state.pool.connection() as other:
        return await asyncio.gather(
            many(other, usage.Q.usage_timeline, {**params, "days": HISTORY}),
            run_all(conn, queries),
        )


async def run_all(conn: AConn, queries: list[tuple[str, dict[str, Any]]]) -> list[list[Row]]:
    """Several queries in one round trip (pipeline mode)."""
    async with conn.pipeline():
        cursors = [await conn.execute(sql, params) for sql, params in queries]
    return [await c.fetchall() for c in cursors]


def twin(path: str, **query: Any) -> str:
    """An API request of a page's JSON twin, as a path and query."""
    shown = {k: v for k, v in query.items() if v is not None}
    return path + ("?" + urlencode(shown, quote_via=quote) if shown else "")


def local_today(zone: str) -> date:
    return datetime.now(ZoneInfo(zone)).date()


# Sign-in and the workspace switcher


async def home(request: Request, conn: Conn) -> Response:
    """The sign-in form, or the first workspace of a signed-in viewer."""
    who = await session.viewer(request, conn)
    if who is None:
        return signin_form(request, request.query_params.get("next", ""))
    if who.workspaces:
        return RedirectResponse(f"/w/{quote(who.workspaces[0]['slug'])}", status_code=303)
    return render(request, "empty.html", {"who": who, "slug": ""})


def signin_form(request: Request, next_url: str, error: str = "", status: int = 200) -> Response:
    csrf = session.signin_csrf(request)
    ctx = {"csrf_token": csrf, "next": safe_next(next_url), "error": error}
    response = render(request, "signin.html", ctx, status=status)
    session.set_cookie(request, response, session.SIGNIN_COOKIE, csrf, 3600)
    return response


def safe_next(url: str) -> str:
    """Where to go after a form: a path of this site only."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"


async def switch(request: Request) -> Response:
    """The workspace switcher's form: `?slug=` to that workspace's page."""
    slug = request.query_params.get("slug", "")
    return RedirectResponse(f"/w/{quote(slug)}" if slug else "/", status_code=303)


# The workspace, its runtimes, a runtime, prices


async def workspace_page(request: Request, slug: str, conn: Conn) -> Response:
    """KPI tiles, daily cost by model, models, agents, runtimes: in the viewer's zone."""
    who, ws, _ = await in_workspace(request, conn, slug)
    days = period(request)
    params = await usage.workspace_params(request, conn, who.caller, ws.id, who.zone)
    line, (daily, summary, by_agent, rts, ags) = await with_timeline(
        request,
        conn,
        params,
        [
            (usage.Q.workspace_daily, {**params, "days": days}),
            (usage.Q.workspace_summary, {**params, "days": days}),
            (usage.Q.workspace_usage_by_agent, {**params, "days": days}),
            (runtimes.Q.list_runtimes, {**params, "mine": False, "user_id": None}),
            (agents.Q.list_agents, {"workspace_id": ws.id}),
        ],
    )
    today = local_today(who.zone)
    by_model = charts.by_model(daily, today - timedelta(days), today)
    models, model_total = charts.shares(summary, "model")
    leaders, leader_total = charts.shares(by_agent, "agent_id")
    q = {"workspace_slug": slug, "tz": who.zone}
    return render(
        request,
        "workspace.html",
        {
            "who": who,
            "slug": slug,
            "days": days,
            "zone": who.zone,
            "page": "workspace",
            "periods": charts.periods(charts.timeline(line), today),
            "daily": by_model,
            "daily_chart": by_model["chart"],
            "models": models,
            "model_total": model_total,
            "leaders": leaders,
            "leader_total": leader_total,
            "agent_names": {a["id"]: a["name"] for a in ags},
            "runtimes": runtimes.runtime_rows(rts),
            "unpriced": charts.unpriced_models(summary),
            "twins": [
                twin("/api/usage/timeline", days=HISTORY, **q),
                twin("/api/usage/daily", days=days, **q),
                twin("/api/usage/summary", days=days, **q),
                twin("/api/usage/by-agent", days=days, **q),
                twin("/api/runtimes", workspace_slug=slug),
                twin("/api/agents", workspace_slug=slug),
            ],
        },
    )


SORTS = {
    "name": lambda r: (r["custom_name"] or r["name"]).lower(),
    "status": lambda r: r["status"],
    "zone": lambda r: r["timezone"],
    "last_seen": lambda r: r["last_seen_at"] or "",
    "cost": lambda r: r["cost_7d_usd"],
    "change": lambda r: charts.change(r["cost_7d_usd"], r["cost_prev_7d_usd"]) or Decimal(-1),
    "unpriced": lambda r: r["unpriced_7d_tokens"],
}


async def runtimes_page(request: Request, slug: str, conn: Conn) -> Response:
    """Every runtime of the workspace with its last 7 days' cost: one round trip."""
    sort = request.query_params.get("sort", "cost")
    order = request.query_params.get("order", "desc")
    if sort not in SORTS or order not in ("asc", "desc"):
        raise ApiError(400, f"sort must be one of {', '.join(SORTS)}; order asc or desc")
    listing = {"slug": slug, "rollup": rollup_enabled(request)}
    who, _, (rows,) = await in_workspace(
        request, conn, slug, (runtimes.Q.runtimes_of_slug, listing)
    )
    found = runtimes.runtime_rows(rows)
    found.sort(key=SORTS[sort], reverse=order == "desc")
    return render(
        request,
        "runtimes.html",
        {
            "who": who,
            "slug": slug,
            "page": "runtimes",
            "runtimes": found,
            "sort": sort,
            "order": order,
            "twins": [twin("/api/runtimes", workspace_slug=slug)],
        },
    )


async def runtime_page(request: Request, slug: str, runtime_id: str, conn: Conn) -> Response:
    """One runtime in its own zone: tiles, daily and weekly, hours, heatmap, agents, models."""
    rid = parse_uuid(runtime_id, "runtime_id")
    who, ws, _ = await in_workspace(request, conn, slug)
    days = period(request)
    runtime, params = await usage.runtime_params(request, conn, who.caller, rid, None)
    if runtime["workspace_id"] != ws.id:
        raise not_found("runtime")
    line, (rt, by_agent, by_hour, activity, ags) = await with_timeline(
        request,
        conn,
        params,
        [
            (runtimes.Q.one_runtime, params),
            (usage.Q.runtime_usage_by_agent, {**params, "days": days}),
            (usage.Q.runtime_usage_by_hour, {**params, "days": days}),
            (usage.Q.runtime_activity, params),
            (agents.Q.list_agents, {"workspace_id": ws.id}),
        ],
    )
    zone = params["tz"]
    today = local_today(zone)
    all_days = charts.timeline(line)
    window = [d for d in all_days if d.date >= today - timedelta(days)]
    weeks = charts.weeks(all_days, today)
    agent_shares, agent_total = charts.shares(by_agent, "agent_id")
    model_shares, model_total = charts.shares(by_agent, "model")
    cost_by_hour, started_by_hour = (
        charts.hours(by_hour, "cost_usd"),
        charts.hours(activity, "count"),
    )
    q = {"tz": zone}
    base = f"/api/runtimes/{rid}"
    may_edit = ws.role in MANAGERS or runtime["owner_id"] == who.user_id
    return render(
        request,
        "runtime.html",
        {
            "who": who,
            "slug": slug,
            "days": days,
            "zone": zone,
            "page": "runtime",
            "runtime": runtimes.runtime_rows(rt)[0],
            "may_edit": may_edit,
            "periods": charts.periods(all_days, today),
            "window": window,
            "weeks": weeks,
            "kind_chart": {
                "daily": charts.by_kind(window, [d.date.isoformat() for d in window]),
                "weekly": charts.by_kind(
                    weeks, [f"{w.date}{' (partial)' if w.partial else ''}" for w in weeks]
                ),
            },
            "hour_chart": charts.chart(HOURS, {"Cost": cost_by_hour}, "usd"),
            "started_chart": charts.chart(HOURS, {"Tasks started": started_by_hour}, "count"),
            "heatmap": charts.heatmap(all_days, today),
            "cost_by_hour": cost_by_hour,
            "tokens_by_hour": charts.hours(by_hour, "tokens"),
            "started_by_hour": started_by_hour,
            "agents": agent_shares,
            "agent_total": agent_total,
            "models": model_shares,
            "model_total": model_total,
            "agent_names": {a["id"]: a["name"] for a in ags},
            "unpriced": charts.unpriced_models(by_agent),
            "kind_labels": charts.KIND_LABELS,
            "twins": [
                twin("/api/runtimes", workspace_slug=slug),
                twin(f"{base}/usage/timeline", days=HISTORY, **q),
                twin(f"{base}/usage/by-agent", days=days, **q),
                twin(f"{base}/usage/by-hour", days=days, **q),
                twin(f"{base}/activity", **q),
                twin("/api/agents", workspace_slug=slug),
            ],
        },
    )


async def prices_page(request: Request, slug: str, conn: Conn) -> Response:
    """The catalogue, the workspace's overrides, unpriced models and the price form."""
    who, ws, _ = await in_workspace(request, conn, slug)
    params = await usage.workspace_params(request, conn, who.caller, ws.id, who.zone)
    entries, summary = await run_all(
        conn,
        [
            (pricing.Q.list_prices, {"workspace_id": ws.id, "model": None, "id": None}),
            (usage.Q.workspace_summary, {**params, "days": 90}),
        ],
    )
    q = request.query_params
    draft = {
        "model": q.get("model", ""),
        "provider": q.get("provider", ""),
        "effective_from": q.get("effective_from", "2000-01-01"),
        "next": safe_next(q.get("next", "")) if q.get("next") else "",
    }
    return render(
        request,
        "prices.html",
        {
            "who": who,
            "slug": slug,
            "page": "prices",
            "zone": who.zone,
            "entries": entries,
            "unpriced": charts.unpriced_models(summary),
            "draft": draft,
            "may_edit": ws.role in MANAGERS,
            "error": q.get("error", ""),
            "twins": [
                twin("/api/pricing", workspace_slug=slug),
                twin("/api/usage/summary", workspace_slug=slug, days=90, tz=who.zone),
            ],
        },
    )


TEMPLATES.env.filters.update(
    usd=charts.usd,
    short=charts.short,
    percent=charts.percent,
    plain=charts.plain,
    chart_json=charts.chart_json,
    figure=charts.figure,
)
