"""Read endpoints of docs/api.md: shapes, ordering, windows, parameters, access."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import World, auth
from usagemeter import rollup
from usagemeter.db import connect
from usagemeter.web import describe, json_query

TOKENS4 = ["input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"]
TOTALS4 = [f"total_{k}" for k in TOKENS4]
# Reported cost in 1e-10 USD and the tokens of rows without one, as today's Multica reads them.
MULTICA_COST = ["cost_usd_ticks", *(f"uncosted_{t}" for t in TOKENS4)]
COST = ["cost_usd", "unpriced_tokens", *MULTICA_COST]


@pytest.fixture
def setup(world: World) -> dict[str, Any]:
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws, tz="UTC")
    a1, a2 = world.agent(ws, rt, "a1"), world.agent(ws, rt, "a2")
    today = world.today_utc()
    return {"token": token, "ws": ws, "rt": rt, "a1": a1, "a2": a2, "today": today}


def get(client: TestClient, url: str, token: str, slug: str | None = None) -> Any:
    r = client.get(url, headers=auth(token, slug))
    assert r.status_code == 200, r.text
    return r.json()


def test_runtime_usage_shape_and_order(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    t = world.task(s["a1"], s["rt"])
    at = s["today"] + timedelta(hours=1)
    for provider, model in [("b", "m"), ("a", "zeta"), ("a", "Zeta"), ("a", "alpha")]:
        world.usage(t, model=model, provider=provider, at=at, tokens=(1, 2, 3, 4))
    world.usage(
        world.task(s["a1"], s["rt"]), model="alpha", provider="a", at=at - timedelta(days=1)
    )
    rows = get(client, f"/api/runtimes/{s['rt']}/usage", s["token"])
    assert list(rows[0]) == ["runtime_id", "date", "provider", "model", *TOKENS4, *COST]
    keys = [(r["date"], r["provider"], r["model"]) for r in rows]
    d0, d1 = str(s["today"].date()), str((s["today"] - timedelta(days=1)).date())
    assert keys == [
        (d0, "a", "Zeta"),
        (d0, "a", "alpha"),
        (d0, "a", "zeta"),
        (d0, "b", "m"),
        (d1, "a", "alpha"),
    ]
    assert rows[0]["runtime_id"] == str(s["rt"])
    assert [rows[0][k] for k in TOKENS4] == [1, 2, 3, 4]


def test_task_count_is_distinct_tasks(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    t1, t2, t3 = (world.task(s["a1"], s["rt"]) for _ in range(3))
    at = s["today"] + timedelta(minutes=10)
    world.usage(t1, model="m", provider="p1", at=at)
    world.usage(
        t1, model="m", provider="p2", at=at + timedelta(hours=3)
    )  # same model, two providers
    world.usage(t2, model="m", provider="p1", at=at)
    world.usage(t3, model="other", provider="p1", at=at)
    by_agent = get(client, f"/api/runtimes/{s['rt']}/usage/by-agent", s["token"])
    assert list(by_agent[0]) == ["agent_id", "provider", "model", *TOKENS4, "task_count", *COST]
    assert [(r["model"], r["task_count"], r["input_tokens"]) for r in by_agent] == [
        ("m", 2, 300),
        ("other", 1, 100),
    ]
    summary = get(client, "/api/usage/summary", s["token"], "acme")
    assert [(r["model"], r["task_count"]) for r in summary] == [("m", 2), ("other", 1)]
    daily = get(client, "/api/usage/daily", s["token"], "acme")
    assert list(daily[0]) == ["date", "model", *TOTALS4, "task_count", *COST]
    assert [(r["model"], r["task_count"]) for r in daily] == [("m", 2), ("other", 1)]
    by_hour = get(client, f"/api/runtimes/{s['rt']}/usage/by-hour", s["token"])
    assert list(by_hour[0]) == ["hour", "model", *TOKENS4, "task_count", *COST]
    assert [(r["hour"], r["model"], r["task_count"]) for r in by_hour] == [
        (0, "m", 2),
        (0, "other", 1),
        (3, "m", 1),
    ]


def test_by_agent_orders_by_agent_then_model(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    for agent in (s["a2"], s["a1"]):
        for model in ("b", "B", "a"):
            world.usage(world.task(agent, s["rt"]), model=model)
    rows = get(client, f"/api/runtimes/{s['rt']}/usage/by-agent", s["token"])
    expected = [(a, m) for a in sorted([str(s["a1"]), str(s["a2"])]) for m in ("B", "a", "b")]
    assert [(r["agent_id"], r["model"]) for r in rows] == expected


def test_summary_orders_by_input_plus_output_then_model(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    t = world.task(s["a1"], s["rt"])
    world.usage(t, model="small", tokens=(1, 1, 999, 999))
    world.usage(t, model="tie-b", tokens=(5, 5, 0, 0))
    world.usage(t, model="tie-a", tokens=(9, 1, 0, 0))
    world.usage(t, model="big", tokens=(100, 0, 0, 0))
    rows = get(client, "/api/usage/summary", s["token"], "acme")
    assert list(rows[0]) == ["model", *TOTALS4, "task_count", *COST]
    assert [r["model"] for r in rows] == ["big", "tie-a", "tie-b", "small"]


def test_default_windows_and_future_usage(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    t = world.task(s["a1"], s["rt"])
    day = timedelta(days=1)
    edge30, edge90 = s["today"] - 30 * day, s["today"] - 90 * day
    for model, at in [
        ("in30", edge30),
        ("out30", edge30 - timedelta(seconds=1)),
        ("in90", edge90),
        ("out90", edge90 - timedelta(seconds=1)),
        ("future", s["today"] + 40 * day),
    ]:
        world.usage(t, model=model, at=at)

    def models(url: str) -> list[str]:
        return sorted({r["model"] for r in get(client, url, s["token"], "acme")})

    rt = s["rt"]
    assert models(f"/api/runtimes/{rt}/usage") == ["future", "in30", "in90", "out30"]
    assert models(f"/api/runtimes/{rt}/usage/by-agent") == ["future", "in30"]
    assert models(f"/api/runtimes/{rt}/usage/by-hour") == ["future", "in30"]
    assert models("/api/usage/daily") == ["future", "in30"]
    assert models("/api/usage/summary") == ["future", "in30"]
    assert models(f"/api/runtimes/{rt}/usage/by-agent?days=90") == [
        "future",
        "in30",
        "in90",
        "out30",
    ]
    assert models(f"/api/runtimes/{rt}/usage?days=365") == [
        "future",
        "in30",
        "in90",
        "out30",
        "out90",
    ]


@pytest.mark.parametrize("days", ["0", "366", "abc", "1.5", "-1", "+5", " 5", "1e2", "0x10", "٣"])
@pytest.mark.parametrize(
    "path",
    ["/usage", "/usage/by-agent", "/usage/by-hour", "WS/api/usage/daily", "WS/api/usage/summary"],
)
def test_invalid_days(client: TestClient, setup: dict[str, Any], path: str, days: str) -> None:
    url = path[2:] if path.startswith("WS") else f"/api/runtimes/{setup['rt']}{path}"
    r = client.get(url, params={"days": days}, headers=auth(setup["token"], "acme"))
    assert (r.status_code, r.json()) == (400, {"error": "invalid days"})


@pytest.mark.parametrize(
    "tz",
    [
        "Mars/Olympus",
        "+05:30",
        "utc",
        "asia/kolkata",
        "EST5EDT,M3.2.0,M11.1.0",
        "/etc/passwd",
        "../UTC",
        "localtime",
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "/usage",
        "/usage/by-agent",
        "/usage/by-hour",
        "/activity",
        "WS/api/usage/daily",
        "WS/api/usage/summary",
    ],
)
def test_invalid_tz(client: TestClient, setup: dict[str, Any], path: str, tz: str) -> None:
    url = path[2:] if path.startswith("WS") else f"/api/runtimes/{setup['rt']}{path}"
    r = client.get(url, params={"tz": tz}, headers=auth(setup["token"], "acme"))
    assert (r.status_code, r.json()) == (400, {"error": "invalid timezone"})


def test_empty_days_and_tz_mean_default(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    world.usage(world.task(setup["a1"], setup["rt"]), at=setup["today"] - timedelta(days=60))
    rows = get(client, f"/api/runtimes/{setup['rt']}/usage?days=&tz=", setup["token"])
    assert len(rows) == 1  # default 90 days, runtime zone
    assert get(client, f"/api/runtimes/{setup['rt']}/usage?days=365", setup["token"]) == rows


def test_activity_counts_started_tasks_by_local_hour(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    old = s["today"] - timedelta(days=400)  # all time: far outside any window
    world.task(s["a1"], s["rt"], started_at=old + timedelta(hours=23, minutes=50))
    world.task(s["a1"], s["rt"], started_at=s["today"] + timedelta(hours=23, minutes=10))
    world.task(s["a2"], s["rt"], started_at=s["today"] + timedelta(hours=5))
    world.task(s["a2"], s["rt"])  # never started
    url = f"/api/runtimes/{s['rt']}/activity"
    assert get(client, url + "?days=1", s["token"]) == [
        {"hour": 5, "count": 1},
        {"hour": 23, "count": 2},
    ]
    assert get(client, url + "?tz=Asia/Kolkata", s["token"]) == [
        {"hour": 4, "count": 1},
        {"hour": 5, "count": 1},
        {"hour": 10, "count": 1},
    ]


def test_runtime_zone_change_applies_to_the_next_read(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    world.usage(world.task(s["a1"], s["rt"]), at=s["today"] - timedelta(days=2, minutes=1))
    url = f"/api/runtimes/{s['rt']}/usage"
    before = get(client, url, s["token"])[0]["date"]
    client.patch(
        f"/api/runtimes/{s['rt']}", headers=auth(s["token"]), json={"timezone": "Asia/Tokyo"}
    )
    after = get(client, url, s["token"])[0]["date"]
    assert (before, after) == (
        str((s["today"] - timedelta(days=3)).date()),
        str((s["today"] - timedelta(days=2)).date()),
    )


def test_workspace_reports_default_to_the_callers_zone(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    world.usage(world.task(s["a1"], s["rt"]), at=s["today"] - timedelta(days=2, minutes=1))

    def dates(q: str = "") -> list[str]:
        return [r["date"] for r in get(client, "/api/usage/daily" + q, s["token"], "acme")]

    utc_date = str((s["today"] - timedelta(days=3)).date())
    assert dates() == [utc_date]
    r = client.patch("/api/me", headers=auth(s["token"]), json={"timezone": "Asia/Tokyo"})
    assert r.status_code == 200 and r.json()["timezone"] == "Asia/Tokyo"
    assert dates() == [str((s["today"] - timedelta(days=2)).date())]
    assert dates("?tz=UTC") == [utc_date]


def test_issue_usage(client: TestClient, world: World, setup: dict[str, Any]) -> None:
    s = setup
    issue, empty = world.issue(s["ws"]), world.issue(s["ws"])
    t1, t2 = world.task(s["a1"], s["rt"], issue=issue), world.task(s["a2"], s["rt"], issue=issue)
    world.usage(t1, model="a", tokens=(1, 2, 3, 4), at=s["today"] - timedelta(days=500))
    world.usage(t1, model="b", tokens=(10, 20, 30, 40))
    world.usage(t2, model="a", tokens=(100, 200, 300, 400))
    world.task(s["a1"], s["rt"], issue=issue)  # no usage: not a contributing task

    def totals(*values: int) -> dict[str, int]:
        return dict(zip([*TOTALS4, "task_count", *COST], values, strict=True))

    # Models "a" and "b" have no price: every token is unpriced and the cost is 0.
    body = get(client, f"/api/issues/{issue}/usage", s["token"])
    # No reported cost either: every token is uncosted.
    assert body == totals(111, 222, 333, 444, 2, 0, 1110, 0, 111, 222, 333, 444)
    assert get(client, f"/api/issues/{empty}/usage", s["token"]) == totals(*[0] * 12)


def test_issue_usage_errors(client: TestClient, world: World, setup: dict[str, Any]) -> None:
    outsider = world.token("out@example.com", workspace="other")
    issue = world.issue(setup["ws"])
    r = client.get("/api/issues/nope/usage", headers=auth(setup["token"]))
    assert (r.status_code, r.json()) == (400, {"error": "invalid issue_id"})
    r = client.get(f"/api/issues/{issue}/usage", headers=auth(outsider))
    assert (r.status_code, r.json()) == (404, {"error": "issue not found"})
    r = client.get(
        "/api/issues/00000000-0000-0000-0000-000000000000/usage", headers=auth(setup["token"])
    )
    assert (r.status_code, r.json()) == (404, {"error": "issue not found"})


@pytest.mark.parametrize("suffix", ["/usage", "/usage/by-agent", "/usage/by-hour", "/activity"])
def test_runtime_of_another_workspace_is_not_found(
    client: TestClient, world: World, setup: dict[str, Any], suffix: str
) -> None:
    outsider = world.token("out@example.com", workspace="other")
    for rid in (setup["rt"], "00000000-0000-0000-0000-000000000000", str(setup["rt"]).upper()):
        r = client.get(f"/api/runtimes/{rid}{suffix}", headers=auth(outsider))
        assert (r.status_code, r.json()) == (404, {"error": "runtime not found"})
    r = client.get(
        f"/api/runtimes/{str(setup['rt']).upper()}{suffix}", headers=auth(setup["token"])
    )
    assert r.status_code == 200


def test_lists_are_arrays_never_null(client: TestClient, setup: dict[str, Any]) -> None:
    for url in ["/usage", "/usage/by-agent", "/usage/by-hour", "/activity"]:
        assert get(client, f"/api/runtimes/{setup['rt']}{url}", setup["token"]) == []
    assert get(client, "/api/usage/daily", setup["token"], "acme") == []
    assert get(client, "/api/usage/summary", setup["token"], "acme") == []


def test_json_bodies_are_what_row_to_json_writes(db: Any, db_url: str) -> None:
    """Report bodies are built by concatenation and casts: byte for byte row_to_json's text,
    for every type a report returns, NULLs, escapes and ISO dates included, whatever the
    database's DateStyle."""
    sql = r"""
        SELECT * FROM (VALUES
            ('7a3f7e1e-0c1a-4f59-9d5e-3f1c2b8a9d10'::uuid, date '2026-03-29', 'plain',
             9223372036854775807::bigint, 7::int, 0.0000000001::numeric, true, 'it''s',
             timestamptz '2026-03-29 01:30:00+00', '{"a": [1, 2]}'::jsonb),
            (NULL, date '0044-03-15', E'q"uote \\ back\nline\ttab\u0001 ünï €',
             -1, NULL, 12.5000::numeric, false, NULL, NULL, NULL),
            (NULL, NULL, NULL, NULL, -2, NULL, NULL, '', timestamptz 'infinity', 'null'::jsonb)
        ) v("id", "day", "text", "big", "int", "num", "flag", "odd ""kéy"" it's", "at", "doc")
        ORDER BY "big" NULLS LAST"""
    name = db.execute("SELECT current_database() AS name").fetchone()["name"]
    db.execute(f"ALTER DATABASE \"{name}\" SET DateStyle = 'German'")
    conn: Any
    with connect(db_url) as conn:  # a new session: the database's DateStyle, then ours
        columns = conn.execute(describe(sql)).description
        body = conn.execute(json_query(sql, columns)).fetchone()["body"]
        empty = conn.execute(json_query(sql + " LIMIT 0", columns)).fetchone()["body"]
    reference = db.execute(
        f"SELECT '[' || string_agg(row_to_json(q)::text, ',') || ']' AS body FROM ({sql}) q"
    ).fetchone()["body"]
    assert body == reference
    assert json.loads(body)[0]["text"] == 'q"uote \\ back\nline\ttab\x01 ünï €'
    assert [r["day"] for r in json.loads(body)] == ["0044-03-15", "2026-03-29", None]
    assert empty == "[]"


