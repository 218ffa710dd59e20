"""The tick (schema/tick.sql): queued changes fold into the buckets exactly, backfill
repairs them, and nothing is lost or counted twice with writers and ticks in parallel."""

from __future__ import annotations

import random
import threading
import time
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from typer.testing import CliRunner

from tests.conftest import World
from tests.scene import (
    MODELS,
    PROVIDERS,
    SET_PRICE,
    ZONES,
    runtime_report,
)
from usagemeter import rollup, usage
from usagemeter.cli import app
from usagemeter.db import Row


# Read in Asia/Kolkata: a runtime in UTC is read from its segments, one in Asia/Kolkata from
# its day buckets.
@pytest.mark.parametrize(
    ("runtime_tz", "buckets"), [("UTC", "usage_rollup"), ("Asia/Kolkata", "usage_day")]
)
def test_reads_add_queued_changes_to_buckets_and_backfill_repairs_them(
    world: World,
    db: psycopg.Connection[Row],
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    runtime_tz: str,
    buckets: str,
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz=runtime_tz)
    task = world.task(world.agent(ws, rid), rid)
    at = world.today_utc() - timedelta(days=2)
    world.usage(task, at=at + timedelta(hours=20), tokens=(100, 0, 0, 0))
    world.usage(task, model="gpt-5", at=at + timedelta(hours=3), tokens=(7, 0, 0, 0))
    db.execute(usage.Q.register_zone, {"tz": "Asia/Kolkata", "workspace_id": ws})  # cuts for it
    rollup.drain(db)
    raw = runtime_report(db, rid, False)
    assert runtime_report(db, rid, True) == raw and len(raw) == 2
    # Tamper with the buckets: the rollup path reads them, the raw path does not.
    db.execute(f"UPDATE {buckets} SET input_tokens = input_tokens + 1")
    tampered = runtime_report(db, rid, True)
    assert [r["input_tokens"] for r in tampered] == [101, 8]
    # A correction is read at once, as a queued delta (-100 +150) on top of the bucket,
    # and a tick folds that same delta in: the tampering stays until a backfill.
    world.usage(task, at=at + timedelta(hours=20), tokens=(150, 0, 0, 0))
    assert [r["input_tokens"] for r in runtime_report(db, rid, True)] == [151, 8]
    rollup.drain(db)
    assert [r["input_tokens"] for r in runtime_report(db, rid, True)] == [151, 8]
    # Backfill rebuilds from task_usage, idempotently.
    raw = runtime_report(db, rid, False)
    assert [r["input_tokens"] for r in raw] == [150, 7]
    monkeypatch.setenv("DATABASE_URL", db_url)
    for _ in range(2):
        r = CliRunner().invoke(app, ["backfill", "--from", str(at.date()), "--to", str(at.date())])
        assert r.exit_code == 0 and "rebuilt 1 runtime days" in r.output, r.output
        assert runtime_report(db, rid, True) == raw
    r = CliRunner().invoke(app, ["backfill", "--from", "2026-02-02", "--to", "2026-02-01"])
    assert r.exit_code == 2


def test_changes_folded_while_a_new_offset_is_cut_stay_exact(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="UTC")
    agent = world.agent(ws, rid)
    first, second = world.task(agent, rid), world.task(agent, rid)
    evening = world.today_utc() - timedelta(hours=4)  # yesterday 20:00 UTC
    world.usage(first, at=evening, tokens=(100, 0, 0, 0))
    rollup.drain(db)  # its segment starts at 00:00 UTC, the only cut
    db.execute("SELECT register_zone('Asia/Kathmandu')")  # cuts at 18:15 UTC from now on
    # Both fold into the 18:15 segment: -100 and +7 rows, no rows but not nothing.
    db.execute("DELETE FROM task_usage WHERE task_id = %s", (first,))
    world.usage(second, at=evening + timedelta(hours=1), tokens=(7, 0, 0, 0))
    assert rollup.tick(db) is not None  # folds, and starts re-cutting for +05:45
    for read in (usage.Q.runtime_usage, usage.Q.workspace_daily):
        p = {"runtime_id": rid, "workspace_id": ws, "days": 1, "tz": "UTC"}
        fast = db.execute(read, {**p, "rollup": True}).fetchall()
        assert fast == db.execute(read, {**p, "rollup": False}).fetchall()
        assert [r.get("input_tokens", r.get("total_input_tokens")) for r in fast] == [7]


