"""Cost: effective-dated prices, lookup rules, reported cost, exact money, unpriced tokens."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import World, auth, exact, price
from usagemeter.db import Row
from usagemeter.ingest import MAX_TOKENS

D = Decimal
M = 1_000_000


@pytest.fixture
def s(world: World) -> dict[str, Any]:
    ws = world.workspace()
    rt = world.runtime(ws)
    return {
        "token": world.token(),
        "ws": ws,
        "rt": rt,
        "agent": world.agent(ws, rt),
        "today": world.today_utc(),
    }


def get(client: TestClient, url: str, token: str, slug: str | None = "acme") -> Any:
    r = client.get(url, headers=auth(token, slug))
    assert r.status_code == 200, r.text
    return exact(r)


def costs(client: TestClient, s: dict[str, Any], rt: Any = None) -> dict[tuple[str, str], Any]:
    """(provider, model) → (cost_usd, unpriced_tokens) of today's runtime usage rows."""
    rows = get(client, f"/api/runtimes/{rt or s['rt']}/usage?days=1", s["token"])
    return {(r["provider"], r["model"]): (r["cost_usd"], r["unpriced_tokens"]) for r in rows}


def test_money_is_exact(client: TestClient, world: World, s: dict[str, Any]) -> None:
    t = world.task(s["agent"], s["rt"])
    world.usage(t, provider="a", model="claude-sonnet-4-5", tokens=(M, M, M, M))
    world.usage(t, provider="a", model="claude-opus-4-1", tokens=(0, MAX_TOKENS, 0, 0))
    world.usage(t, provider="a", model="gpt-5-nano", tokens=(1, 0, 1, 0))
    assert costs(client, s) == {
        ("a", "claude-sonnet-4-5"): (D("22.05"), 0),  # 3 + 15 + 0.30 + 3.75
        ("a", "claude-opus-4-1"): (D("75000000"), 0),  # 10^12 * 75 / 1e6
        ("a", "gpt-5-nano"): (D("0.000000055"), 0),  # (0.05 + 0.005) / 1e6
    }
    r = client.get("/api/usage/summary", headers=auth(s["token"], "acme"))
    assert '"cost_usd":75000000' in r.text  # written digit for digit, no float


def test_each_token_has_the_price_in_force_at_its_usage_time(
    client: TestClient, world: World, s: dict[str, Any]
) -> None:
    # Kolkata's local day D runs from D-1 18:30 to D 18:30 UTC: a price change at D 00:00
    # UTC splits it, and each part keeps its own price.
    rt = world.runtime(s["ws"], tz="Asia/Kolkata")
    agent = world.agent(s["ws"], rt)
    day = s["today"] - timedelta(days=5)
    price(world.db, "m", ("1", "0", "0", "0"))
    price(world.db, "m", ("2", "0", "0", "0"), effective_from=str(day.date()))
    for at in (
        day - timedelta(hours=5, minutes=30),  # local D 00:00, old price
        day - timedelta(microseconds=1),  # old price
        day,  # new price
        day + timedelta(hours=18, minutes=29),  # new price, still local D
    ):
        world.usage(world.task(agent, rt), model="m", at=at, tokens=(M, 0, 0, 0))
    rows = get(client, f"/api/runtimes/{rt}/usage", s["token"])
    assert [(r["date"], r["cost_usd"]) for r in rows] == [(str(day.date()), D(6))]
    # A price from tomorrow on changes nothing that happened before it.
    tomorrow = str((s["today"] + timedelta(days=1)).date())
    price(world.db, "m", ("100", "0", "0", "0"), effective_from=tomorrow)
    assert get(client, f"/api/runtimes/{rt}/usage", s["token"]) == rows
    # A correction dated in the past applies from its date on, with no rebuild.
    price(world.db, "m", ("3", "0", "0", "0"), effective_from=str(day.date()), workspace_id=s["ws"])
    rows = get(client, f"/api/runtimes/{rt}/usage", s["token"])
    assert [r["cost_usd"] for r in rows] == [D(8)]


def test_lookup_order(client: TestClient, world: World, s: dict[str, Any]) -> None:
    other = world.workspace("other")
    other_rt = world.runtime(other)
    other_agent = world.agent(other, other_rt)
    price(world.db, "m", ("1", "0", "0", "0"))
    price(world.db, "m", ("2", "0", "0", "0"), workspace_id=s["ws"])
    price(world.db, "m", ("3", "0", "0", "0"), provider="p2")
    for provider in ("p1", "p2"):
        world.usage(
            world.task(s["agent"], s["rt"]), provider=provider, model="m", tokens=(M, 0, 0, 0)
        )
        world.usage(
            world.task(other_agent, other_rt), provider=provider, model="m", tokens=(M, 0, 0, 0)
        )
    # (provider, model) over model-only, then workspace over global.
    assert costs(client, s) == {("p1", "m"): (D(2), 0), ("p2", "m"): (D(3), 0)}
    other_token = world.token("o@example.com", workspace="other")
    other_s = {**s, "token": other_token}
    assert costs(client, other_s, other_rt) == {("p1", "m"): (D(1), 0), ("p2", "m"): (D(3), 0)}
    price(world.db, "m", ("4", "0", "0", "0"), workspace_id=s["ws"], provider="p2")
    assert costs(client, s)[("p2", "m")] == (D(4), 0)
    assert costs(client, other_s, other_rt)[("p2", "m")] == (D(3), 0)


