"""The pages in a real browser (Debian's chromium driven by Playwright) on the demo data:
each renders without a console error and shows the numbers its JSON twin answers; the
zone editor, the price form, sign-out and CSRF work as a person uses them.

USAGEMETER_SCREENSHOTS=DIR also saves a screenshot of each page there (scripts/screenshots).
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import World
from usagemeter import demo
from usagemeter.charts import usd
from usagemeter.db import Row

CHROMIUM = os.environ.get("USAGEMETER_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = os.environ.get("USAGEMETER_SCREENSHOTS")
KINDS = ("input", "output", "cache_read", "cache_write")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no browser at {CHROMIUM} (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def site(world: World, db: psycopg.Connection[Row], live_url: str) -> dict[str, Any]:
    token = world.token("demo@example.com", "demo")
    demo.fill(db, slug="demo", days=182, seed=7)
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    return {"url": live_url, "token": token, "api": api}


class Watched:
    """A page whose console errors and failed requests are kept."""

    def __init__(self, browser: Browser, **options: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, **options)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def open(self, url: str) -> Page:
        response = self.page.goto(url)
        assert response is not None and response.ok, (url, response and response.status)
        assert self.errors == [], (url, self.errors)
        return self.page


def sign_in(w: Watched, site: dict[str, Any]) -> Page:
    page = w.open(site["url"] + "/")
    page.fill("#token", site["token"])
    with page.expect_navigation():
        page.click("button:text('Sign in')")
    assert page.url.endswith("/w/demo"), page.url
    return page


def api(site: dict[str, Any], path: str) -> Any:
    r = site["api"].get(site["url"] + path, timeout=30)
    assert r.status_code == 200, (path, r.text)
    return json.loads(r.text, parse_float=Decimal)


def value(page: Page, selector: str) -> Decimal:
    """The exact value a figure shows (data-value), checked against the text it shows."""
    el = page.locator(selector)
    number = Decimal(el.get_attribute("data-value") or "")
    if el.inner_text().startswith("$"):
        assert el.inner_text() == usd(number), selector
    return number


def tokens(row: dict[str, Any]) -> Decimal:
    return sum(
        (Decimal(row.get(f"{k}_tokens", row.get(f"total_{k}_tokens", 0))) for k in KINDS),
        Decimal(0),
    )


def shot(page: Page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def check_tiles(page: Page, timeline: list[dict[str, Any]]) -> None:
    """Each tile is the sum of its whole days of the timeline (today left out)."""
    days = sorted(timeline, key=lambda r: r["date"])
    today = date.fromisoformat(days[-1]["date"])
    for n in (7, 30, 90):
        first = str(today - timedelta(days=n))
        now = [r for r in days if first <= r["date"] < str(today)]
        tiles = f".tiles[data-days='{n}']"

        def tile(name: str) -> Decimal:
            return value(page, f"{tiles} [data-tile='{name}'] [data-value]")  # noqa: B023

        assert tile("Cost") == sum(r["cost_usd"] for r in now)
        assert tile("Tokens") == sum(tokens(r) for r in now)
        assert tile("Tasks started") == sum(r["tasks_started"] for r in now)
        assert tile("Cache savings") == sum(r["cache_savings_usd"] for r in now)
        reads = sum(r["cache_read_tokens"] for r in now)
        prompt = reads + sum(r["input_tokens"] + r["cache_write_tokens"] for r in now)
        assert tile("Cache hit rate") == Decimal(reads) / Decimal(prompt)


def test_the_workspace_page_shows_what_its_api_requests_answer(
    browser: Browser, site: dict[str, Any]
) -> None:
    w = Watched(browser)
    shot(w.open(site["url"] + "/"), "signin")
    page = sign_in(w, site)
    page = w.open(site["url"] + "/w/demo?days=30")
    assert page.locator("canvas").count() == 1 and page.locator(".canvas").is_visible()
    check_tiles(page, api(site, "/api/usage/timeline?workspace_slug=demo&days=182"))
    summary = api(site, "/api/usage/summary?workspace_slug=demo&days=30")
    assert page.locator("#models tbody tr").count() == len(summary)
    for row in summary:
        tr = f"#models tbody tr[data-key='{row['model']}']"
        assert value(page, f"{tr} .cost [data-value]") == row["cost_usd"]
        assert value(page, f"{tr} .tokens [data-value]") == tokens(row)
        assert value(page, f"{tr} .tasks [data-value]") == row["task_count"]
    per_agent: dict[str, Decimal] = defaultdict(Decimal)
    for row in api(site, "/api/usage/by-agent?workspace_slug=demo&days=30"):
        per_agent[row["agent_id"]] += row["cost_usd"]
    rows = page.locator("#leaderboard tbody tr")
    assert rows.count() == len(per_agent) == 6
    shown = {
        rows.nth(i).get_attribute("data-key"): value(
            page, f"#leaderboard tbody tr >> nth={i} >> .cost [data-value]"
        )
        for i in range(rows.count())
    }
    assert shown == per_agent
    assert value(page, "#leaderboard-total [data-value]") == sum(per_agent.values())
    for row in api(site, "/api/usage/daily?workspace_slug=demo&days=30"):
        cell = f"#daily-by-model tr[data-date='{row['date']}'] td[data-model='{row['model']}'] [data-value]"
        assert value(page, cell) == row["cost_usd"]
    unpriced = page.locator("[data-unpriced] a[data-model]")
    assert [unpriced.nth(i).get_attribute("data-model") for i in range(unpriced.count())] == [
        "gemini-2.5-flash"
    ]
    shot(page, "workspace")
    assert w.errors == []


def test_the_runtimes_page_and_its_sorting(browser: Browser, site: dict[str, Any]) -> None:
    w = Watched(browser)
    sign_in(w, site)
    page = w.open(site["url"] + "/w/demo/runtimes")
    listed = api(site, "/api/runtimes?workspace_slug=demo")
    by_cost = sorted(listed, key=lambda r: r["cost_7d_usd"], reverse=True)
    rows = page.locator("#runtimes tbody tr")
    assert [rows.nth(i).get_attribute("data-runtime") for i in range(rows.count())] == [
        r["id"] for r in by_cost
    ]
    for r in listed:
        assert value(page, f"tr[data-runtime='{r['id']}'] .cost [data-value]") == r["cost_7d_usd"]
    shot(page, "runtimes")
    with page.expect_navigation():
        page.click("thead a:text('Runtime')")
    names = page.locator("#runtimes tbody th a").all_inner_texts()
    assert names == sorted(names, key=str.lower, reverse=True)
    with page.expect_navigation():
        page.click("thead a:text('Runtime')")
    assert page.locator("#runtimes tbody th a").all_inner_texts() == sorted(names, key=str.lower)
    assert w.errors == []


def runtime_id(site: dict[str, Any], name: str) -> str:
    found = api(site, "/api/runtimes?workspace_slug=demo")
    return str(next(r["id"] for r in found if r["name"] == name))


def check_runtime(page: Page, site: dict[str, Any], rid: str, days: int) -> None:
    timeline = api(site, f"/api/runtimes/{rid}/usage/timeline?days=182")
    check_tiles(page, timeline)
    daily = {r["date"]: r for r in timeline}
    dates = page.locator("#daily-table tbody tr")
    assert dates.count() == days + 1
    for i in range(dates.count()):
        day = dates.nth(i).get_attribute("data-date") or ""
        tr = f"#daily-table tr[data-date='{day}']"
        assert value(page, f"{tr} .cost [data-value]") == daily[day]["cost_usd"]
        for k in KINDS:
            assert (
                value(page, f"{tr} td[data-kind='{k}'] [data-value]") == daily[day][f"{k}_tokens"]
            )
        heat = page.locator(f"#heatmap td[data-date='{day}']")
        assert Decimal(heat.get_attribute("data-value") or "") == daily[day]["cost_usd"]
    hours: dict[int, Decimal] = defaultdict(Decimal)
    for row in api(site, f"/api/runtimes/{rid}/usage/by-hour?days={days}"):
        hours[row["hour"]] += row["cost_usd"]
    for h in range(24):
        assert value(page, f"#hour-table tr[data-hour='{h}'] .cost [data-value]") == hours[h]
    started = {r["hour"]: r["count"] for r in api(site, f"/api/runtimes/{rid}/activity")}
    for h in range(24):
        assert value(page, f"#started-table tr[data-hour='{h}'] [data-value]") == started.get(h, 0)
    models: dict[str, Decimal] = defaultdict(Decimal)
    for row in api(site, f"/api/runtimes/{rid}/usage/by-agent?days={days}"):
        models[row["model"]] += row["cost_usd"]
    for model, cost in models.items():
        assert value(page, f"#models tr[data-key='{model}'] .cost [data-value]") == cost


def test_the_runtime_page_and_its_zone_editor(
    browser: Browser, site: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    w = Watched(browser)
    sign_in(w, site)
    rid = runtime_id(site, "build-box")
    page = w.open(site["url"] + f"/w/demo/runtimes/{rid}?days=30")
    assert page.locator("#runtime-zone").inner_text() == "Asia/Kolkata"
    shot(page, "runtime")
    check_runtime(page, site, rid, 30)
    assert "Busiest day" in page.locator("#busiest").inner_text()
    page.click("button[data-measure='cost']")
    page.click("button[data-span='weekly']")
    assert page.locator("button[data-span='weekly']").get_attribute("aria-pressed") == "true"
    assert page.locator("#weekly-table tr.partial").count() >= 1  # this week, so far
    page.fill("#runtime-zone-select", "Pacific/Chatham")
    with page.expect_navigation():
        page.click("button:text('Change zone')")
    assert page.locator("#runtime-zone").inner_text() == "Pacific/Chatham"
    assert (
        next(
            r["timezone"] for r in api(site, "/api/runtimes?workspace_slug=demo") if r["id"] == rid
        )
        == "Pacific/Chatham"
    )
    check_runtime(page, site, rid, 30)  # re-rendered in the new zone, equal to the API's
    page = w.open(site["url"] + f"/w/demo/runtimes/{rid}?days=7")
    check_runtime(page, site, rid, 7)
    assert w.errors == []


def test_setting_a_price_for_an_unpriced_model_shows_its_cost(
    browser: Browser, site: dict[str, Any]
) -> None:
    w = Watched(browser)
    sign_in(w, site)
    page = w.open(site["url"] + "/w/demo")
    assert (
        page.locator("#models tr[data-key='gemini-2.5-flash'] .cost [data-value]").get_attribute(
            "data-value"
        )
        == "0"
    )
    with page.expect_navigation():
        page.click("[data-unpriced] a[data-model='gemini-2.5-flash']")
    assert page.url.endswith("#set-price")
    assert page.input_value("input[name=model]") == "gemini-2.5-flash"
    shot(page, "prices")
    for name, price in [
        ("input", "0.30"),
        ("output", "2.50"),
        ("cache_read", "0.03"),
        ("cache_write", "0.30"),
    ]:
        page.fill(f"input[name={name}_per_mtok]", price)
    with page.expect_navigation():
        page.click("button:text('Save price')")
    assert page.url.endswith("/w/demo")  # back where the notice was, with the new cost
    assert page.locator("[data-unpriced]").count() == 0
    summary = api(site, "/api/usage/summary?workspace_slug=demo&days=30")
    flash = next(r for r in summary if r["model"] == "gemini-2.5-flash")
    assert flash["cost_usd"] > 0 and flash["unpriced_tokens"] == 0
    shown = value(page, "#models tr[data-key='gemini-2.5-flash'] .cost [data-value]")
    assert shown == flash["cost_usd"]
    page = w.open(site["url"] + "/w/demo/prices")
    assert "Every token of the last 90 days is priced." in page.content()
    assert page.locator("#prices tr.workspace th").all_inner_texts() == ["gemini-2.5-flash"]
    entries = api(site, "/api/pricing?workspace_slug=demo")
    assert page.locator("#prices tbody tr").count() == len(entries)
    for e in entries:
        cells = page.locator(f"#prices tr[data-price='{e['id']}'] > *").all_inner_texts()
        provider = e["provider"] or "any"
        assert cells[:4] == [e["model"], provider, e["scope"], e["effective_from"]]
        prices = [e[f"{k}_per_mtok"] for k in KINDS]
        assert [Decimal(c) for c in cells[4:8]] == prices
    assert w.errors == []


def test_signing_out_ends_the_session_and_forms_need_their_csrf_token(
    browser: Browser, site: dict[str, Any], db: psycopg.Connection[Row]
) -> None:
    w = Watched(browser)
    page = sign_in(w, site)
    # The viewer's zone, changed from the header: every workspace page follows it.
    page.fill("#viewer-zone", "Asia/Kathmandu")
    with page.expect_navigation():
        page.click("button:text('Set')")
    assert page.url.endswith("/w/demo")
    assert page.locator("#viewer-zone").input_value() == "Asia/Kathmandu"
    assert "(Asia/Kathmandu)" in page.locator(".computed").inner_text()
    # A form whose CSRF token is gone is refused, and changes nothing.
    page.evaluate("document.querySelector('form[action=\"/zone\"] [name=csrf_token]').remove()")
    page.fill("#viewer-zone", "Europe/Berlin")
    with page.expect_navigation():
        page.click("button:text('Set')")
    assert "did not come from this site" in page.content()
    zone = db.execute('SELECT timezone FROM "user" WHERE email = %s', ("demo@example.com",))
    assert zone.fetchone() == {"timezone": "Asia/Kathmandu"}
    assert w.errors == [
        "Failed to load resource: the server responded with a status of 403 (Forbidden)"
    ]
    w.errors.clear()  # the refused form's own status
    page = w.open(site["url"] + "/w/demo")
    cookie = next(c for c in w.context.cookies() if c["name"] == "usagemeter_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    with page.expect_navigation():
        page.click("button:text('Sign out')")
    assert page.locator("#token").is_visible()
    assert db.execute("SELECT count(*) AS n FROM web_session").fetchone() == {"n": 0}
    page.goto(site["url"] + "/w/demo/prices")
    assert page.locator("#token").is_visible()  # the sign-in form again
    replay: Any = {k: cookie[k] for k in ("name", "value", "domain", "path")}
    w.context.add_cookies([replay])  # the old cookie, replayed
    page.goto(site["url"] + "/w/demo")
    assert page.locator("#token").is_visible()
    assert w.errors == []


def test_pages_read_without_script_and_follow_a_dark_system(
    browser: Browser, site: dict[str, Any]
) -> None:
    rid = runtime_id(site, "mac-studio")
    plain = Watched(browser, java_script_enabled=False)
    sign_in(plain, site)
    page = plain.open(site["url"] + f"/w/demo/runtimes/{rid}")
    assert page.locator("#daily-table").is_visible() and page.locator("#hour-table").is_visible()
    assert not page.locator(".canvas").first.is_visible()
    check_runtime(page, site, rid, 30)
    dark = Watched(browser, color_scheme="dark")
    page = sign_in(dark, site)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 17, 21)"
    shot(page, "workspace-dark")
    assert dark.errors == []
