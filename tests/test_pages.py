"""The pages over HTTP: access, hostile input, forms and their CSRF tokens, round trips.
What a browser shows of them is tests/test_browser.py's."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import World, auth
from tests.test_session import csrf_of, sign_in
from usagemeter.db import Row


@pytest.fixture
def acme(world: World) -> dict[str, Any]:
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws, tz="Asia/Kolkata", name="box")
    agent = world.agent(ws, rt, "coder")
    at = world.today_utc() - timedelta(days=1)
    task = world.task(agent, rt, started_at=at)
    world.usage(task, model="claude-sonnet-4-5", at=at, tokens=(1000, 100, 50, 10))
    world.usage(task, model="mystery-model", at=at, tokens=(7, 0, 0, 0))
    return {"token": token, "ws": ws, "rt": rt}


def test_every_page_answers_a_member_and_names_its_json_twin(
    client: TestClient, acme: dict[str, Any]
) -> None:
    sign_in(client, acme["token"])
    base = "http://testserver"
    for path in [
        "/w/acme",
        "/w/acme?days=7",
        "/w/acme/runtimes",
        "/w/acme/runtimes?sort=name&order=asc",
        f"/w/acme/runtimes/{acme['rt']}",
        f"/w/acme/runtimes/{acme['rt']}?days=90",
        "/w/acme/prices",
    ]:
        page = client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "Computed " in page.text and page.headers["content-type"].startswith("text/html")
        twins = [
            line.split(f"'{base}", 1)[1].split("'", 1)[0]
            for line in page.text.splitlines()
            if "Authorization: Bearer $USAGEMETER_TOKEN" in line
        ]
        assert twins, path
        for url in twins:  # each twin answers the bearer token, and only it
            assert (
                client.get(url.replace("&amp;", "&"), headers=auth(acme["token"])).status_code
                == 200
            )
            assert client.get(url.replace("&amp;", "&")).status_code == 401


def test_pages_show_only_the_viewers_workspaces(
    client: TestClient, world: World, acme: dict[str, Any]
) -> None:
    beta = world.workspace("beta")
    beta_rt = world.runtime(beta)
    world.token("other@example.com", "beta")
    sign_in(client, acme["token"])
    for path in [
        "/w/beta",
        "/w/beta/runtimes",
        "/w/beta/prices",
        f"/w/acme/runtimes/{beta_rt}",
        "/w/nope",
    ]:
        r = client.get(path)
        assert r.status_code == 404 and "not found" in r.text, path
    assert "beta" not in client.get("/w/acme").text


def test_signed_out_pages_lead_to_the_sign_in_form(client: TestClient) -> None:
    r = client.get("/w/acme/runtimes?sort=name", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (
        303,
        "/?next=%2Fw%2Facme%2Fruntimes%3Fsort%3Dname",
    )
    assert (
        'name="next" value="/w/acme/runtimes?sort=name"' in client.get(r.headers["location"]).text
    )


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/w/acme?days=5", 400, "days must be 7, 30 or 90"),
        ("/w/acme/runtimes?sort=cost%00", 400, "NUL"),
        ("/w/acme/runtimes?sort=evil", 400, "sort must be one of"),
        ("/w/acme/runtimes?order=sideways", 400, "order asc or desc"),
        ("/w/acme/runtimes/not-a-uuid", 400, "runtime_id"),
        ("/w/acme/runtimes/00000000-0000-0000-0000-000000000000", 404, "not found"),
        ("/w/%E2%80%AE%00", 400, "NUL"),
    ],
)
def test_bad_page_input_is_a_clear_4xx(
    client: TestClient, acme: dict[str, Any], path: str, status: int, message: str
) -> None:
    sign_in(client, acme["token"])
    r = client.get(path)
    assert r.status_code == status and message in r.text, r.text


PRICE = {
    "model": "m",
    "input_per_mtok": "1",
    "output_per_mtok": "1",
    "cache_read_per_mtok": "1",
    "cache_write_per_mtok": "1",
}


def written(db: psycopg.Connection[Row]) -> Any:
    """What the forms may write: prices, the runtime's zone, the viewer's zone."""
    return db.execute(
        "SELECT (SELECT count(*) FROM model_price) AS prices,"
        ' (SELECT timezone FROM agent_runtime) AS zone, (SELECT timezone FROM "user") AS me'
    ).fetchone()


def user_zone(db: psycopg.Connection[Row]) -> Any:
    return db.execute('SELECT timezone FROM "user"').fetchone()


def test_forms_without_their_csrf_token_change_nothing(
    client: TestClient, acme: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    sign_in(client, acme["token"])
    before = written(db)
    for path, form in [
        ("/zone", {"timezone": "Asia/Tokyo"}),
        (f"/w/acme/runtimes/{acme['rt']}/zone", {"timezone": "Asia/Tokyo"}),
        ("/w/acme/prices", PRICE),
        ("/signout", {}),
    ]:
        for token in (None, "forged"):
            data = form if token is None else {**form, "csrf_token": token}
            r = client.post(path, data=data, follow_redirects=False)
            assert r.status_code == 403 and "did not come from this site" in r.text, path
    assert written(db) == before
    assert client.get("/w/acme").status_code == 200  # still signed in


def test_hostile_form_bodies_are_a_4xx_and_write_nothing(
    client: TestClient, acme: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    sign_in(client, acme["token"])
    csrf = csrf_of(client.get("/w/acme").text)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for body, headers, status in [
        (
            b'{"timezone": "Asia/Tokyo"}',
            auth(acme["token"]) | {"Content-Type": "application/json"},
            415,
        ),
        (b"timezone=\xff\xfe&csrf_token=" + csrf.encode(), form, 400),
        (b"timezone=Mars/Base&csrf_token=" + csrf.encode(), form, 400),
        (b"timezone=&csrf_token=" + csrf.encode(), form, 400),
        (b"timezone=Asia%2FTokyo%00&csrf_token=" + csrf.encode(), form, 400),
    ]:
        r = client.post("/zone", content=body, headers=headers, follow_redirects=False)
        assert r.status_code == status, (body, r.text)
    assert user_zone(db) == {"timezone": None}
    ok = client.post(
        "/zone",
        data={"timezone": "Asia/Tokyo", "csrf_token": csrf, "next": "/w/acme"},
        follow_redirects=False,
    )
    assert (ok.status_code, ok.headers["location"]) == (303, "/w/acme")
    assert user_zone(db) == {"timezone": "Asia/Tokyo"}


def test_the_price_form_validates_like_the_api(
    client: TestClient, acme: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    sign_in(client, acme["token"])
    csrf = csrf_of(client.get("/w/acme/prices").text)
    good = {
        "model": "mystery-model",
        "effective_from": "2000-01-01",
        "input_per_mtok": "2",
        "output_per_mtok": "8",
        "cache_read_per_mtok": "0.5",
        "cache_write_per_mtok": "2",
        "csrf_token": csrf,
    }
    for bad, why in [
        ({"input_per_mtok": "-1"}, "input_per_mtok"),
        ({"input_per_mtok": "NaN"}, "input_per_mtok"),
        ({"output_per_mtok": "1e400"}, "output_per_mtok"),
        ({"cache_read_per_mtok": "0.00001"}, "cache_read_per_mtok"),
        ({"effective_from": "2024-02-30"}, "effective_from"),
        ({"model": ""}, "model"),
        ({"model": "m" * 1_000_000}, "model must be at most 200 characters"),
    ]:
        r = client.post("/w/acme/prices", data={**good, **bad}, follow_redirects=False)
        assert r.status_code == 303 and "error=" in r.headers["location"], bad
        shown = client.get(r.headers["location"])
        assert why in shown.text and 'role="alert"' in shown.text
    assert db.execute(
        "SELECT count(*) AS n FROM model_price WHERE workspace_id IS NOT NULL"
    ).fetchone() == {"n": 0}
    r = client.post("/w/acme/prices", data=good, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/w/acme/prices")
    row = db.execute(
        "SELECT model, input_per_mtok FROM model_price WHERE workspace_id IS NOT NULL"
    ).fetchone()
    assert (
        row is not None
        and row["model"] == "mystery-model"
        and str(row["input_per_mtok"]) == "2.0000"
    )
    price_id = db.execute("SELECT id FROM model_price WHERE workspace_id IS NOT NULL").fetchone()
    assert price_id is not None
    r = client.post(
        f"/w/acme/prices/{price_id['id']}/delete", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert r.status_code == 303
    assert db.execute(
        "SELECT count(*) AS n FROM model_price WHERE workspace_id IS NOT NULL"
    ).fetchone() == {"n": 0}


def test_members_edit_neither_prices_nor_runtimes_they_do_not_own(
    client: TestClient, world: World, acme: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    member = world.token("member@example.com", "acme", role="member")
    sign_in(client, member)
    prices = client.get("/w/acme/prices").text
    assert "Only the workspace's owners and admins set prices" in prices
    assert 'name="input_per_mtok"' not in prices
    assert 'id="runtime-zone-select"' not in client.get(f"/w/acme/runtimes/{acme['rt']}").text
    csrf = csrf_of(prices)
    price = {**PRICE, "csrf_token": csrf}
    assert client.post("/w/acme/prices", data=price).status_code == 403
    r = client.post(
        f"/w/acme/runtimes/{acme['rt']}/zone", data={"timezone": "UTC", "csrf_token": csrf}
    )
    assert r.status_code == 403 and "your own runtimes" in r.text
    assert db.execute("SELECT timezone FROM agent_runtime").fetchone() == {
        "timezone": "Asia/Kolkata"
    }


@contextlib.contextmanager
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Each database round trip of the server while inside: a statement outside a pipeline,
    or a whole pipeline."""
    trips: list[str] = []
    execute, pipeline = psycopg.AsyncConnection.execute, psycopg.AsyncConnection.pipeline

    async def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        if self._pipeline is None:
            trips.append(str(query)[:60])
        return await execute(self, query, *args, **kwargs)

    def counted_pipeline(self: Any) -> Any:
        trips.append("pipeline")
        return pipeline(self)

    monkeypatch.setattr(psycopg.AsyncConnection, "execute", counted_execute)
    monkeypatch.setattr(psycopg.AsyncConnection, "pipeline", counted_pipeline)
    yield trips