def test_dated_and_latest_model_ids_resolve_to_their_base(
    client: TestClient, world: World, s: dict[str, Any]
) -> None:
    t = world.task(s["agent"], s["rt"])
    for model in (
        "gpt-5-2025-08-07",
        "claude-sonnet-4-5-20250929",
        "gpt-4o-latest",
        "gpt-5-2025",
        "o3-2025-04-16",
    ):
        world.usage(t, provider="x", model=model, tokens=(M, 0, 0, 0))
    price(world.db, "o3-2025-04-16", ("9", "0", "0", "0"))  # the exact id wins over o3
    assert costs(client, s) == {
        ("x", "gpt-5-2025-08-07"): (D("1.25"), 0),
        ("x", "claude-sonnet-4-5-20250929"): (D(3), 0),
        ("x", "gpt-4o-latest"): (D("2.5"), 0),
        ("x", "gpt-5-2025"): (D(0), M),  # not a date suffix: unknown model
        ("x", "o3-2025-04-16"): (D(9), 0),
    }


def test_reported_cost_wins_for_its_row(
    client: TestClient, world: World, s: dict[str, Any]
) -> None:
    t1, t2 = world.task(s["agent"], s["rt"]), world.task(s["agent"], s["rt"])
    world.usage(t1, provider="a", model="claude-sonnet-4-5", tokens=(M, 0, 0, 0), cost=D("0.01"))
    world.usage(t2, provider="a", model="claude-sonnet-4-5", tokens=(M, 0, 0, 0))
    world.usage(t1, provider="g", model="gemini-2.5-pro", tokens=(M, 0, 0, 0), cost=D("0.5"))
    world.usage(t2, provider="g", model="gemini-2.5-pro", tokens=(7, 0, 0, 0))
    assert costs(client, s) == {
        ("a", "claude-sonnet-4-5"): (D("3.01"), 0),
        ("g", "gemini-2.5-pro"): (D("0.5"), 7),
    }
    # A new report of the row replaces its cost too: without one it is estimated again.
    world.usage(t1, provider="a", model="claude-sonnet-4-5", tokens=(M, 0, 0, 0))
    assert costs(client, s)[("a", "claude-sonnet-4-5")] == (D(6), 0)


def test_every_usage_report_has_cost_and_unpriced_tokens(
    client: TestClient, world: World, s: dict[str, Any]
) -> None:
    issue = world.issue(s["ws"])
    t = world.task(s["agent"], s["rt"], issue=issue)
    at = s["today"] + timedelta(hours=1)
    world.usage(t, provider="a", model="claude-haiku-4-5", at=at, tokens=(M, M, 0, 0))
    world.usage(t, provider="b", model="unknown-model", at=at, tokens=(1, 2, 3, 4))
    want = {"claude-haiku-4-5": (D(6), 0), "unknown-model": (D(0), 10)}
    rt, tok = s["rt"], s["token"]
    for url in (
        f"/api/runtimes/{rt}/usage",
        f"/api/runtimes/{rt}/usage/by-agent",
        f"/api/runtimes/{rt}/usage/by-hour",
        "/api/usage/daily",
        "/api/usage/summary",
    ):
        rows = get(client, url, tok)
        assert {r["model"]: (r["cost_usd"], r["unpriced_tokens"]) for r in rows} == want, url
    body = get(client, f"/api/issues/{issue}/usage", tok)
    assert (body["cost_usd"], body["unpriced_tokens"]) == (D(6), 10)


