"""Time-zone table test: every bucket equals what zoneinfo says, at :30/:45 offsets and DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import World, auth
from usagemeter.db import Row

ZONES = ["Asia/Kolkata", "Asia/Kathmandu", "Pacific/Chatham", "America/New_York"]
DST_ZONES = {"Pacific/Chatham", "America/New_York"}


def transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants (to the hour) where the zone's offset changes between start and end."""
    out, t = [], start
    while t < end:
        if t.astimezone(zone).utcoffset() != (t + timedelta(hours=1)).astimezone(zone).utcoffset():
            out.append(t + timedelta(hours=1))
        t += timedelta(hours=1)
    return out


def local_midnight(zone: ZoneInfo, day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def probe_instants(zone: ZoneInfo, now: datetime) -> list[datetime]:
    """Instants either side of local midnights and of every offset change in the last year."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(days=360)
    out: list[datetime] = []
    for change in transitions(zone, start, now - timedelta(days=2)):
        day = change.astimezone(zone).date()
        out += [change + timedelta(minutes=m) for m in (-90, -31, -1, 0, 1, 29, 61)]
        for edge in (local_midnight(zone, day), local_midnight(zone, day + timedelta(days=1))):
            out += [edge - timedelta(seconds=1), edge]
    for back in (3, 40):
        edge = local_midnight(zone, (now - timedelta(days=back)).astimezone(zone).date())
        out += [edge - timedelta(minutes=1), edge, edge + timedelta(minutes=14, seconds=59)]
    return out


@pytest.mark.parametrize("zone_name", ZONES)
def test_buckets_match_zoneinfo(client: TestClient, world: World, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    token = world.token()
    ws = world.workspace()
    rt = world.runtime(ws, tz=zone_name)
    utc_rt = world.runtime(ws, tz="UTC")
    agent = world.agent(ws, rt)
    utc_agent = world.agent(ws, utc_rt)
    now = datetime.now(UTC)
    instants = probe_instants(zone, now)
    offsets = {at.astimezone(zone).utcoffset() for at in instants}
    assert len(offsets) == (2 if zone_name in DST_ZONES else 1)  # the probes cross DST changes
    for i, at in enumerate(instants):
        model = f"m{i:03d}"
        world.usage(world.task(agent, rt), model=model, at=at, tokens=(i + 1, 0, 0, 0))
        world.usage(world.task(utc_agent, utc_rt), model=model, at=at, tokens=(i + 1, 0, 0, 0))
    expect_day = {f"m{i:03d}": str(at.astimezone(zone).date()) for i, at in enumerate(instants)}
    expect_hour = {f"m{i:03d}": at.astimezone(zone).hour for i, at in enumerate(instants)}

    h = auth(token)
    for runtime, query in ((rt, ""), (utc_rt, f"&tz={zone_name}")):
        days = client.get(f"/api/runtimes/{runtime}/usage?days=365{query}", headers=h).json()
        assert {r["model"]: r["date"] for r in days} == expect_day
        hours = client.get(
            f"/api/runtimes/{runtime}/usage/by-hour?days=365{query}", headers=h
        ).json()
        assert {r["model"]: r["hour"] for r in hours} == expect_hour

    # A local day holds exactly the usage between its two local midnights (23 or 25 hours on DST days).
    per_day: dict[str, int] = {}
    for i, at in enumerate(instants):
        key = str(at.astimezone(zone).date())
        per_day[key] = per_day.get(key, 0) + i + 1
    world.db.execute('UPDATE "user" SET timezone = %s', (zone_name,))
    daily = client.get("/api/usage/daily?days=365", headers=auth(token, "acme")).json()
    got: dict[str, int] = {}
    for r in daily:
        got[r["date"]] = got.get(r["date"], 0) + r["total_input_tokens"]
    assert got == {d: 2 * n for d, n in per_day.items()}


@pytest.mark.parametrize(
    ("zone", "now", "days", "since"),
    [
        ("Asia/Kolkata", "2026-05-05T10:00+05:30", 1, "2026-05-03T18:30Z"),
        ("Asia/Kathmandu", "2026-05-05T00:10+05:45", 2, "2026-05-02T18:15Z"),
        ("Pacific/Chatham", "2026-01-10T12:00+13:45", 1, "2026-01-08T10:15Z"),
        ("America/New_York", "2026-03-09T12:00-04:00", 1, "2026-03-08T05:00Z"),  # 23-hour day
        ("America/New_York", "2026-03-08T12:00-04:00", 1, "2026-03-07T05:00Z"),
        ("America/New_York", "2026-11-02T12:00-05:00", 1, "2026-11-01T04:00Z"),  # 25-hour day
        ("America/New_York", "2026-11-01T23:59-05:00", 1, "2026-10-31T04:00Z"),
    ],
)
def test_window_cutoff_is_local_midnight(
    world: World, zone: str, now: str, days: int, since: str
) -> None:
    row = world.db.execute(
        "SELECT usage_since(%s::timestamptz, %s, %s) = %s::timestamptz AS ok",
        (now, zone, days, since),
    ).fetchone()
    assert row == {"ok": True}


def test_session_timezone_does_not_change_results(world: World) -> None:
    world.db.execute("SET TimeZone = 'Pacific/Chatham'")
    row = world.db.execute(
        "SELECT usage_since('2026-05-05T10:00Z', 'UTC', 1) = '2026-05-04T00:00Z' AS ok"
    ).fetchone()
    assert row == {"ok": True}


def test_segment_start_and_day_second_are_exact_and_inlined(db: psycopg.Connection[Row]) -> None:
    """seg_start and day_second against Python's arithmetic, at the cuts (±1 µs), at UTC
    midnights, before 1970 and 2000 and far ahead; and planned as expressions (a function
    call per row would cost a sixth of a tick)."""
    cuts = [0, 14400, 18000, 48600, 52200, 57600, 65700, 66600, 79200, 82800]
    days = [datetime(y, m, d, tzinfo=UTC) for y, m, d in
            [(1, 1, 2), (1899, 5, 5), (1969, 12, 31), (1970, 1, 1), (1999, 12, 31),
             (2000, 1, 1), (2024, 2, 29), (2026, 12, 3), (9999, 12, 30)]]  # fmt: skip
    instants = [
        day + timedelta(seconds=s, microseconds=d)
        for day in days
        for s in [*cuts, 86399]
        for d in (-1, 0, 1, 999_999)
    ]
    rows = db.execute(
        "SELECT seg_start(t, %s) AS seg, day_second(t) AS second FROM unnest(%s::timestamptz[]) t",
        (cuts, instants),
    ).fetchall()
    for at, row in zip(instants, rows, strict=True):
        midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
        second = (at - midnight) // timedelta(seconds=1)
        assert row["second"] == second, at
        assert row["seg"] == midnight + timedelta(seconds=max(c for c in cuts if c <= second)), at
    plan = db.execute(
        "EXPLAIN VERBOSE SELECT seg_start(t, %s), day_second(t) FROM unnest(%s::timestamptz[]) t",
        (cuts, instants[:2]),
    ).fetchall()
    text = "\n".join(r["QUERY PLAN"] for r in plan)
    assert "date_bin" in text and "seg_start" not in text and "day_second" not in text
