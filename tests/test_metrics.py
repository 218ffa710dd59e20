"""Prometheus metrics of requests (metrics.py)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import World, auth, ok
from usagemeter.app import create_app
from usagemeter.config import Config


def test_metrics_count_and_time_requests_by_route(client: TestClient, world: World) -> None:
    rid = world.runtime(world.workspace())
    token = world.token()
    route = 'method="GET",route="/api/runtimes/{runtime_id}/usage"'
    series = [
        f'usagemeter_http_requests_total{{{route},status="200"}}',
        f'usagemeter_http_requests_total{{{route},status="401"}}',
        f"usagemeter_http_request_duration_seconds_count{{{route}}}",
        'usagemeter_http_requests_total{method="GET",route="/healthz",status="200"}',
    ]

    def counts() -> list[float]:
        """The series' values now (the registry lives as long as the process)."""
        lines = [line for line in client.get("/metrics").text.splitlines() if line[:1] != "#"]
        values = {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines)}
        return [values.get(s, 0.0) for s in series]

    before = counts()
    for _ in range(2):
        ok(client.get(f"/api/runtimes/{rid}/usage", headers=auth(token)))
    assert client.get(f"/api/runtimes/{rid}/usage").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert [a - b for a, b in zip(counts(), before, strict=True)] == [2, 1, 3, 1]


def test_metrics_take_a_token_when_one_is_set(db_url: str) -> None:
    env = {"DATABASE_URL": "set", "USAGEMETER_TICK_SECONDS": "0"}
    with TestClient(create_app(Config.from_env(env), db_url)) as open_:
        assert open_.get("/metrics").status_code == 200
    env["USAGEMETER_METRICS_TOKEN"] = "s3cret"
    with TestClient(create_app(Config.from_env(env), db_url)) as closed:
        assert closed.get("/metrics").json() == {"error": "missing authorization"}
        r = closed.get("/metrics", headers={"Authorization": "Bearer nope"})
        assert (r.status_code, r.json()) == (401, {"error": "invalid token"})
        r = closed.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and "usagemeter_rollup_queue_depth" in r.text
        assert "acme" not in r.text
