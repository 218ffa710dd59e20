"""What the pages draw from report rows: tiles, weeks, the heatmap, shares, figures."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from usagemeter import charts

TODAY = date(2026, 12, 2)  # a Wednesday


def row(day: date, cost: str = "0", tokens: int = 0, started: int = 0, **kw: Any) -> dict[str, Any]:
    return {
        "date": day,
        **{f"{k}_tokens": kw.get(k, tokens if k == "input" else 0) for k in charts.KINDS},
        **{f"{k}_cost_usd": Decimal(cost) if k == "input" else 0 for k in charts.KINDS},
        "cost_usd": Decimal(cost),
        "unpriced_tokens": 0,
        "cache_savings_usd": Decimal(0),
        "tasks_started": started,
    }


def test_tiles_sum_whole_days_before_today_against_as_many_before() -> None:
    days = charts.timeline(
        [
            row(TODAY, "100", started=9),  # today: in no period
            row(TODAY - timedelta(1), "2", 10, 1, cache_read=30),
            row(TODAY - timedelta(7), "3", started=1),
            row(TODAY - timedelta(8), "5", started=2),
            row(TODAY - timedelta(14), "7"),
            row(TODAY - timedelta(15), "11"),
        ]
    )
    week = charts.periods(days, TODAY)[0]
    assert (week.days, week.first_date, week.last_date) == (
        7,
        date(2026, 11, 25),
        date(2026, 12, 1),
    )
    tiles = {t.label: t for t in week.tiles}
    assert (tiles["Cost"].value, tiles["Cost"].before) == (Decimal(5), Decimal(12))
    assert tiles["Cost"].change == Decimal(5 - 12) / 12
    assert (tiles["Tasks started"].value, tiles["Tasks started"].before) == (Decimal(2), Decimal(2))
    assert tiles["Cache hit rate"].value == Decimal(30) / 40
    assert tiles["Cache hit rate"].before == 0 and tiles["Cache hit rate"].change is None
    assert [p.days for p in charts.periods(days, TODAY)] == [7, 30, 90]


def test_weeks_start_on_monday_and_mark_the_ones_the_window_does_not_fill() -> None:
    days = charts.timeline(row(TODAY - timedelta(n), "1") for n in range(10))
    weeks = charts.weeks(days, TODAY)
    assert [w.date for w in weeks] == [date(2026, 11, 23), date(2026, 11, 30)]
    assert [w.cost for w in weeks] == [7, 3]
    assert weeks[0].partial == "" and weeks[1].partial == "so far: 3 of 7 days"
    cut = charts.weeks(days[2:], TODAY)
    assert cut[0].partial == "5 of 7 days in the window"


def test_the_heatmap_runs_monday_to_sunday_and_names_the_busiest_day() -> None:
    days = charts.timeline([row(TODAY - timedelta(n), str(n % 5)) for n in range(200)])
    heat = charts.heatmap(days, TODAY)
    assert [name for name, _ in heat["rows"]] == list(charts.WEEKDAYS)
    assert len(heat["mondays"]) == 26 and heat["mondays"][-1] == date(2026, 11, 30)
    assert heat["rows"][2][1][-1] == (TODAY, Decimal(0))  # this Wednesday
    assert heat["rows"][3][1][-1] == (date(2026, 12, 3), None)  # tomorrow: no cell value
    cost, day = heat["busiest"]
    assert cost == 4 and day == max(
        d.date for d in days if d.cost == 4 and d.date >= heat["mondays"][0]
    )
    assert charts.heatmap(charts.timeline([row(TODAY)]), TODAY)["busiest"] is None


def test_shares_sum_to_their_total_biggest_first() -> None:
    rows = [
        {"agent_id": "b", "cost_usd": Decimal("1.5"), "input_tokens": 10, "unpriced_tokens": 0},
        {"agent_id": "a", "cost_usd": Decimal("1.5"), "input_tokens": 30, "unpriced_tokens": 0},
        {"agent_id": "b", "cost_usd": Decimal("2"), "input_tokens": 5, "unpriced_tokens": 5},
    ]
    ranked, total = charts.shares(rows, "agent_id")
    assert [(s.key, s.cost, s.tokens) for s in ranked] == [
        ("b", Decimal("3.5"), Decimal(15)),
        ("a", Decimal("1.5"), Decimal(30)),
    ]
    assert total.cost == sum(s.cost for s in ranked) == 5
    assert sum(s.share for s in ranked) == 1


def test_figures_show_rounded_and_keep_the_exact_value() -> None:
    assert charts.usd(Decimal("1234.5678")) == "$1,234.57"
    assert charts.usd(Decimal("0.0045")) == "$0.0045"
    assert charts.usd(Decimal("0.00001234")) == "<$0.0001"
    assert charts.short(Decimal(12_345_678)) == "12.3M" and charts.short(950) == "950"
    assert charts.percent(None) == "new" and charts.percent(Decimal("-0.25")) == "-25%"
    shown = charts.figure(Decimal("0.0045"), "usd")
    assert shown == '<span data-value="0.0045" title="$0.0045">$0.0045</span>'
    assert 'data-value="7"' in charts.figure(7, "count")
    assert "</script>" not in charts.chart_json({"label": "</script><script>"})


def test_unpriced_models_name_one_provider_or_the_model_alone() -> None:
    rows = [
        {"provider": "a", "model": "m", "unpriced_tokens": 5},
        {"provider": "a,b", "model": "m", "unpriced_tokens": 7},
        {"model": "n", "unpriced_tokens": 9},
        {"provider": "a", "model": "p", "unpriced_tokens": 0},
    ]
    assert charts.unpriced_models(rows) == [
        ("", "n", Decimal(9)),
        ("", "m", Decimal(7)),
        ("a", "m", Decimal(5)),
    ]
