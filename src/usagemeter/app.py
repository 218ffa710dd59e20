"""The FastAPI application. ROUTES is the table of contents of the API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from usagemeter import (
    __version__,
    agents,
    daemon,
    forms,
    ingest,
    issues,
    metrics,
    otlp,
    pages,
    pricing,
    runtimes,
    tasks,
    usage,
    workspaces,
)
from usagemeter.config import Config
from usagemeter.db import make_pool
from usagemeter.guard import Compressed, Guard
from usagemeter.openapi import Route, describe_api
from usagemeter.rollup import tick_loop
from usagemeter.web import install_error_handlers, retrying


async def healthz() -> dict[str, str]:
    """Liveness: the process answers (no database round trip)."""
    return {"status": "ok"}


ROUTES: list[Route] = [
    # Runtimes and their reports (docs/api.md: reports, runtimes)
    Route("GET", "/api/runtimes", runtimes.list_runtimes, workspace=True),
    Route(
        "PATCH", "/api/runtimes/{runtime_id}", runtimes.patch_runtime, runtimes.RuntimePatch, (403,)
    ),
    Route("DELETE", "/api/runtimes/{runtime_id}", runtimes.delete_runtime, errors=(403, 409)),
    Route(
        "POST",
        "/api/runtimes/{runtime_id}/unbind-agents-and-delete",
        runtimes.unbind_agents_and_delete,
        runtimes.UnbindBody,
        (403, 409),
    ),
    Route("GET", "/api/runtimes/{runtime_id}/usage", usage.runtime_usage),
    Route("GET", "/api/runtimes/{runtime_id}/usage/by-agent", usage.runtime_usage_by_agent),
    Route("GET", "/api/runtimes/{runtime_id}/usage/by-hour", usage.runtime_usage_by_hour),
    Route("GET", "/api/runtimes/{runtime_id}/activity", usage.runtime_activity),
    Route("GET", "/api/runtimes/{runtime_id}/usage/timeline", usage.runtime_timeline),
    # Workspace and issue reports (docs/api.md)
    Route("GET", "/api/usage/daily", usage.workspace_daily, workspace=True),
    Route("GET", "/api/usage/summary", usage.workspace_summary, workspace=True),
    Route("GET", "/api/usage/by-agent", usage.workspace_by_agent, workspace=True),
    Route("GET", "/api/usage/timeline", usage.workspace_timeline, workspace=True),
    Route("GET", "/api/issues/{issue_id}/usage", usage.issue_usage),
    Route("GET", "/api/dashboard/usage/daily", usage.dashboard_usage_daily, workspace=True),
    Route("GET", "/api/dashboard/usage/by-agent", usage.dashboard_usage_by_agent, workspace=True),
    Route("GET", "/api/dashboard/agent-runtime", usage.dashboard_agent_runtime, workspace=True),
    Route("GET", "/api/dashboard/runtime/daily", usage.dashboard_runtime_daily, workspace=True),
    Route("GET", "/api/dashboard/failures/daily", usage.dashboard_failures_daily, workspace=True),
    Route(
        "GET", "/api/dashboard/failures/by-agent", usage.dashboard_failures_by_agent, workspace=True
    ),
    # Ingest (docs/api.md: ingest)
    Route("POST", "/api/daemon/register", daemon.register, daemon.RegisterBody, (403,)),
    Route("GET", "/api/daemon/workspaces", daemon.daemon_workspaces),
    Route("POST", "/api/daemon/tasks/{task_id}/usage", daemon.task_usage, ingest.DaemonUsageBody),
    Route("POST", "/api/usage/batch", ingest.batch_usage, ingest.BatchBody, workspace=True),
    # Prices (cost of usage)
    Route("GET", "/api/pricing", pricing.list_prices, workspace=True),
    Route("GET", "/api/pricing/effective", pricing.effective_prices, workspace=True),
    Route("PUT", "/api/pricing", pricing.set_price, pricing.PriceIn, (403,), workspace=True),
    Route("DELETE", "/api/pricing/{price_id}", pricing.delete_price, errors=(403,), workspace=True),
    # Management (docs/api.md)
    Route("GET", "/api/me", workspaces.get_me, errors=(403,)),
    Route("PATCH", "/api/me", workspaces.patch_me, workspaces.MeIn, (403,)),
    Route("GET", "/api/workspaces", workspaces.list_workspaces),
    Route(
        "POST", "/api/workspaces", workspaces.create_workspace, workspaces.WorkspaceIn, (403, 409)
    ),
    Route("GET", "/api/members", workspaces.list_members, errors=(403,), workspace=True),
    Route(
        "PUT",
        "/api/members",
        workspaces.put_member,
        workspaces.MemberIn,
        (403, 409),
        workspace=True,
    ),
    Route(
        "DELETE",
        "/api/members/{user_id}",
        workspaces.delete_member,
        errors=(403, 409),
        workspace=True,
    ),
    Route("GET", "/api/agents", agents.list_agents, workspace=True),
    Route("POST", "/api/agents", agents.create_agent, agents.AgentIn, (409,), workspace=True),
    Route("PATCH", "/api/agents/{agent_id}", agents.patch_agent, agents.AgentPatch, (403, 409)),
    Route("GET", "/api/issues", issues.list_issues, workspace=True),
    Route("POST", "/api/issues", issues.create_issue, issues.IssueIn, workspace=True),
    Route("DELETE", "/api/issues/{issue_id}", issues.delete_issue),
    Route("GET", "/api/projects", issues.list_projects, workspace=True),
    Route("POST", "/api/projects", issues.create_project, issues.ProjectIn, workspace=True),
    Route("GET", "/api/tasks", tasks.list_tasks, workspace=True),
    Route("POST", "/api/tasks", tasks.create_task, tasks.TaskIn, (409,), workspace=True),
    Route("GET", "/api/tasks/{task_id}", tasks.get_task),
    Route("POST", "/api/tasks/{task_id}/start", tasks.start_task, errors=(409,)),
    Route("POST", "/api/tasks/{task_id}/complete", tasks.complete_task, tasks.EndBody, (409,)),
    Route("POST", "/api/tasks/{task_id}/fail", tasks.fail_task, tasks.FailBody, (409,)),
    # Operations
    Route("GET", "/healthz", healthz),
    Route("GET", "/readyz", metrics.readyz, errors=(503,)),
    Route("GET", "/metrics", metrics.metrics, errors=(401, 503)),
]


# The pages (pages.py): HTML for people, signed in with a session cookie; not in the API's
# description. Every form posts its CSRF token.
PAGES: list[Route] = [
    Route("GET", "/", pages.home),
    Route("POST", "/signin", forms.signin),
    Route("POST", "/signout", forms.signout),
    Route("POST", "/zone", forms.set_viewer_zone),
    Route("GET", "/w", pages.switch),
    Route("GET", "/w/{slug}", pages.workspace_page),
    Route("GET", "/w/{slug}/runtimes", pages.runtimes_page),
    Route("GET", "/w/{slug}/runtimes/{runtime_id}", pages.runtime_page),
    Route("POST", "/w/{slug}/runtimes/{runtime_id}/zone", forms.set_runtime_zone),
    Route("GET", "/w/{slug}/prices", pages.prices_page),
    Route("POST", "/w/{slug}/prices", forms.set_price),
    Route("POST", "/w/{slug}/prices/{price_id}/delete", forms.delete_price),
]


# OpenTelemetry's OTLP/HTTP (docs/otlp.md): its own protocol and error bodies, so not in the
# API's description.
OTLP: list[Route] = [
    Route("POST", "/v1/logs", otlp.export_logs),
    Route("POST", "/v1/metrics", otlp.export_metrics),
]


STATIC = Path(__file__).with_name("static")


async def docs() -> HTMLResponse:
    """Swagger UI over /openapi.json, from the vendored swagger-ui-dist (no CDN)."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="usagemeter API",
        swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger-ui/swagger-ui.css",
        swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        swagger_ui_parameters={"persistAuthorization": True},
    )