def test_runtime_list_has_cost_of_the_last_two_weeks(
    client: TestClient, world: World, s: dict[str, Any]
) -> None:
    zone = "America/New_York"
    rt = world.runtime(s["ws"], tz=zone)
    agent = world.agent(s["ws"], rt)
    today = datetime.now(ZoneInfo(zone)).date()

    def at_noon(days_ago: int) -> datetime:
        return datetime.combine(today - timedelta(days=days_ago), time(12), ZoneInfo(zone))

    for days_ago, dollars in ((0, 1), (1, 10), (7, 100), (8, 1000), (14, 10000), (15, 100000)):
        tokens = (dollars * M, 0, 0, 0)  # claude-sonnet-4-5 input: $3 per million
        world.usage(world.task(agent, rt), at=at_noon(days_ago), tokens=tokens)
    world.usage(world.task(agent, rt), model="mystery", at=at_noon(2), tokens=(5, 0, 0, 0))
    rows = {r["id"]: r for r in get(client, "/api/runtimes", s["token"])}
    mine = rows[str(rt)]
    assert (mine["cost_7d_usd"], mine["cost_prev_7d_usd"]) == (3 * 110, 3 * 11000)
    assert (mine["unpriced_7d_tokens"], mine["unpriced_prev_7d_tokens"]) == (5, 0)
    idle = rows[str(s["rt"])]
    assert (idle["cost_7d_usd"], idle["cost_prev_7d_usd"], idle["unpriced_7d_tokens"]) == (0, 0, 0)


def test_pricing_api(client: TestClient, world: World, s: dict[str, Any]) -> None:
    owner = auth(s["token"], "acme")
    member = auth(world.token("m@example.com", role="member"), "acme")
    daemon = auth(world.daemon_token(), "acme")
    entry = {
        "model": "m",
        "effective_from": "2026-01-01",
        "input_per_mtok": 1,
        "output_per_mtok": 2.5,
        "cache_read_per_mtok": 0.1234,
        "cache_write_per_mtok": 0,
    }
    listed = exact(client.get("/api/pricing", headers=member))
    gpt5 = [p for p in listed if p["model"] == "gpt-5"]
    assert [
        (p["scope"], p["provider"], p["input_per_mtok"], p["cache_read_per_mtok"]) for p in gpt5
    ] == [("global", None, D("1.25"), D("0.125"))]
    for headers in (member, daemon):
        r = client.put("/api/pricing", headers=headers, json=entry)
        assert (r.status_code, r.json()) == (
            403,
            {"error": "only workspace owners and admins can change prices"},
        )
    r = client.put("/api/pricing", headers=owner, json=entry)
    assert r.status_code == 200, r.text
    created = exact(r)
    assert {k: created[k] for k in ("scope", "provider", "model", "effective_from")} == {
        "scope": "workspace",
        "provider": None,
        "model": "m",
        "effective_from": "2026-01-01",
    }
    assert [created[k] for k in entry if k.endswith("mtok")] == [D(1), D("2.5"), D("0.1234"), D(0)]
    again = exact(client.put("/api/pricing", headers=owner, json={**entry, "input_per_mtok": 1.5}))
    assert again["id"] == created["id"] and again["input_per_mtok"] == D("1.5")
    assert [p["id"] for p in exact(client.get("/api/pricing?model=m", headers=member))] == [
        created["id"]
    ]
    effective = exact(client.get("/api/pricing/effective?model=m-latest", headers=member))
    assert effective == [
        {
            "valid_from": "2026-01-01",
            "valid_to": None,
            "input_per_mtok": D("1.5"),
            "output_per_mtok": D("2.5"),
            "cache_read_per_mtok": D("0.1234"),
            "cache_write_per_mtok": D(0),
        }
    ]
    # Removal: global entries are the operator's; other workspaces' entries are invisible.
    r = client.delete(f"/api/pricing/{gpt5[0]['id']}", headers=owner)
    assert r.status_code == 403
    world.token("x@example.com", workspace="other")
    other_ws = world.workspace("other")
    price(world.db, "m", ("9", "9", "9", "9"), workspace_id=other_ws)
    other_id = world.db.execute(
        "SELECT id FROM model_price WHERE workspace_id = %s", (other_ws,)
    ).fetchone()
    assert other_id is not None
    r = client.delete(f"/api/pricing/{other_id['id']}", headers=owner)
    assert (r.status_code, r.json()) == (404, {"error": "price not found"})
    assert client.delete(f"/api/pricing/{created['id']}", headers=member).status_code == 403
    r = client.delete(f"/api/pricing/{created['id']}", headers=owner)
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    assert exact(client.get("/api/pricing?model=m", headers=member)) == []
    r = client.delete("/api/pricing/nope", headers=owner)
    assert (r.status_code, r.json()) == (400, {"error": "invalid price_id"})
    r = client.get("/api/pricing/effective", headers=member)
    assert (r.status_code, r.json()) == (400, {"error": "model is required"})


@pytest.mark.parametrize(
    "change",
    [
        {"input_per_mtok": -1},
        {"input_per_mtok": 0.00001},
        {"input_per_mtok": "1"},
        {"input_per_mtok": True},
        {"input_per_mtok": 2_000_000},
        {"cache_write_per_mtok": None},
        {"effective_from": "2026-13-01"},
        {"model": ""},
        {"input_price": 1},
    ],
)
def test_bad_price_is_rejected(
    client: TestClient, world: World, s: dict[str, Any], change: dict[str, Any]
) -> None:
    entry = {
        "model": "m",
        "input_per_mtok": 1,
        "output_per_mtok": 2,
        "cache_read_per_mtok": 0,
        "cache_write_per_mtok": 0,
        **change,
    }
    r = client.put("/api/pricing", headers=auth(s["token"], "acme"), json=entry)
    assert r.status_code == 400 and r.json()["error"].startswith("invalid request body")
    assert world.db.execute(
        "SELECT count(*) AS n FROM model_price WHERE model = 'm'"
    ).fetchone() == {"n": 0}