def test_the_runtimes_page_is_one_round_trip_however_many_runtimes(
    client: TestClient, world: World, acme: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sign_in(client, acme["token"])
    for n in (1, 40):
        while len(client.get("/api/runtimes", headers=auth(acme["token"], "acme")).json()) < n:
            rt = world.runtime(acme["ws"], name=f"rt-{n}")
            task = world.task(world.agent(acme["ws"], rt), rt)
            world.usage(task, at=world.today_utc() - timedelta(days=2))
        with round_trips(monkeypatch) as trips:
            page = client.get("/w/acme/runtimes")
        assert page.status_code == 200 and page.text.count("data-runtime=") == n
        assert trips == ["pipeline"], trips


def test_the_leaderboard_shows_ten_then_all_and_its_rows_sum_to_its_total(
    client: TestClient, world: World, acme: dict[str, Any]
) -> None:
    at = world.today_utc() - timedelta(days=2)
    for i in range(12):
        agent = world.agent(acme["ws"], acme["rt"], f"agent-{i:02d}")
        world.usage(world.task(agent, acme["rt"]), at=at, tokens=(1000 * (i + 1), 0, 0, 0))
    sign_in(client, acme["token"])
    page = client.get("/w/acme").text
    board = page[
        page.index('id="leaderboard"') : page.index("</table>", page.index('id="leaderboard"'))
    ]
    top, rest = board.split('id="leaderboard-rest"')
    costs = [Decimal(v) for v in re.findall(r'class="num cost"><span data-value="([^"]+)"', board)]
    assert (
        len(re.findall(r"<tr data-key=", top)) == 10
        and len(re.findall(r"<tr data-key=", rest)) == 3
    )
    assert costs == sorted(costs, reverse=True) and len(costs) == 13  # 12 agents and "coder"
    total = re.search(r'id="leaderboard-total"><span data-value="([^"]+)"', board)
    assert total and Decimal(total.group(1)) == sum(costs)
    assert 'href="#leaderboard-rest">Show all 13 agents' in page


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    part=st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
    value=st.text(max_size=60),
)
def test_no_page_or_form_answers_500_whatever_is_sent(
    client: TestClient, acme: dict[str, Any], part: str, value: str
) -> None:
    sign_in(client, acme["token"])
    csrf = csrf_of(client.get("/w/acme").text)
    segment = quote(part, safe="")
    for path in [
        f"/w/{segment}",
        f"/w/acme/runtimes/{segment}",
        f"/w/{segment}/prices",
        f"/w/acme?days={quote(value)}",
        f"/w/acme/runtimes?sort={quote(value)}&order={quote(value)}",
        f"/w/acme/prices?model={quote(value)}&provider={quote(value)}&error={quote(value)}",
    ]:
        assert client.get(path, follow_redirects=False).status_code < 500, path
    for path, form in [
        ("/zone", {"timezone": value, "next": value}),
        (f"/w/acme/runtimes/{acme['rt']}/zone", {"timezone": value}),
        (f"/w/{segment}/runtimes/{segment}/zone", {"timezone": value}),
        ("/w/acme/prices", {"model": value, "input_per_mtok": value, "effective_from": value}),
        (f"/w/acme/prices/{segment}/delete", {}),
        ("/signin", {"token": value, "next": value}),
    ]:
        r = client.post(path, data={**form, "csrf_token": csrf}, follow_redirects=False)
        assert r.status_code < 500, (path, form)


def test_usage_without_a_model_shows_as_such_and_offers_no_price_form(
    client: TestClient, world: World, acme: dict[str, Any]
) -> None:
    task = world.task(world.agent(acme["ws"], acme["rt"]), acme["rt"])
    world.usage(task, model="", provider="copilot", at=world.today_utc() - timedelta(days=1))
    sign_in(client, acme["token"])
    for path in ["/w/acme", f"/w/acme/runtimes/{acme['rt']}", "/w/acme/prices"]:
        page = client.get(path).text
        notice = page[page.index("data-unpriced") : page.index("</aside>")]
        assert ">no model" in notice, path
        assert "model=&" not in notice and "model=#" not in notice  # no form for no model
        assert 'data-model="mystery-model"' in notice
    assert '<th scope="row">(no model)</th>' in client.get("/w/acme").text