def test_sums_past_bigint_are_exact_in_every_report(
    client: TestClient, world: World, setup: dict[str, Any], db: Any
) -> None:
    # Rows written by plain SQL at the largest values the table holds: 1,100 of them sum
    # past 2^63 in one bucket, priced and unpriced. Every report answers, exactly, before
    # and after the tick folds them.
    s, big = setup, 2**63 - 1
    issue = world.issue(s["ws"])
    at = s["today"] - timedelta(days=1) + timedelta(minutes=1)
    db.execute(
        "WITH t AS (INSERT INTO agent_task_queue (agent_id, runtime_id, issue_id)"
        " SELECT %(a)s, %(r)s, %(i)s FROM generate_series(1, 1100) RETURNING id)"
        " INSERT INTO task_usage (task_id, provider, model, input_tokens, output_tokens,"
        " cache_read_tokens, cache_write_tokens, created_at)"
        " SELECT t.id, p.provider, p.model, %(big)s, %(big)s, %(big)s, %(big)s, %(at)s"
        " FROM t, (VALUES ('anthropic', 'claude-sonnet-4-5'), ('x', 'no-price')) p(provider, model)",
        {"a": s["a1"], "r": s["rt"], "i": issue, "big": big, "at": at},
    )
    n = 1100 * big
    # claude-sonnet-4-5: 3 + 15 + 0.30 + 3.75 USD per million tokens of each kind
    cost = format(Decimal(n) * Decimal("0.00002205"), "f").rstrip("0").rstrip(".")
    rt, ws = s["rt"], f"workspace_id={s['ws']}"
    urls = [
        f"/api/runtimes/{rt}/usage",
        f"/api/runtimes/{rt}/usage/by-agent",
        f"/api/runtimes/{rt}/usage/by-hour",
        f"/api/usage/daily?{ws}",
        f"/api/usage/summary?{ws}",
        f"/api/runtimes?{ws}",
        f"/api/issues/{issue}/usage",
    ]
    for tick in (False, True):
        if tick:
            # the statement's 2,200 rows queued as one change per model, each past 2^63
            assert db.execute("SELECT rollup(100000) AS n").fetchone()["n"] == 2
        for url in urls:
            r = client.get(url, headers=auth(s["token"]))
            assert r.status_code == 200, (url, r.text)
            body = json.loads(r.text, parse_float=str, parse_int=str)
            text = json.dumps(body)
            assert str(4 * n) in text or str(n) in text, (url, text[:300])
        daily = json.loads(
            client.get(f"/api/runtimes/{rt}/usage", headers=auth(s["token"])).text,
            parse_int=str,
            parse_float=str,
        )
        by_model = {r["model"]: r for r in daily}
        assert [by_model["no-price"][k] for k in TOKENS4] == [str(n)] * 4
        assert by_model["no-price"]["unpriced_tokens"] == str(4 * n)
        assert by_model["claude-sonnet-4-5"]["cost_usd"] == cost