@pytest.mark.parametrize(
    "cost", [-1, "0.5", True, 0.00000000001, 1_000_001, 1234567.012345678, {"usd": 1}]
)
def test_bad_reported_cost_is_rejected(
    client: TestClient, world: World, s: dict[str, Any], cost: Any
) -> None:
    task = world.task(s["agent"], s["rt"])
    ok = {"model": "m", "input_tokens": 1}
    body = {"usage": [ok, {**ok, "provider": "p", "cost_usd": cost}]}
    r = client.post(f"/api/daemon/tasks/{task}/usage", headers=auth(s["token"]), json=body)
    assert (r.status_code, r.json()) == (
        400,
        {
            "error": "invalid usage entry 1: cost_usd must be a number from 0 to 1000000"
            " with at most 10 decimals and 15 significant digits"
        },
    )
    assert world.db.execute("SELECT count(*) AS n FROM task_usage").fetchone() == {"n": 0}


def test_reported_cost_through_both_ingest_routes(
    client: TestClient, world: World, s: dict[str, Any]
) -> None:
    t1, t2 = world.task(s["agent"], s["rt"]), world.task(s["agent"], s["rt"])
    entry = {"provider": "g", "model": "gemini-2.5-pro", "input_tokens": 5}
    r = client.post(
        f"/api/daemon/tasks/{t1}/usage",
        headers=auth(s["token"]),
        json={"usage": [{**entry, "cost_usd": 0.1234567891}]},
    )
    assert r.status_code == 200, r.text
    batch = [{**entry, "task_id": str(t2), "cost_usd": 99999.9999999999}]
    r = client.post("/api/usage/batch", headers=auth(s["token"], "acme"), json={"usage": batch})
    assert r.status_code == 200, r.text
    assert costs(client, s) == {("g", "gemini-2.5-pro"): (D("100000.1234567890"), 0)}


# The lookup rules, checked against a direct reading of docs/api.md in Python.

ENTRY = st.tuples(
    st.sampled_from([None, "ws"]),  # workspace
    st.sampled_from([None, "p", "q"]),  # provider
    st.sampled_from(["m", "m-20250101", "n"]),  # model
    st.integers(0, 4),  # effective_from, days after 2026-01-01
    st.integers(0, 50),  # input price
)


def expected_price(
    entries: list[tuple[Any, ...]], ws: str, provider: str, model: str, day: int
) -> int | None:
    base = model.removesuffix("-20250101").removesuffix("-latest")
    matching = [
        e
        for e in entries
        if e[2] in (model, base) and e[0] in (None, ws) and e[1] in (None, provider) and e[3] <= day
    ]
    if not matching:
        return None
    best = max(matching, key=lambda e: (e[2] == model, e[1] is not None, e[0] is not None, e[3]))
    return int(best[4])


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    entries=st.lists(ENTRY, max_size=8, unique_by=lambda e: e[:4]),
    usage=st.tuples(
        st.sampled_from(["ws", "other"]),
        st.sampled_from(["p", "q", ""]),
        st.sampled_from(["m", "m-20250101", "n-latest"]),
        st.integers(0, 6),
    ),
)
def test_price_lookup_matches_the_rules(
    db: psycopg.Connection[Row], entries: list[tuple[Any, ...]], usage: tuple[Any, ...]
) -> None:
    origin = date(2026, 1, 1)
    with db.transaction(force_rollback=True):
        ids = {
            name: db.execute(
                "INSERT INTO workspace (name, slug) VALUES (%(n)s, %(n)s) RETURNING id", {"n": name}
            ).fetchone()["id"]  # type: ignore[index]
            for name in ("ws", "other")
        }
        db.execute("DELETE FROM model_price")
        for ws, provider, model, day, input_price in entries:
            workspace_id = ids[ws] if ws else None
            prices = (str(input_price), "0", "0", "0")
            price(db, model, prices, str(origin + timedelta(days=day)), workspace_id, provider)
        ws, provider, model, day = usage
        row = db.execute(
            "SELECT (s.price).input FROM price_segments(%s, %s, %s) s WHERE s.valid @> %s::date",
            (ids[ws], provider, model, origin + timedelta(days=day)),
        ).fetchone()
    got = None if row is None else row["input"] // 10_000
    assert got == expected_price(entries, ws, provider, model, day)
