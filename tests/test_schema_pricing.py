"""Pricing in the rollup (schema/pricing.sql): day buckets hold their cost and are re-priced
by every change of prices."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, localcontext

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.conftest import World, price
from tests.scene import (
    runtime_report,
)
from usagemeter import rollup
from usagemeter.db import Row


def test_day_buckets_are_repriced_by_every_change_of_prices(
    world: World, db: psycopg.Connection[Row]
) -> None:
    ws = world.workspace()
    rid = world.runtime(ws, tz="Asia/Kolkata")
    task = world.task(world.agent(ws, rid), rid)
    day = world.today_utc() - timedelta(days=3)
    world.usage(task, model="mystery-2", at=day + timedelta(hours=12), tokens=(10**6, 0, 0, 0))
    rollup.drain(db)

    def cost() -> tuple[Decimal, int]:
        rows = runtime_report(db, rid, True)
        assert rows == runtime_report(db, rid, False) and len(rows) == 1
        return rows[0]["cost_usd"], rows[0]["unpriced_tokens"]

    assert cost() == (Decimal(0), 10**6)
    price(db, "mystery-2", ("2", "0", "0", "0"), str(day.date()))
    assert cost() == (Decimal(2), 0)
    db.execute("UPDATE model_price SET input_per_mtok = 3 WHERE model = 'mystery-2'")
    assert cost() == (Decimal(3), 0)
    price(db, "mystery-2", ("5", "0", "0", "0"), str(day.date() + timedelta(days=1)))
    assert cost() == (Decimal(3), 0)  # in force from the day after
    db.execute("DELETE FROM model_price WHERE model = 'mystery-2' AND input_per_mtok = 3")
    assert cost() == (Decimal(0), 10**6)
    price(db, "mystery-2", ("7", "0", "0", "0"), str(day.date() - timedelta(days=1)))
    assert cost() == (Decimal(7), 0)
    db.execute("TRUNCATE model_price")
    assert cost() == (Decimal(0), 10**6)
    # A backfill repairs a bucket's cost as it repairs its tokens.
    price(db, "mystery-2", ("7", "0", "0", "0"), str(day.date()))
    db.execute("UPDATE usage_day SET cost_usd = 1 WHERE runtime_id = %s", (rid,))
    assert runtime_report(db, rid, True)[0]["cost_usd"] == Decimal(1)
    rollup.recompute(db, rollup.backfill_keys(db, day.date(), day.date()))
    assert cost() == (Decimal(7), 0)


def test_prices_change_only_in_read_committed(db_url: str) -> None:
    """A snapshot older than the rollup lock would miss buckets a tick folds meanwhile, and
    leave them at the old price: a change of prices in such a transaction is refused."""
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.errors.RaiseException, match="READ COMMITTED"):
            price(conn, "some-model", ("1", "1", "1", "1"))
        conn.rollback()
        price(conn, "some-model", ("1", "1", "1", "1"))  # READ COMMITTED, the default
        conn.rollback()


@pytest.mark.parametrize(
    "tokens",
    [(2**30 - 1, 2**30 - 1, 2**30 - 1, 2**30 - 1), (2**30, 0, 0, 0), (2**63 - 1, 1, 0, 5)],
)
def test_cost_is_exact_at_the_highest_prices_and_counts(
    world: World, db: psycopg.Connection[Row], tokens: tuple[int, int, int, int]
) -> None:
    # The bigint shortcut of usage_cost_units stops where its products could overflow.
    ws = world.workspace()
    rid = world.runtime(ws, tz="Asia/Kolkata")
    task = world.task(world.agent(ws, rid), rid)
    world.usage(task, model="dear", at=world.today_utc() - timedelta(days=2), tokens=tokens)
    top = "999999.9999"
    price(db, "dear", (top, "214748.3647", "214748.3648", "0.0001"))
    with localcontext(prec=60):
        per_token = [Decimal(p) / 10**6 for p in (top, "214748.3647", "214748.3648", "0.0001")]
        expected = sum((t * p for t, p in zip(tokens, per_token, strict=True)), Decimal(0))
        expected = expected.normalize()
    raw = runtime_report(db, rid, False)
    rollup.drain(db)
    assert [r["cost_usd"] for r in raw] == [expected]
    assert runtime_report(db, rid, True) == raw