def test_the_timeline_lists_every_date_with_its_costs_by_kind_and_tasks_started(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s, today = setup, setup["today"]

    def spend(days_ago: int, tokens: tuple[int, int, int, int], **kw: Any) -> None:
        at = today - timedelta(days=days_ago) + timedelta(hours=2)
        world.usage(world.task(s["a1"], s["rt"], started_at=at), at=at, tokens=tokens, **kw)

    spend(1, (1000, 100, 4000, 500))  # claude-sonnet-4-5: $3, $15, $0.30, $3.75 per M
    spend(1, (10, 0, 0, 0), model="reported-model", cost=Decimal("1.5"))  # no price: by tokens
    spend(2, (7, 0, 0, 0), model="mystery")  # no price, no reported cost
    spend(0, (0, 0, 2000, 0))
    world.task(s["a2"], s["rt"], started_at=today - timedelta(days=2))  # started, no usage yet
    rows = get(client, f"/api/runtimes/{s['rt']}/usage/timeline?days=3", s["token"])
    assert [r["date"] for r in rows] == [str((today - timedelta(days=n)).date()) for n in range(4)]
    assert list(rows[0]) == [
        "date",
        *TOKENS4,
        "cost_usd",
        "input_cost_usd",
        "output_cost_usd",
        "cache_read_cost_usd",
        "cache_write_cost_usd",
        "unpriced_tokens",
        "cache_savings_usd",
        "tasks_started",
    ]
    by = {r["date"]: r for r in rows}
    yesterday = by[str((today - timedelta(days=1)).date())]
    assert [yesterday[k] for k in TOKENS4] == [1010, 100, 4000, 500]
    # $0.003 + $0.0015 + $0.0012 + $0.001875 at the price, and $1.5 reported: all input.
    assert yesterday["cost_usd"] == 1.507575
    assert [
        yesterday[f"{k}_cost_usd"] for k in ("input", "output", "cache_read", "cache_write")
    ] == [1.503, 0.0015, 0.0012, 0.001875]
    assert yesterday["cache_savings_usd"] == 0.0108  # 4,000 cache reads at $3 - $0.30 per M
    assert (yesterday["unpriced_tokens"], yesterday["tasks_started"]) == (0, 2)
    before = by[str((today - timedelta(days=2)).date())]
    assert (before["unpriced_tokens"], before["cost_usd"], before["tasks_started"]) == (7, 0, 2)
    assert by[str(today.date())]["cache_savings_usd"] == 0.0054
    empty = by[str((today - timedelta(days=3)).date())]
    assert [empty[k] for k in TOKENS4] == [0, 0, 0, 0] and empty["tasks_started"] == 0
    # The workspace's timeline is its runtimes' (one here), in the caller's zone.
    assert get(client, "/api/usage/timeline?days=3", s["token"], "acme") == rows


def test_workspace_by_agent_sums_the_runtimes(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    s = setup
    other_rt = world.runtime(s["ws"], tz="Asia/Kolkata")
    a3 = world.agent(s["ws"], other_rt, "a3")
    at = s["today"] - timedelta(days=1)
    for agent, rt, model in [(s["a1"], s["rt"], "m1"), (a3, other_rt, "m1"), (a3, other_rt, "m2")]:
        task = world.task(agent, rt)
        world.usage(task, model=model, at=at, tokens=(10, 1, 0, 0))
    beta = world.workspace("beta")
    beta_rt = world.runtime(beta)
    world.usage(world.task(world.agent(beta, beta_rt), beta_rt), model="m1", at=at)
    rows = get(client, "/api/usage/by-agent?days=7", s["token"], "acme")
    assert [
        (r["agent_id"], r["model"], r["input_tokens"], r["task_count"]) for r in rows
    ] == sorted([(str(s["a1"]), "m1", 10, 1), (str(a3), "m1", 10, 1), (str(a3), "m2", 10, 1)])
    assert list(rows[0]) == ["agent_id", "model", *TOKENS4, "task_count", *COST]


def test_every_usage_row_splits_reported_cost_from_uncosted_tokens(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    # As today's Multica reads them: cost_usd_ticks sums the reported costs (1e-10 USD) and
    # uncosted_* the tokens of rows without one. A runtime's by-agent row names its
    # providers, sorted and joined, while it still counts distinct tasks per (agent, model).
    s = setup
    issue = world.issue(s["ws"])
    t1, t2 = world.task(s["a1"], s["rt"], issue=issue), world.task(s["a1"], s["rt"], issue=issue)
    at = s["today"] + timedelta(minutes=30)
    world.usage(t1, provider="b", at=at, tokens=(1, 2, 3, 4), cost=Decimal("0.0012345"))
    world.usage(t1, provider="a", at=at, tokens=(10, 20, 30, 40))
    world.usage(t2, provider="a", at=at, tokens=(100, 200, 300, 400))
    expected = {
        "cost_usd_ticks": 12_345_000,
        "uncosted_input_tokens": 110,
        "uncosted_output_tokens": 220,
        "uncosted_cache_read_tokens": 330,
        "uncosted_cache_write_tokens": 440,
    }
    ws = f"workspace_id={s['ws']}"
    urls = [
        f"/api/usage/daily?{ws}",
        f"/api/usage/summary?{ws}",
        f"/api/usage/by-agent?{ws}",
        f"/api/runtimes/{s['rt']}/usage/by-agent",
        f"/api/runtimes/{s['rt']}/usage/by-hour",
    ]
    for folded in (False, True):
        if folded:
            rollup.drain(world.db)
        for url in urls:
            (row,) = get(client, url, s["token"])
            assert {k: row[k] for k in expected} == expected, url
            assert row["task_count"] == 2, url
        by_provider = get(client, f"/api/runtimes/{s['rt']}/usage", s["token"])
        assert [
            (r["provider"], r["cost_usd_ticks"], r["uncosted_input_tokens"]) for r in by_provider
        ] == [("a", 0, 110), ("b", 12_345_000, 0)]
        (by_agent,) = get(client, f"/api/runtimes/{s['rt']}/usage/by-agent", s["token"])
        assert by_agent["provider"] == "a,b"
        assert {k: get(client, f"/api/issues/{issue}/usage", s["token"])[k] for k in expected} == (
            expected
        )


def test_dashboard_routes_of_today_s_multica(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    # Per local date: `days` dates plus today; per agent: exactly `days` dates, today included.
    s = setup
    today = s["today"]
    t1, t2 = world.task(s["a1"], s["rt"]), world.task(s["a2"], s["rt"])
    world.usage(t1, at=today + timedelta(minutes=5), tokens=(1, 2, 3, 4))
    world.usage(t2, at=today - timedelta(hours=1), tokens=(10, 20, 30, 40))
    ended = [  # (agent, status, started, seconds run): ends today, but the last yesterday
        (s["a1"], "completed", today + timedelta(minutes=1), 90),
        (s["a1"], "failed", today + timedelta(minutes=2), 30),
        (s["a2"], "cancelled", today + timedelta(minutes=3), 5),
        (s["a2"], "completed", today - timedelta(hours=2), 60),
    ]
    for agent, status, started, seconds in ended:
        world.db.execute(
            "INSERT INTO agent_task_queue (agent_id, runtime_id, status, started_at, completed_at)"
            " VALUES (%s, %s, %s, %s, %s)",
            (agent, s["rt"], status, started, started + timedelta(seconds=seconds)),
        )
    world.db.execute(  # cancelled before it started: no run time, not counted
        "INSERT INTO agent_task_queue (agent_id, runtime_id, status, completed_at)"
        " VALUES (%s, %s, 'cancelled', %s)",
        (s["a1"], s["rt"], today + timedelta(minutes=4)),
    )
    ws = f"workspace_id={s['ws']}&tz=UTC&days=1"
    daily = get(client, f"/api/dashboard/usage/daily?{ws}", s["token"])
    assert [(r["date"], r["provider"], r["input_tokens"], r["task_count"]) for r in daily] == [
        (str(today.date()), "anthropic", 1, 1),
        (str((today - timedelta(days=1)).date()), "anthropic", 10, 1),
    ]
    assert list(daily[0])[:3] == ["date", "provider", "model"]
    assert {"cost_usd_ticks", "uncosted_input_tokens", "cost_usd"} <= set(daily[0])
    by_agent = get(client, f"/api/dashboard/usage/by-agent?{ws}", s["token"])
    assert [(r["agent_id"], r["provider"], r["input_tokens"]) for r in by_agent] == [
        (str(s["a1"]), "anthropic", 1)
    ]
    agents = get(client, f"/api/dashboard/agent-runtime?{ws}", s["token"])
    assert agents == [
        {
            "agent_id": str(s["a1"]),
            "total_seconds": 120,
            "task_count": 2,
            "failed_count": 1,
            "cancelled_count": 0,
        },
        {
            "agent_id": str(s["a2"]),
            "total_seconds": 5,
            "task_count": 1,
            "failed_count": 0,
            "cancelled_count": 1,
        },
    ]
    days = get(client, f"/api/dashboard/runtime/daily?{ws}", s["token"])
    assert [(d["date"], d["total_seconds"], d["task_count"]) for d in days] == [
        (str(today.date()), 125, 3),
        (str((today - timedelta(days=1)).date()), 60, 1),
    ]
    r = client.get(f"/api/dashboard/usage/daily?{ws}&project_id=x", headers=auth(s["token"]))
    assert (r.status_code, r.json()) == (400, {"error": "invalid project_id"})


def test_dashboard_routes_report_one_project(
    client: TestClient, world: World, setup: dict[str, Any]
) -> None:
    # Only the tasks of the project's issues count, read raw (a project is not a rollup key)
    # and equal with the rollup on or off.
    s = setup
    h = auth(s["token"], "acme")
    project = client.post("/api/projects", headers=h, json={"name": "Launch"}).json()
    assert client.get("/api/projects", headers=h).json() == [project]
    inside = client.post(
        "/api/issues", headers=h, json={"title": "in", "project_id": project["id"]}
    ).json()
    assert inside["project_id"] == project["id"]
    outside = world.issue(s["ws"])
    at = s["today"] + timedelta(minutes=5)
    for issue, tokens in ((inside["id"], 7), (outside, 1000)):
        task = world.task(s["a1"], s["rt"], issue=issue)
        world.usage(task, at=at, tokens=(tokens, 0, 0, 0))
        world.db.execute(
            "UPDATE agent_task_queue SET status = 'failed', started_at = %s, completed_at = %s"
            " WHERE id = %s",
            (at, at + timedelta(seconds=tokens), task),
        )
    q = f"workspace_id={s['ws']}&tz=UTC&days=1&project_id={project['id']}"
    for folded in (False, True):
        if folded:
            rollup.drain(world.db)
        daily = get(client, f"/api/dashboard/usage/daily?{q}", s["token"])
        assert [(r["input_tokens"], r["task_count"]) for r in daily] == [(7, 1)]
        by_agent = get(client, f"/api/dashboard/usage/by-agent?{q}", s["token"])
        assert [r["input_tokens"] for r in by_agent] == [7]
    runtime = get(client, f"/api/dashboard/agent-runtime?{q}", s["token"])
    assert [(r["total_seconds"], r["failed_count"]) for r in runtime] == [(7, 1)]
    assert [
        r["total_seconds"] for r in get(client, f"/api/dashboard/runtime/daily?{q}", s["token"])
    ] == [7]
    failures = get(client, f"/api/dashboard/failures/by-agent?{q}", s["token"])
    assert [(r["failure_reason"], r["task_count"]) for r in failures] == [("unclassified", 1)]
    # The whole workspace counts both.
    whole = get(client, f"/api/dashboard/usage/daily?workspace_id={s['ws']}&days=1", s["token"])
    assert [r["input_tokens"] for r in whole] == [1007]
    # A project of another workspace is not found.
    world.token(workspace="other", email="o@example.com")
    other = world.workspace("other")
    theirs = world.db.execute(
        "INSERT INTO project (workspace_id, name) VALUES (%s, 'x') RETURNING id", (other,)
    ).fetchall()[0]["id"]
    r = client.get(
        f"/api/dashboard/usage/daily?project_id={theirs}", headers=auth(s["token"], "acme")
    )
    assert (r.status_code, r.json()) == (404, {"error": "project not found"})
    r = client.post("/api/issues", headers=h, json={"title": "t", "project_id": str(theirs)})
    assert (r.status_code, r.json()) == (404, {"error": "project not found"})
