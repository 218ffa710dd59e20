"""Every route and body fuzzed from the API's own OpenAPI description (schemathesis), valid
and invalid input alike, against a real server: no response is a 5xx, every error is
`{"error": "..."}` with a documented status. Bounded here (USAGEMETER_FUZZ_EXAMPLES per
operation, default 25: about a minute); bench/fuzz.py runs the long campaign."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import World, price
from usagemeter.app import ROUTES, create_app
from usagemeter.config import Config

EXAMPLES = int(os.environ.get("USAGEMETER_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


# Hostile versions of a valid request: every string of its body and query string with a NUL
# character; every string of its body 3,000 characters long (a request line that long is
# refused by the HTTP server itself, before the application).
SPOILERS: list[tuple[Callable[[str], str], bool]] = [
    (lambda s: s + "\x00", True),
    (lambda s: ((s or "x") * 3000)[:3000], False),
]


def spoiled(value: Any, spoil: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return spoil(value)
    if isinstance(value, dict):
        return {k: spoiled(v, spoil) for k, v in value.items()}
    if isinstance(value, list):
        return [spoiled(v, spoil) for v in value]
    return value


def schema() -> Any:
    config = Config.from_env({"DATABASE_URL": "unused"})
    return schemathesis.openapi.from_dict(create_app(config, "unused").openapi())


def populate(world: World) -> tuple[dict[str, str], dict[str, str]]:
    """A workspace with a little of everything: its owner's headers, and the id of an
    object of each kind (by path parameter)."""
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws)
    agent = world.agent(ws, rt)
    issue = world.issue(ws)
    task = world.task(agent, rt, issue=issue)
    world.usage(task)
    world.usage(task, model="gemini-2.5-pro")  # unpriced
    price(world.db, "gemini-2.5-pro", ("1", "2", "0", "0"), workspace_id=ws)
    row = world.db.execute("SELECT id FROM model_price WHERE workspace_id IS NOT NULL").fetchone()
    assert row is not None
    ids = {
        "runtime_id": rt,
        "agent_id": agent,
        "issue_id": issue,
        "task_id": task,
        "user_id": world.user_id("owner@example.com"),
        "price_id": row["id"],
    }
    headers = {"Authorization": f"Bearer {token}", "X-Workspace-Slug": "acme"}
    return headers, {k: str(v) for k, v in ids.items()}


class Fuzzer:
    """Calls a real server with the cases of every operation; keeps what went wrong."""

    def __init__(self, base_url: str, headers: dict[str, str], ids: dict[str, str]) -> None:
        self.base_url, self.headers, self.ids = base_url, headers, ids
        self.session = requests.Session()
        self.failures: list[str] = []
        self.seen: Counter[tuple[str, int]] = Counter()  # responses by operation and status

    def run(self, examples: int) -> None:
        for result in schema().get_all_operations():
            operation = result.ok()
            inputs = ("path_parameters", "headers", "query", "body")
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if mode is GenerationMode.NEGATIVE and not any(
                    len(getattr(operation, part)) for part in inputs
                ):
                    continue  # nothing to make invalid (/healthz, /metrics)
                test = settings(
                    max_examples=examples,
                    deadline=None,
                    database=None,
                    suppress_health_check=list(HealthCheck),
                )(given(case=operation.as_strategy(generation_mode=mode))(self.case))
                test()

    def case(self, case: Any) -> None:
        """A generated request; a valid one on real objects, then with its strings spoiled."""
        if case.meta.generation.mode is not GenerationMode.POSITIVE:
            self.check(case, CHECKS)
            return
        case.path_parameters = {k: self.ids[k] for k in case.path_parameters or {}}
        self.check(case, CHECKS)
        body, query = case.body, case.query
        for spoil, in_query in SPOILERS:
            case.body = spoiled(body, spoil)
            case.query = spoiled(query, spoil) if in_query else query
            self.check(case, [not_a_server_error])

    def check(self, case: Any, checks: list[Any]) -> None:
        response = case.call(base_url=self.base_url, session=self.session, headers=self.headers)
        label = case.operation.label
        self.seen[label, response.status_code] += 1
        try:
            case.validate_response(response, checks=checks)
            if response.status_code >= 400:
                body = response.json()
                assert isinstance(body["error"], str)
                # Only a runtime's delete says more: why in a word, and the agents in the way.
                extra = ["code", "active_agents"] if response.status_code == 409 else []
                assert list(body) in (["error"], ["error", *extra]), list(body)
        except Exception as e:
            self.failures.append(
                f"{label}: {response.status_code} {response.text[:200]!r}"
                f" <- {case.as_curl_command()[:300]}: {e}"[:900]
            )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fuzzing_every_route_finds_no_server_error(live_url: str, world: World) -> None:
    fuzzer = Fuzzer(live_url, *populate(world))
    fuzzer.run(EXAMPLES)
    assert not fuzzer.failures, "\n".join(fuzzer.failures[:20])
    # The fuzzing got past validation: these answered with data at least once.
    ok = {label for (label, status) in fuzzer.seen if status == 200}
    assert {
        "GET /api/usage/summary",
        "GET /api/runtimes/{runtime_id}/usage",
        "GET /api/issues/{issue_id}/usage",
        "POST /api/usage/batch",
        "PUT /api/pricing",
    } <= ok, fuzzer.seen
    total = sum(fuzzer.seen.values())
    statuses = Counter[int]()
    for (_, status), n in fuzzer.seen.items():
        statuses[status] += n
    print(f"\n{total} requests over {len(ROUTES)} routes: {dict(sorted(statuses.items()))}")
