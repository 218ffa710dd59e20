"""What the pages draw, shaped from the rows of the API's reports (pure functions).

Every figure is a sum of report rows, so a page shows what its JSON twin answers. Series
for the charts are plain lists, handed to the page's script as JSON; each chart's table
prints the same numbers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from markupsafe import Markup

from usagemeter.db import Row

KINDS = ("input", "output", "cache_read", "cache_write")
KIND_LABELS = {
    "input": "Input",
    "output": "Output",
    "cache_read": "Cache read",
    "cache_write": "Cache write",
}
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ZERO = Decimal(0)


def tokens(row: Row) -> Decimal:
    """All four kinds of tokens of a row (workspace reports prefix them with total_)."""
    return sum((kind_tokens(row, k) for k in KINDS), ZERO)


def kind_tokens(row: Row, kind: str) -> Decimal:
    value = row.get(f"{kind}_tokens", row.get(f"total_{kind}_tokens"))
    return Decimal(value or 0)


def change(now: Decimal, before: Decimal) -> Decimal | None:
    """The relative change from `before` to `now` (None when there was nothing before)."""
    return None if not before else (now - before) / before


# Days of a timeline (usage_timeline rows), and the KPI tiles summed from them.


@dataclass
class Day:
    """A date (or a week, dated by its Monday) of a timeline."""

    date: date
    tokens: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(KINDS, ZERO))
    costs: dict[str, Decimal] = field(default_factory=lambda: dict.fromkeys(KINDS, ZERO))
    cost: Decimal = ZERO
    unpriced: Decimal = ZERO
    saved: Decimal = ZERO
    started: int = 0
    partial: str = ""  # a week: what part of it the window holds

    @property
    def total_tokens(self) -> Decimal:
        return sum(self.tokens.values(), ZERO)

    def add(self, other: Day) -> None:
        for k in KINDS:
            self.tokens[k] += other.tokens[k]
            self.costs[k] += other.costs[k]
        self.cost += other.cost
        self.unpriced += other.unpriced
        self.saved += other.saved
        self.started += other.started


def timeline(rows: Iterable[Row]) -> list[Day]:
    """A timeline's rows as days, oldest first."""
    out = [
        Day(
            date=r["date"],
            tokens={k: Decimal(r[f"{k}_tokens"]) for k in KINDS},
            costs={k: Decimal(r[f"{k}_cost_usd"]) for k in KINDS},
            cost=Decimal(r["cost_usd"]),
            unpriced=Decimal(r["unpriced_tokens"]),
            saved=Decimal(r["cache_savings_usd"]),
            started=int(r["tasks_started"]),
        )
        for r in rows
    ]
    return sorted(out, key=lambda d: d.date)


@dataclass
class Tile:
    label: str
    value: Decimal
    before: Decimal
    kind: str  # how to show it: usd, tokens, count, rate
    good: int = 0  # which way is good news: 1 up, -1 down, 0 neither

    @property
    def change(self) -> Decimal | None:
        return change(self.value, self.before)


@dataclass
class Period:
    days: int
    first_date: date
    last_date: date
    tiles: list[Tile]


def hit_rate(d: Day) -> Decimal:
    """Cache reads over all prompt tokens (input, cache read, cache write)."""
    prompt = d.tokens["input"] + d.tokens["cache_read"] + d.tokens["cache_write"]
    return d.tokens["cache_read"] / prompt if prompt else ZERO


def periods(days: list[Day], today: date, lengths: tuple[int, ...] = (7, 30, 90)) -> list[Period]:
    """Each length of whole days before today against as many days before them."""

    def total(first: date, last: date) -> Day:
        out = Day(first)
        for d in days:
            if first <= d.date <= last:
                out.add(d)
        return out

    result = []
    for n in lengths:
        first, last = today - timedelta(n), today - timedelta(1)
        now, before = total(first, last), total(first - timedelta(n), first - timedelta(1))
        tiles = [
            Tile("Cost", now.cost, before.cost, "usd", good=-1),
            Tile("Tokens", now.total_tokens, before.total_tokens, "tokens"),
            Tile("Tasks started", Decimal(now.started), Decimal(before.started), "count"),
            Tile("Cache savings", now.saved, before.saved, "usd", good=1),
            Tile("Cache hit rate", hit_rate(now), hit_rate(before), "rate", good=1),
        ]
        result.append(Period(n, first, last, tiles))
    return result


def weeks(daily: list[Day], today: date) -> list[Day]:
    """Weeks from Monday, dated by their Monday; a week the days do not fill is marked."""
    out: dict[date, Day] = {}
    held: dict[date, int] = defaultdict(int)
    for day in daily:
        monday = day.date - timedelta(day.date.weekday())
        week = out.setdefault(monday, Day(monday))
        held[monday] += 1
        week.add(day)
    for monday, week in out.items():
        if monday <= today < monday + timedelta(7):
            week.partial = f"so far: {today.weekday() + 1} of 7 days"
        elif held[monday] < 7:
            week.partial = f"{held[monday]} of 7 days in the window"
    return list(out.values())


def heatmap(daily: list[Day], today: date, weeks_shown: int = 26) -> dict[str, Any]:
    """Cost per date as rows Monday to Sunday and a column per week (the last: this week),
    with the busiest date (None when nothing cost anything)."""
    first = today - timedelta(today.weekday()) - timedelta(weeks=weeks_shown - 1)
    cost = {d.date: d.cost for d in daily}
    mondays = [first + timedelta(weeks=w) for w in range(weeks_shown)]
    rows = [
        (name, [(m + timedelta(i), cost.get(m + timedelta(i))) for m in mondays])
        for i, name in enumerate(WEEKDAYS)
    ]
    spent = [(c, d) for d, c in cost.items() if d >= first and c]
    busiest = max(spent, key=lambda p: (p[0], p[1])) if spent else None
    top = max((c for c, _ in spent), default=ZERO)
    return {"mondays": mondays, "rows": rows, "busiest": busiest, "top": top}


