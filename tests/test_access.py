"""The authorisation matrix: every route, called by every kind of caller, answers the
documented status and never shows another workspace's data."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import JSON, World, price
from usagemeter.app import ROUTES

# The callers, in the order of each expectation below: no token, an unknown token, a user
# of another workspace only, the other workspace's daemon token, then acme's member, admin,
# owner and daemon token.
CALLERS = ("none", "bad", "outsider", "other_daemon", "member", "admin", "owner", "daemon")

Make = Callable[["Scene"], tuple[str, Any]]


class Scene:
    """Workspace acme (the one called) and beta (the other), each with a little of
    everything; `fresh_*` make a new object for a call that uses one up."""

    def __init__(self, world: World) -> None:
        self.w = world
        self.tokens = {
            "owner": world.token("owner@acme.io", "acme", "owner"),
            "admin": world.token("admin@acme.io", "acme", "admin"),
            "member": world.token("member@acme.io", "acme", "member"),
            "daemon": world.daemon_token("acme"),
            "outsider": world.token("owner@beta.io", "beta", "owner"),
            "other_daemon": world.daemon_token("beta"),
            "bad": "mul_" + "0" * 40,
        }
        self.ws = world.workspace("acme")
        self.rt = world.runtime(self.ws, name="acme-runtime")
        self.agent = world.agent(self.ws, self.rt, "acme-agent")
        self.issue = world.issue(self.ws, "acme-issue")
        task = world.task(self.agent, self.rt, issue=self.issue)
        world.usage(task, model="acme-model")
        beta = world.workspace("beta")
        beta_rt = world.runtime(beta, name="beta-runtime")
        beta_task = world.task(world.agent(beta, beta_rt, "beta-agent"), beta_rt)
        world.usage(beta_task, model="beta-model")
        # What each workspace's callers must never see of the other's.
        self.secrets = {
            "acme": {str(self.rt), str(self.agent), "acme-issue", "acme-model"},
            "beta": {str(beta_rt), "beta-agent", "beta-model"},
        }

    def fresh_task(self) -> str:
        return str(self.w.task(self.agent, self.rt))

    def running_task(self) -> str:
        task = self.w.task(self.agent, self.rt)
        self.w.db.execute("UPDATE agent_task_queue SET status = 'running' WHERE id = %s", (task,))
        return str(task)

    def fresh_issue(self) -> str:
        return str(self.w.issue(self.ws, "to delete"))

    def fresh_runtime(self) -> str:
        return str(self.w.runtime(self.ws, name="to delete"))

    def fresh_price(self) -> str:
        model = f"m-{uuid.uuid4().hex[:8]}"
        price(self.w.db, model, ("1", "1", "1", "1"), workspace_id=self.ws)
        row = self.w.db.execute("SELECT id FROM model_price WHERE model = %s", (model,)).fetchone()
        assert row is not None
        return str(row["id"])

    def fresh_member(self) -> str:
        email = f"{uuid.uuid4().hex[:8]}@acme.io"
        self.w.token(email, "acme", "member")
        return str(self.w.user_id(email))


PRICE = {"input_per_mtok": 1, "output_per_mtok": 1, "cache_read_per_mtok": 0}
PRICE |= {"cache_write_per_mtok": 0}

# (method, path) -> how to call it, and the status each caller gets (in CALLERS order).
MATRIX: dict[tuple[str, str], tuple[Make, str]] = {
    ("GET", "/api/runtimes"): (
        lambda s: ("/api/runtimes", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("PATCH", "/api/runtimes/{runtime_id}"): (
        lambda s: (f"/api/runtimes/{s.rt}", {"timezone": "Asia/Kolkata"}),
        "401 401 404 404 403 200 200 403",
    ),
    ("DELETE", "/api/runtimes/{runtime_id}"): (
        lambda s: (f"/api/runtimes/{s.fresh_runtime()}", None),
        "401 401 404 404 403 200 200 403",
    ),
    ("POST", "/api/runtimes/{runtime_id}/unbind-agents-and-delete"): (
        lambda s: (
            f"/api/runtimes/{s.fresh_runtime()}/unbind-agents-and-delete",
            {"expected_active_agent_ids": []},
        ),
        "401 401 404 404 403 200 200 403",
    ),
    ("GET", "/api/runtimes/{runtime_id}/usage"): (
        lambda s: (f"/api/runtimes/{s.rt}/usage", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/runtimes/{runtime_id}/usage/by-agent"): (
        lambda s: (f"/api/runtimes/{s.rt}/usage/by-agent", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/runtimes/{runtime_id}/usage/by-hour"): (
        lambda s: (f"/api/runtimes/{s.rt}/usage/by-hour", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/runtimes/{runtime_id}/activity"): (
        lambda s: (f"/api/runtimes/{s.rt}/activity", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/runtimes/{runtime_id}/usage/timeline"): (
        lambda s: (f"/api/runtimes/{s.rt}/usage/timeline", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/usage/timeline"): (
        lambda s: ("/api/usage/timeline", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/usage/by-agent"): (
        lambda s: ("/api/usage/by-agent", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/usage/daily"): (
        lambda s: ("/api/usage/daily", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/dashboard/usage/daily"): (
        lambda s: ("/api/dashboard/usage/daily", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/dashboard/usage/by-agent"): (
        lambda s: ("/api/dashboard/usage/by-agent", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/dashboard/agent-runtime"): (
        lambda s: ("/api/dashboard/agent-runtime", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/dashboard/runtime/daily"): (
        lambda s: ("/api/dashboard/runtime/daily", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/dashboard/failures/daily"): (
        lambda s: ("/api/dashboard/failures/daily", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/dashboard/failures/by-agent"): (
        lambda s: ("/api/dashboard/failures/by-agent", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/usage/summary"): (
        lambda s: ("/api/usage/summary", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/issues/{issue_id}/usage"): (
        lambda s: (f"/api/issues/{s.issue}/usage", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("POST", "/api/daemon/register"): (
        lambda s: (
            "/api/daemon/register",
            {
                "workspace_id": str(s.ws),
                "daemon_id": uuid.uuid4().hex,
                "runtimes": [{"type": "codex"}],
            },
        ),
        "401 401 404 404 200 200 200 200",
    ),
    ("POST", "/api/daemon/tasks/{task_id}/usage"): (
        lambda s: (f"/api/daemon/tasks/{s.fresh_task()}/usage", {"usage": [{"model": "m"}]}),
        "401 401 404 404 200 200 200 200",
    ),
    ("POST", "/api/usage/batch"): (
        lambda s: ("/api/usage/batch", {"usage": [{"task_id": s.fresh_task(), "model": "m"}]}),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/pricing"): (lambda s: ("/api/pricing", None), "401 401 404 404 200 200 200 200"),
    ("GET", "/api/pricing/effective"): (
        lambda s: ("/api/pricing/effective?model=claude-sonnet-4-5", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("PUT", "/api/pricing"): (
        lambda s: ("/api/pricing", {"model": "acme-model", **PRICE}),
        "401 401 404 404 403 200 200 403",
    ),
    ("DELETE", "/api/pricing/{price_id}"): (
        lambda s: (f"/api/pricing/{s.fresh_price()}", None),
        "401 401 404 404 403 200 200 403",
    ),
    ("GET", "/api/me"): (lambda s: ("/api/me", None), "401 401 200 403 200 200 200 403"),
    ("PATCH", "/api/me"): (lambda s: ("/api/me", {"name": "n"}), "401 401 200 403 200 200 200 403"),
    ("GET", "/api/workspaces"): (
        lambda s: ("/api/workspaces", None),
        "401 401 200 200 200 200 200 200",
    ),
    ("GET", "/api/daemon/workspaces"): (
        lambda s: ("/api/daemon/workspaces", None),
        "401 401 200 200 200 200 200 200",
    ),
    ("POST", "/api/workspaces"): (
        lambda s: ("/api/workspaces", {"slug": f"w-{uuid.uuid4().hex[:8]}"}),
        "401 401 200 403 200 200 200 403",
    ),
    ("GET", "/api/members"): (lambda s: ("/api/members", None), "401 401 404 403 200 200 200 403"),
    ("PUT", "/api/members"): (
        lambda s: ("/api/members", {"email": f"{uuid.uuid4().hex[:8]}@acme.io"}),
        "401 401 404 404 403 200 200 403",
    ),
    ("DELETE", "/api/members/{user_id}"): (
        lambda s: (f"/api/members/{s.fresh_member()}", None),
        "401 401 404 404 403 200 200 403",
    ),
    ("GET", "/api/agents"): (lambda s: ("/api/agents", None), "401 401 404 404 200 200 200 200"),
    ("POST", "/api/agents"): (
        lambda s: ("/api/agents", {"name": uuid.uuid4().hex, "runtime_id": str(s.rt)}),
        "401 401 404 404 200 200 200 200",
    ),
    ("PATCH", "/api/agents/{agent_id}"): (
        lambda s: (f"/api/agents/{s.agent}", {"name": "acme-agent"}),
        "401 401 404 404 403 200 200 403",
    ),
    ("GET", "/api/issues"): (lambda s: ("/api/issues", None), "401 401 404 404 200 200 200 200"),
    ("POST", "/api/issues"): (
        lambda s: ("/api/issues", {"title": "t"}),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/projects"): (
        lambda s: ("/api/projects", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("POST", "/api/projects"): (
        lambda s: ("/api/projects", {"name": "p"}),
        "401 401 404 404 200 200 200 200",
    ),
    ("DELETE", "/api/issues/{issue_id}"): (
        lambda s: (f"/api/issues/{s.fresh_issue()}", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/tasks"): (lambda s: ("/api/tasks", None), "401 401 404 404 200 200 200 200"),
    ("POST", "/api/tasks"): (
        lambda s: ("/api/tasks", {"agent_id": str(s.agent)}),
        "401 401 404 404 200 200 200 200",
    ),
    ("GET", "/api/tasks/{task_id}"): (
        lambda s: (f"/api/tasks/{s.fresh_task()}", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("POST", "/api/tasks/{task_id}/start"): (
        lambda s: (f"/api/tasks/{s.fresh_task()}/start", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("POST", "/api/tasks/{task_id}/complete"): (
        lambda s: (f"/api/tasks/{s.running_task()}/complete", None),
        "401 401 404 404 200 200 200 200",
    ),
    ("POST", "/api/tasks/{task_id}/fail"): (
        lambda s: (f"/api/tasks/{s.fresh_task()}/fail", None),
        "401 401 404 404 200 200 200 200",
    ),
}


def test_the_matrix_covers_every_api_route() -> None:
    api = {(r.method, r.path) for r in ROUTES if r.path.startswith("/api/")}
    assert set(MATRIX) == api


@pytest.fixture
def scene(world: World) -> Scene:
    return Scene(world)


@pytest.mark.parametrize(("method", "path"), sorted(MATRIX))
def test_every_caller_gets_the_documented_status(
    client: TestClient, scene: Scene, method: str, path: str
) -> None:
    make, statuses = MATRIX[method, path]
    got = {}
    for caller in CALLERS:
        url, body = make(scene)
        headers = {"X-Workspace-Slug": "acme", **JSON}
        if caller != "none":
            headers["Authorization"] = f"Bearer {scene.tokens[caller]}"
        r = client.request(method, url, headers=headers, json=body)
        got[caller] = r.status_code
        if r.status_code >= 400:
            assert list(r.json()) == ["error"], r.text
        # Never another workspace's data: beta's callers see nothing of acme, acme's
        # callers nothing of beta.
        own = "beta" if caller in ("outsider", "other_daemon") else "acme"
        other = "acme" if own == "beta" else "beta"
        leaked = [s for s in scene.secrets[other] if s in r.text]
        assert not leaked, (caller, leaked, r.text[:300])
        assert not (own == "beta" and "acme" in r.text), (caller, r.text[:300])
    assert " ".join(str(got[c]) for c in CALLERS) == statuses, got