def create_app(cfg: Config, database_url: str) -> FastAPI:
    """The application, serving from the database at database_url."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = make_pool(database_url, cfg.pool_size, cfg.statement_timeout)
        await pool.open(wait=True)
        app.state.pool = pool
        ticks = (
            asyncio.create_task(tick_loop(pool, cfg.tick_seconds, metrics.TICK_ERRORS.inc))
            if cfg.tick_seconds
            else None
        )
        # What startup made lives as long as the process: out of the collector's way, so that
        # a full collection (which a 10,000-entry batch soon starts) does not scan it.
        gc.freeze()
        try:
            yield
        finally:
            if ticks:
                ticks.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticks
            await pool.close()

    app = FastAPI(
        title="usagemeter", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/docs", docs, include_in_schema=False)
    app.state.config = cfg
    app.state.zones = set()  # zones this process has registered with the rollup
    app.state.runtime_zones = set()  # (runtime, zone) pairs it has asked day buckets in
    install_error_handlers(app)
    app.add_middleware(Compressed)
    app.add_middleware(metrics.Measure)
    app.add_middleware(Guard, max_body=cfg.max_body, body_timeout=cfg.body_timeout)
    for route in ROUTES:
        app.add_api_route(
            route.path,
            retrying(route.handler),
            methods=[route.method],
            summary=_summary(route.handler),
        )
    for route in OTLP:
        app.add_api_route(
            route.path, retrying(route.handler), methods=[route.method], include_in_schema=False
        )
    for route in PAGES:
        app.add_api_route(
            route.path,
            retrying(pages.page(route.handler)),
            methods=[route.method],
            include_in_schema=False,
        )
    app.openapi = lambda: describe_api(app, ROUTES)  # type: ignore[method-assign]
    return app


def _summary(handler: Callable[..., Any]) -> str | None:
    doc = (handler.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else None


def from_env() -> FastAPI:
    """The application of one of `usagemeter serve --workers N`'s processes."""
    cfg = Config.from_env()
    assert cfg.database_url, "serve sets DATABASE_URL for its processes"
    return create_app(cfg, cfg.database_url)