def test_parallel_writers_movers_and_ticks_lose_no_invalidation(
    world: World, db: psycopg.Connection[Row], db_url: str
) -> None:
    ws = world.workspace()
    rts = [world.runtime(ws, tz=z) for z in ("Asia/Kolkata", "America/New_York", "Pacific/Chatham")]
    agents = [world.agent(ws, rts[i % 3]) for i in range(6)]
    tasks = [world.task(agents[i % 6], rts[i % 3]) for i in range(40)]
    rollup.drain(db)
    midnight = world.today_utc()
    stop = threading.Event()
    errors: list[BaseException] = []
    compared = [0]

    def worker(body: Any) -> None:
        with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
            conn.execute("SET TimeZone = 'UTC'")
            rnd = random.Random(threading.get_ident())
            while not stop.is_set():
                try:
                    body(conn, rnd)
                except psycopg.errors.DeadlockDetected:
                    pass  # rolled back whole: nothing written, nothing queued
                except BaseException as e:
                    errors.append(e)
                    return

    def write(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        picked = sorted(rnd.sample(tasks, 3))
        with conn.transaction():
            # As ingest does: hold the tasks so that a move waits for this commit.
            conn.execute(
                "SELECT 1 FROM agent_task_queue WHERE id = ANY(%s) ORDER BY id FOR SHARE",
                (picked,),
            )
            for t in picked:
                at = midnight - timedelta(minutes=15 * rnd.randrange(-96, 96 * 20))
                if rnd.random() < 0.2:
                    conn.execute(
                        "DELETE FROM task_usage WHERE task_id = %s AND provider = %s",
                        (t, rnd.choice(PROVIDERS)),
                    )
                    continue
                conn.execute(
                    "INSERT INTO task_usage (task_id, provider, model, input_tokens, created_at)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (task_id, provider, model)"
                    " DO UPDATE SET input_tokens = excluded.input_tokens",
                    (t, rnd.choice(PROVIDERS), rnd.choice(MODELS), rnd.randrange(1000), at),
                )

    def move(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        conn.execute(
            "UPDATE agent_task_queue t SET agent_id = a.id, runtime_id = a.runtime_id"
            " FROM agent a WHERE a.id = %s AND t.id = %s",
            (rnd.choice(agents), rnd.choice(tasks)),
        )
        time.sleep(0.01)

    def start(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        conn.execute(
            "UPDATE agent_task_queue SET started_at = now() - %s * interval '17 minutes'"
            " WHERE id = %s",
            (rnd.randrange(500), rnd.choice(tasks)),
        )

    def rezone(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        conn.execute(
            "UPDATE agent_runtime SET timezone = %s WHERE id = %s",
            (rnd.choice(["America/New_York", "Asia/Kolkata"]), rts[1]),
        )
        # A runtime's daily report read in a zone not its own, as the server asks for it.
        conn.execute("SELECT register_runtime_zone(%s, %s)", (rnd.choice(rts), rnd.choice(ZONES)))
        time.sleep(0.05)

    def tick(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        rollup.tick(conn, rnd.choice([1, 5, 100]))

    def reprice(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        key = (
            rnd.choice(["claude-sonnet-4-5", "gpt-5"]),
            world.today_utc().date() - timedelta(days=rnd.randrange(30)),
        )
        if rnd.random() < 0.3:
            conn.execute("DELETE FROM model_price WHERE model = %s AND effective_from = %s", key)
        else:
            conn.execute(SET_PRICE, (*key, Decimal(rnd.randrange(400)) / 4))
        time.sleep(0.02)

    def check(conn: psycopg.Connection[Row], rnd: random.Random) -> None:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for rid in rts:
                for tz in ("Asia/Kolkata", "America/New_York"):
                    p = {"runtime_id": rid, "days": 7, "tz": tz}
                    for q in (
                        usage.Q.runtime_usage,
                        usage.Q.runtime_usage_by_agent,
                        usage.Q.runtime_activity,
                    ):
                        a = conn.execute(q, {**p, "rollup": True}).fetchall()
                        b = conn.execute(q, {**p, "rollup": False}).fetchall()
                        assert a == b
            p = {"workspace_id": ws, "days": 7, "tz": rnd.choice(ZONES)}
            a = conn.execute(usage.Q.workspace_daily, {**p, "rollup": True}).fetchall()
            assert a == conn.execute(usage.Q.workspace_daily, {**p, "rollup": False}).fetchall()
        compared[0] += 1

    bodies = [write, write, write, move, start, rezone, reprice, tick, tick, check]
    threads = [threading.Thread(target=worker, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert compared[0] > 3
    rollup.drain(db)
    wrong = db.execute(
        "SELECT count(*) AS n FROM task_usage u JOIN agent_task_queue t ON t.id = u.task_id"
        " WHERE (u.runtime_id, u.agent_id) <> (t.runtime_id, t.agent_id)"
    ).fetchone()
    assert wrong == {"n": 0}
    # Every segment equals a recompute from scratch: no change was lost or counted twice.
    seg = (
        "SELECT * FROM usage_rollup"
        " ORDER BY runtime_id, seg_start, workspace_id, agent_id, provider, model, reported"
    )
    day = (
        "SELECT * FROM usage_day ORDER BY"
        " runtime_id, zone, day, utc_day, workspace_id, agent_id, provider, model, reported"
    )
    before, before_day = db.execute(seg).fetchall(), db.execute(day).fetchall()
    assert before and db.execute("SELECT count(*) AS n FROM task_usage").fetchone() == {
        "n": sum(r["rows"] for r in before)
    }
    # The writes listed exactly the (task, model) pairs under two or more providers.
    listed = "SELECT task_id, model FROM usage_multi_provider ORDER BY 1, 2"
    multi = (
        "SELECT task_id, model FROM task_usage GROUP BY 1, 2"
        " HAVING count(DISTINCT provider) > 1 ORDER BY 1, 2"
    )
    truth = db.execute(multi).fetchall()
    assert truth and db.execute(listed).fetchall() == truth
    rollup.recompute(db, rollup.backfill_keys(db, date(1, 1, 1), date(9999, 12, 30)))
    assert db.execute(seg).fetchall() == before
    assert db.execute(day).fetchall() == before_day
    # The workspace segments are the sums of the runtime segments.
    cols = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
    sums = ", ".join(f"sum({c})::bigint AS {c}" for c in cols)
    keys = "workspace_id, seg_start, provider, model, reported"
    assert (
        db.execute(
            f"SELECT {keys}, {', '.join(cols)}, cost_usd, rows FROM usage_rollup_ws ORDER BY {keys}"
        ).fetchall()
        == db.execute(
            f"SELECT {keys}, {sums}, sum(cost_usd) AS cost_usd, sum(rows)::int AS rows"
            f" FROM usage_rollup GROUP BY {keys} ORDER BY {keys}"
        ).fetchall()
    )
    # The workspace UTC day buckets are the sums of the workspace segments per UTC day.
    keys = "workspace_id, day, provider, model, reported"
    assert (
        db.execute(
            f"SELECT {keys}, {', '.join(cols)}, cost_usd, rows FROM usage_day_ws ORDER BY {keys}"
        ).fetchall()
        == db.execute(
            f"SELECT {keys}, {sums}, sum(cost_usd) AS cost_usd, sum(rows)::int AS rows"
            " FROM (SELECT *, utc_day(seg_start) AS day FROM usage_rollup_ws) s"
            f" GROUP BY {keys} ORDER BY {keys}"
        ).fetchall()
    )
    # The heads are those sums over the segments before each cut of every ready offset.
    assert db.execute("SELECT array_agg(cut ORDER BY cut) AS c FROM usage_head_cut").fetchone() == (
        db.execute(
            "SELECT array_agg(DISTINCT (86400 - offset_s) % 86400) AS c FROM usage_offset"
            " WHERE state = 'ready' AND offset_s <> 0"
        ).fetchone()
    )
    keys = "workspace_id, cut, day, provider, model, reported"
    heads = db.execute(
        f"SELECT {keys}, {', '.join(cols)}, cost_usd, rows FROM usage_head_ws ORDER BY {keys}"
    ).fetchall()
    assert heads and (
        heads
        == db.execute(
            f"SELECT {keys}, {sums}, sum(cost_usd) AS cost_usd, sum(rows)::int AS rows"
            " FROM (SELECT s.*, c.cut, utc_day(s.seg_start) AS day FROM usage_rollup_ws s"
            " JOIN usage_head_cut c ON day_second(s.seg_start) < c.cut) s"
            f" GROUP BY {keys} ORDER BY {keys}"
        ).fetchall()
    )
    # The day buckets are task_usage summed per local date in each of a runtime's zones:
    # its own, those it was read in.
    assert db.execute("SELECT count(*) AS n FROM usage_day_zone WHERE NOT ready").fetchone() == {
        "n": 0
    }
    zones = db.execute("SELECT count(DISTINCT zone) AS n FROM usage_day").fetchone()
    assert zones and zones["n"] > 3
    # A bucket of unreported usage holds its tokens at the price now in force on its UTC day.
    day_price = (
        "(SELECT s.price FROM price_segments(g.workspace_id, g.provider, g.model) s"
        " WHERE s.valid @> g.utc_day)"
    )
    assert (
        before_day
        == db.execute(
            "SELECT g.runtime_id, g.day, g.utc_day, g.workspace_id, g.agent_id, g.provider,"
            f" g.model, g.reported, {', '.join(cols)}, CASE WHEN g.reported THEN g.cost_usd"
            f" ELSE priced_usd({', '.join(cols)}, {day_price}) END AS cost_usd, g.rows, g.zone"
            " FROM (SELECT u.runtime_id, (u.created_at AT TIME ZONE z.zone)::date AS day,"
            " utc_day(u.created_at) AS utc_day, u.workspace_id, u.agent_id, u.provider, u.model,"
            f" u.cost_usd IS NOT NULL AS reported, {sums}, sum(cost_usd) AS cost_usd,"
            " count(*)::int AS rows, z.zone"
            " FROM task_usage u JOIN usage_day_zone z ON z.runtime_id = u.runtime_id"
            " GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, z.zone) g ORDER BY 1, g.zone, 2, 3, 4, 5, 6, 7, 8"
        ).fetchall()
    )


def test_a_workspace_whose_rows_fail_to_fold_is_held_and_the_others_fold(
    world: World, db: psycopg.Connection[Row]
) -> None:
    # Whatever makes one workspace's deltas fail to fold (here a trigger standing in for a
    # bug or a corrupt row), every other workspace's keep folding; the held ones stay
    # counted by reads, and fold once released.
    scopes = {}
    for slug in ("broken", "fine"):
        ws = world.workspace(slug)
        rt = world.runtime(ws)
        world.usage(world.task(world.agent(ws, rt), rt))
        scopes[slug] = (ws, rt)
    broken = scopes["broken"][0]
    db.execute(
        "CREATE FUNCTION fail_broken() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.workspace_id = '{broken}' THEN RAISE EXCEPTION 'cannot fold this'; END IF;"
        " RETURN NEW; END $$"
    )
    db.execute(
        "CREATE TRIGGER fail_broken BEFORE INSERT OR UPDATE ON usage_rollup"
        " FOR EACH ROW EXECUTE FUNCTION fail_broken()"
    )
    assert rollup.drain(db) == 1  # the fine workspace's one delta
    state = rollup.health(db)
    assert (state["queue_depth"], state["held"]) == (1, 1)
    assert state["last_error"] == f"workspace {broken}: cannot fold this"
    for _, rt in scopes.values():
        assert runtime_report(db, rt, True) == runtime_report(db, rt, False) != []
    world.usage(world.task(world.agent(*scopes["fine"]), scopes["fine"][1]), model="later")
    assert rollup.drain(db) == 1  # later deltas fold past the held one
    db.execute("DROP TRIGGER fail_broken ON usage_rollup")
    assert rollup.retry_held(db) == 1
    rollup.drain(db)
    assert rollup.health(db)["queue_depth"] == 0
    for _, rt in scopes.values():
        assert runtime_report(db, rt, True) == runtime_report(db, rt, False) != []