# Shares: a report's rows summed per key, biggest first, with their share of the total.


@dataclass
class Share:
    key: Any
    cost: Decimal = ZERO
    tokens: Decimal = ZERO
    tasks: int = 0
    unpriced: Decimal = ZERO
    share: Decimal = ZERO


def shares(rows: Iterable[Row], key: str) -> tuple[list[Share], Share]:
    """Rows summed per `key`, by cost then tokens, biggest first, and their total."""
    out: dict[Any, Share] = {}
    total = Share("total")
    for row in rows:
        for s in (out.setdefault(row[key], Share(row[key])), total):
            s.cost += Decimal(row["cost_usd"] or 0)
            s.tokens += tokens(row)
            s.tasks += int(row.get("task_count") or 0)
            s.unpriced += Decimal(row["unpriced_tokens"] or 0)
    ranked = sorted(out.values(), key=lambda s: (-s.cost, -s.tokens, str(s.key)))
    for s in ranked:
        s.share = (
            s.cost / total.cost
            if total.cost
            else (s.tokens / total.tokens if total.tokens else ZERO)
        )
    total.share = Decimal(1) if ranked else ZERO
    return ranked, total


def hours(rows: Iterable[Row], value: str) -> list[Decimal]:
    """A per-hour report summed into 24 values (hour 0 to 23)."""
    out = [ZERO] * 24
    for row in rows:
        out[row["hour"]] += tokens(row) if value == "tokens" else Decimal(row[value] or 0)
    return out


def unpriced_models(rows: Iterable[Row]) -> list[tuple[str, str, Decimal]]:
    """The (provider, model) pairs with unpriced tokens, and how many, biggest first. A row
    of several providers (joined by ",") or none names the model alone."""
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        if row["unpriced_tokens"]:
            provider = row.get("provider") or ""
            key = ("" if "," in provider else provider, row["model"])
            out[key] += Decimal(row["unpriced_tokens"])
    return sorted(((p, m, n) for (p, m), n in out.items()), key=lambda t: (-t[2], t[1]))


def chart(
    labels: list[Any], series: dict[str, list[Any]], unit: str, stacked: bool = True
) -> dict[str, Any]:
    """A chart for the page's script: labels, named series, the unit of the values
    (usd, tokens, count) and whether the bars stack."""
    return {
        "labels": [str(x) for x in labels],
        "series": [{"label": name, "data": data} for name, data in series.items()],
        "unit": unit,
        "stacked": stacked,
    }


def by_model(rows: list[Row], first: date, last: date) -> dict[str, Any]:
    """A workspace's daily report as cost per date and model, every date of the window in
    order, and its chart stacked by model."""
    dates = [first + timedelta(n) for n in range((last - first).days + 1)]
    models = sorted({r["model"] for r in rows})
    cost = {(r["date"], r["model"]): Decimal(r["cost_usd"]) for r in rows}
    series = {m: [cost.get((d, m), ZERO) for d in dates] for m in models}
    return {"dates": dates, "models": models, "cost": cost, "chart": chart(dates, series, "usd")}


def by_kind(rows: list[Day], labels: list[str]) -> dict[str, dict[str, Any]]:
    """A day or week chart stacked by the four kinds, in tokens and in cost."""
    return {
        "tokens": chart(
            labels, {KIND_LABELS[k]: [d.tokens[k] for d in rows] for k in KINDS}, "tokens"
        ),
        "cost": chart(labels, {KIND_LABELS[k]: [d.costs[k] for d in rows] for k in KINDS}, "usd"),
    }


# How figures are written (the templates' filters)


def usd(value: Any, digits: int = 2) -> str:
    """$1,234.57; under a cent, 2 significant digits ($0.0045); under $0.0001, <$0.0001 (the
    exact amount is in the figure's title)."""
    amount = Decimal(value or 0)
    if amount and abs(amount) < Decimal("0.0001"):
        return "<$0.0001"
    if amount and abs(amount) < Decimal("0.01"):
        return f"${amount:.2g}"
    return f"${amount:,.{digits}f}"


def short(value: Any) -> str:
    """12.3M, 4.5k, 950: a count at a glance (the exact one is in the title)."""
    n = Decimal(value or 0)
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}".replace("e+", "e")
    return f"{n:,.0f}"


def percent(value: Any) -> str:
    if value is None:
        return "new"
    return f"{Decimal(value) * 100:+.0f}%"


def plain(value: Any) -> str:
    """A number as JSON writes it (what the twin's response holds)."""
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def figure(value: Any, kind: str) -> Markup:
    """A figure as shown (usd, tokens, rate or count), its exact value in data-value."""
    exact = plain(value)
    if kind == "usd":
        return Markup('<span data-value="{}" title="${}">{}</span>').format(
            exact, exact, usd(value)
        )
    if kind == "tokens":
        count = f"{int(value):,} tokens"
        return Markup('<span data-value="{}" title="{}">{}</span>').format(
            exact, count, short(value)
        )
    shown = f"{Decimal(value) * 100:.1f}%" if kind == "rate" else f"{int(value):,}"
    return Markup('<span data-value="{}">{}</span>').format(exact, shown)


def chart_json(value: Any) -> Markup:
    """Data for a chart's script element: decimals as numbers (charts draw floats), no `<`
    (so no `</script>`)."""
    text = json.dumps(value, default=lambda v: float(v) if isinstance(v, Decimal) else str(v))
    return Markup(text.replace("<", "\\u003c"))
