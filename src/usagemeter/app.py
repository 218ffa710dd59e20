"""The FastAPI application. ROUTES is the table of contents of the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from usagemeter import (
    __version__,
    agents,
    daemon,
    ingest,
    issues,
    metrics,
    pricing,
    runtimes,
    tasks,
    usage,
    workspaces,
)
from usagemeter.config import Config
from usagemeter.db import make_pool
from usagemeter.rollup import tick_loop
from usagemeter.web import install_error_handlers


async def healthz() -> dict[str, str]:
    """Liveness: the process answers (no database round trip)."""
    return {"status": "ok"}


ROUTES: list[tuple[str, str, Callable[..., Any]]] = [
    # Runtimes and their reports (docs/api.md: reports, runtimes)
    ("GET", "/api/runtimes", runtimes.list_runtimes),
    ("PATCH", "/api/runtimes/{runtime_id}", runtimes.patch_runtime),
    ("DELETE", "/api/runtimes/{runtime_id}", runtimes.delete_runtime),
    ("GET", "/api/runtimes/{runtime_id}/usage", usage.runtime_usage),
    ("GET", "/api/runtimes/{runtime_id}/usage/by-agent", usage.runtime_usage_by_agent),
    ("GET", "/api/runtimes/{runtime_id}/usage/by-hour", usage.runtime_usage_by_hour),
    ("GET", "/api/runtimes/{runtime_id}/activity", usage.runtime_activity),
    # Workspace and issue reports (docs/api.md)
    ("GET", "/api/usage/daily", usage.workspace_daily),
    ("GET", "/api/usage/summary", usage.workspace_summary),
    ("GET", "/api/issues/{issue_id}/usage", usage.issue_usage),
    # Ingest (docs/api.md: ingest)
    ("POST", "/api/daemon/register", daemon.register),
    ("POST", "/api/daemon/tasks/{task_id}/usage", daemon.task_usage),
    ("POST", "/api/usage/batch", ingest.batch_usage),
    # Prices (cost of usage)
    ("GET", "/api/pricing", pricing.list_prices),
    ("GET", "/api/pricing/effective", pricing.effective_prices),
    ("PUT", "/api/pricing", pricing.set_price),
    ("DELETE", "/api/pricing/{price_id}", pricing.delete_price),
    # Management (docs/api.md)
    ("GET", "/api/me", workspaces.get_me),
    ("PATCH", "/api/me", workspaces.patch_me),
    ("GET", "/api/workspaces", workspaces.list_workspaces),
    ("POST", "/api/workspaces", workspaces.create_workspace),
    ("GET", "/api/members", workspaces.list_members),
    ("PUT", "/api/members", workspaces.put_member),
    ("DELETE", "/api/members/{user_id}", workspaces.delete_member),
    ("GET", "/api/agents", agents.list_agents),
    ("POST", "/api/agents", agents.create_agent),
    ("PATCH", "/api/agents/{agent_id}", agents.patch_agent),
    ("GET", "/api/issues", issues.list_issues),
    ("POST", "/api/issues", issues.create_issue),
    ("DELETE", "/api/issues/{issue_id}", issues.delete_issue),
    ("GET", "/api/tasks", tasks.list_tasks),
    ("POST", "/api/tasks", tasks.create_task),
    ("GET", "/api/tasks/{task_id}", tasks.get_task),
    ("POST", "/api/tasks/{task_id}/start", tasks.start_task),
    ("POST", "/api/tasks/{task_id}/complete", tasks.complete_task),
    ("POST", "/api/tasks/{task_id}/fail", tasks.fail_task),
    # Operations
    ("GET", "/healthz", healthz),
    ("GET", "/metrics", metrics.metrics),
]


def create_app(cfg: Config, database_url: str) -> FastAPI:
    """The application, serving from the database at database_url."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = make_pool(database_url, cfg.pool_size)
        await pool.open(wait=True)
        app.state.pool = pool
        ticks = (
            asyncio.create_task(tick_loop(pool, cfg.tick_seconds, metrics.TICK_ERRORS.inc))
            if cfg.tick_seconds
            else None
        )
        try:
            yield
        finally:
            if ticks:
                ticks.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ticks
            await pool.close()

    app = FastAPI(title="usagemeter", version=__version__, lifespan=lifespan)
    app.state.config = cfg
    app.state.zones = set()  # zones this process has registered with the rollup
    app.state.runtime_zones = set()  # (runtime, zone) pairs it has asked day buckets in
    install_error_handlers(app)
    app.add_middleware(metrics.Measure)
    for method, path, handler in ROUTES:
        app.add_api_route(path, handler, methods=[method], summary=_summary(handler))
    return app


def _summary(handler: Callable[..., Any]) -> str | None:
    doc = (handler.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else None
