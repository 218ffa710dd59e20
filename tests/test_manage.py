"""Agents, issues and tasks (agents.py, issues.py, tasks.py): their lifecycle and validation."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import World, auth, ok


def test_agents_issues_tasks_lifecycle(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    rt1, rt2 = world.runtime(ws), world.runtime(ws)
    h = auth(token, "acme")
    agent = ok(client.post("/api/agents", headers=h, json={"name": "bot", "runtime_id": str(rt1)}))
    r = client.post("/api/agents", headers=h, json={"name": "bot", "runtime_id": str(rt1)})
    assert (r.status_code, r.json()) == (409, {"error": "agent name already taken"})
    issue = ok(client.post("/api/issues", headers=h, json={"title": "Fix it"}))
    issue2 = ok(client.post("/api/issues", headers=h, json={"title": "Again"}))
    assert (issue["number"], issue2["number"]) == (1, 2)
    task = ok(
        client.post(
            "/api/tasks", headers=h, json={"agent_id": agent["id"], "issue_id": issue["id"]}
        )
    )
    assert (task["status"], task["runtime_id"], task["started_at"]) == ("queued", str(rt1), None)
    r = client.post(f"/api/tasks/{task['id']}/complete", headers=h)
    assert (r.status_code, r.json()) == (409, {"error": "task is queued"})
    started = ok(client.post(f"/api/tasks/{task['id']}/start", headers=h))
    assert started["status"] == "running" and started["started_at"] is not None
    done = ok(client.post(f"/api/tasks/{task['id']}/complete", headers=h))
    assert done["status"] == "completed" and done["completed_at"] is not None
    activity = ok(client.get(f"/api/runtimes/{rt1}/activity", headers=h))
    assert sum(a["count"] for a in activity) == 1
    # Rebinding sends new tasks to the new runtime; old tasks stay.
    moved = ok(client.patch(f"/api/agents/{agent['id']}", headers=h, json={"runtime_id": str(rt2)}))
    assert moved["runtime_id"] == str(rt2)
    t2 = ok(client.post("/api/tasks", headers=h, json={"agent_id": agent["id"]}))
    assert t2["runtime_id"] == str(rt2)
    assert ok(client.get(f"/api/tasks/{task['id']}", headers=h))["runtime_id"] == str(rt1)
    assert [t["id"] for t in ok(client.get("/api/tasks?status=completed", headers=h))] == [
        task["id"]
    ]
    failed = ok(client.post(f"/api/tasks/{t2['id']}/fail", headers=h))
    assert failed["status"] == "failed"
    archived = ok(client.patch(f"/api/agents/{agent['id']}", headers=h, json={"archived": True}))
    assert archived["archived_at"] is not None
    r = client.post("/api/tasks", headers=h, json={"agent_id": agent["id"]})
    assert (r.status_code, r.json()) == (409, {"error": "agent is archived"})
    assert [i["title"] for i in ok(client.get("/api/issues", headers=h))] == ["Fix it", "Again"]
    assert [a["name"] for a in ok(client.get("/api/agents", headers=h))] == ["bot"]
    ok(client.delete(f"/api/issues/{issue['id']}", headers=h))
    r = client.get(f"/api/tasks/{task['id']}", headers=h)
    assert (r.status_code, r.json()) == (404, {"error": "task not found"})


def test_management_validation(client: TestClient, world: World) -> None:
    token = world.token()
    ws = world.workspace()
    world.token("o@example.com", workspace="other")
    other_rt = world.runtime(world.workspace("other"))
    h = auth(token, "acme")
    cases = [
        ("post", "/api/agents", {"name": "a", "runtime_id": "x"}, 400, "invalid runtime_id"),
        ("post", "/api/agents", {"name": " ", "runtime_id": str(other_rt)}, 400, "invalid name"),
        (
            "post",
            "/api/agents",
            {"name": "a", "runtime_id": str(other_rt)},
            404,
            "runtime not found",
        ),
        ("post", "/api/agents", {"name": 5}, 400, "invalid request body: name is invalid"),
        ("post", "/api/issues", {"title": ""}, 400, "invalid title"),
        ("post", "/api/tasks", {"agent_id": "x"}, 400, "invalid agent_id"),
        (
            "post",
            "/api/tasks",
            {"agent_id": "00000000-0000-0000-0000-000000000000"},
            404,
            "agent not found",
        ),
        ("patch", "/api/agents/nope", {}, 400, "invalid agent_id"),
        ("delete", "/api/issues/nope", None, 400, "invalid issue_id"),
        ("get", "/api/tasks/nope", None, 400, "invalid task_id"),
        ("get", "/api/tasks?status=odd", None, 400, "invalid status"),
        ("get", "/api/tasks?limit=0", None, 400, "invalid limit"),
        ("get", "/api/tasks?limit=%C2%B2", None, 400, "invalid limit"),  # "²" is a digit to str
        ("get", "/api/tasks?limit=%D9%A3", None, 400, "invalid limit"),  # an Arabic-Indic 3
    ]
    for method, url, body, status, error in cases:
        r = client.request(method, url, headers=h, json=body)
        assert (r.status_code, r.json()) == (status, {"error": error}), url
    assert world.db.execute(
        "SELECT count(*) AS n FROM agent WHERE workspace_id = %s", (ws,)
    ).fetchone() == {"n": 0}


def test_a_task_cannot_be_linked_to_another_workspaces_issue(
    client: TestClient, world: World
) -> None:
    # A user in both workspaces: acme's task may not take beta's issue, or beta's owners
    # would delete acme's usage with their issue.
    token = world.token("both@example.com", "acme")
    world.token("both@example.com", "beta")
    acme, beta = world.workspace("acme"), world.workspace("beta")
    rt = world.runtime(acme)
    agent = world.agent(acme, rt)
    theirs = world.issue(beta)
    body = {"agent_id": str(agent), "issue_id": str(theirs)}
    r = client.post("/api/tasks", headers=auth(token, "acme"), json=body)
    assert (r.status_code, r.json()) == (404, {"error": "issue not found"})
    ours = world.issue(acme)
    r = client.post("/api/tasks", headers=auth(token, "acme"), json={**body, "issue_id": str(ours)})
    assert r.status_code == 200, r.text
    assert world.db.execute("SELECT issue_id FROM agent_task_queue").fetchall() == [
        {"issue_id": ours}
    ]


def test_a_failed_task_keeps_its_reason_and_the_dashboard_counts_failures_by_it(
    client: TestClient, world: World
) -> None:
    token = world.token()
    h = auth(token, "acme")
    rt = world.runtime(world.workspace())
    agent = client.post("/api/agents", headers=h, json={"name": "bot", "runtime_id": str(rt)})
    aid = agent.json()["id"]

    def task() -> str:
        tid = client.post("/api/tasks", headers=h, json={"agent_id": aid}).json()["id"]
        assert client.post(f"/api/tasks/{tid}/start", headers=h).status_code == 200
        return str(tid)

    done = task()
    assert client.post(f"/api/tasks/{done}/complete", headers=h).json()["failure_reason"] is None
    body = {"failure_reason": "agent_context_overflow", "error": "too long", "session_id": "s"}
    failed = client.post(f"/api/tasks/{task()}/fail", headers=h, json=body)
    assert (failed.status_code, failed.json()["failure_reason"]) == (200, "agent_context_overflow")
    assert client.post(f"/api/tasks/{task()}/fail", headers=h).status_code == 200  # no body
    blank = client.post(f"/api/tasks/{task()}/fail", headers=h, json={"failure_reason": ""})
    assert blank.json()["failure_reason"] == ""
    # A bad reason is refused, and that task stays running (not counted below).
    r = client.post(f"/api/tasks/{task()}/fail", headers=h, json={"failure_reason": 5})
    assert (r.status_code, r.json()) == (
        400,
        {"error": "invalid request body: failure_reason is invalid"},
    )
    daily = client.get("/api/dashboard/failures/daily?days=1&tz=UTC", headers=h).json()
    assert [(r["failure_reason"], r["task_count"]) for r in daily] == [
        ("", 1),
        ("agent_context_overflow", 1),
        ("unclassified", 2),
    ]
    by_agent = client.get("/api/dashboard/failures/by-agent?days=1", headers=h).json()
    assert [(r["agent_id"], r["failure_reason"], r["task_count"]) for r in by_agent] == [
        (aid, "", 1),
        (aid, "agent_context_overflow", 1),
        (aid, "unclassified", 2),
    ]
