"""Which OpenTelemetry log records and metric points are usage, and what they say
(docs/otlp.md). Pure: OTLP messages in, usage records and the reasons for rejected ones out;
otlp.py receives and writes them.

- Log events, one record per request: Claude Code's `claude_code.api_request`, Codex's
  completed responses (`codex.sse_event`), and any record with the GenAI conventions'
  `gen_ai.usage.*` attributes.
- Metrics: Claude Code's `claude_code.token.usage` and `claude_code.cost.usage` counters, and
  the GenAI `gen_ai.client.token.usage` histogram. Delta points count as they are; a
  cumulative point counts what its series grew by since the last point seen (resolved
  against the database: `Point.series`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

from usagemeter.logs import MAX_TOKENS, text

LOG = "otlp:log"
METRIC = "otlp:metric"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EARLIEST_NS = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) * 10**9
MAX_COST_USD = 10**6
SCALARS = frozenset({"string_value", "int_value", "double_value", "bool_value"})

CLAUDE_CODE_EVENTS = frozenset({"claude_code.api_request", "api_request"})
# Codex logs a response's usage as this event of kind "response.completed" (the same kind
# without token counts is a response that failed to complete: no usage).
CODEX_EVENT = "codex.sse_event"
CODEX_COMPLETED = "response.completed"
# Claude Code's counters: the token kind of each `type`; its cost counter is the estimate.
CLAUDE_TOKEN_TYPES = {
    "input": "input",
    "output": "output",
    "cacheRead": "cache_read",
    "cacheCreation": "cache_write",
}
GENAI_TOKEN_TYPES = {"input": "input", "output": "output"}
# The metrics read, and the kind of data each must be.
EXPECTED = {
    "claude_code.token.usage": "sum",
    "claude_code.cost.usage": "sum",
    "gen_ai.client.token.usage": "histogram",
}


@dataclass(slots=True)
class Origin:
    """Who sent a record, from the attributes of the record and of its resource."""

    machine: str
    cli: str
    email: str
    project: str
    session: str


@dataclass(slots=True)
class Usage:
    """One record of usage, and who sent it (where it lands: docs/otlp.md)."""

    source: str
    key: str  # its identity within the source: the same record again has the same key
    at: datetime
    who: Origin
    provider: str
    model: str
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    estimated_cost_usd: Decimal | None = None


@dataclass(slots=True)
class Point:
    """What one metric point adds to the record of its group, in `kind` (a token kind, or
    `cost`): a delta point its whole `value`; a cumulative one what its `series` grew by
    since the point of it seen last (otlp.py)."""

    usage: Usage  # the record it adds to (its key: the group)
    kind: str
    value: float
    time_ns: int
    series: str | None = None  # cumulative: the series's digest


@dataclass
class Found:
    """The usage of one export request and what was rejected of it."""

    usages: list[Usage] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    rejected: int = 0
    errors: list[str] = field(default_factory=list)

    def reject(self, why: str) -> None:
        self.rejected += 1
        if why not in self.errors:
            self.errors.append(why)

    @property
    def why(self) -> str:
        """The first reasons of the rejections, for the answer's error message."""
        return "; ".join(self.errors[:5])


class Invalid(ValueError):
    """A record that claims to be usage but says it wrongly."""


def attributes(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    """Attribute values that are strings, numbers or booleans (others are not read here)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.value
        if string := value.string_value:  # the common kind, read without asking (faster)
            out[kv.key] = string
        elif (kind := value.WhichOneof("value")) in SCALARS:
            out[kv.key] = getattr(value, kind)
    return out


def _count(attrs: Mapping[str, Any], name: str) -> int:
    """A token count: an integer, or a string of digits (Claude Code sends strings)."""
    value = attrs.get(name)
    if value is None or value == "":
        return 0
    if (isinstance(value, str) and value.isascii() and value.isdigit()) or (
        isinstance(value, float) and value.is_integer()
    ):
        value = int(value)
    if type(value) is not int or not 0 <= value <= MAX_TOKENS:
        raise Invalid(f"{name} must be a whole number from 0 to {MAX_TOKENS}")
    return value


def _cost(value: Any, name: str) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        cost = Decimal(value if isinstance(value, str) else repr(value))
    except (InvalidOperation, TypeError):
        raise Invalid(f"{name} must be a number") from None
    if not cost.is_finite() or not 0 <= cost <= MAX_COST_USD:
        raise Invalid(f"{name} must be from 0 to {MAX_COST_USD}")
    return round(cost, 10)


def _time(ns: int, latest_ns: int) -> datetime:
    if not EARLIEST_NS <= ns <= latest_ns:
        raise Invalid("the time must be from 2000-01-01 to a day from now")
    return EPOCH + timedelta(microseconds=ns // 1000)


def _latest_ns() -> int:
    """The latest time a record may have: a day from now (a client's clock may run ahead)."""
    return int((datetime.now(UTC) + timedelta(days=1)).timestamp()) * 10**9


def digest(*parts: Any) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def origin(attrs: Mapping[str, Any]) -> Origin:
    """Who sent a record, from its attributes over its resource's."""

    def first(*names: str) -> str:
        for name in names:
            value = attrs.get(name)
            if value is not None and (value := text(str(value))):
                return value
        return ""

    machine = first("host.name", "user.email", "user.account_uuid", "user.id") or "unknown"
    cli = first("service.name") or "unknown_service"
    session = first("session.id", "gen_ai.conversation.id", "conversation.id") or f"{cli}@{machine}"
    return Origin(machine, cli, first("user.email"), first("process.working_directory"), session)


def _model(attrs: Mapping[str, Any], *names: str) -> str:
    for name in names:
        model = text(str(attrs.get(name) or ""))
        if model:
            return model
    raise Invalid(f"{' or '.join(names)} is required")


def _provider(attrs: Mapping[str, Any]) -> str:
    return text(str(attrs.get("gen_ai.provider.name") or attrs.get("gen_ai.system") or ""))


def _event(record: Any, attrs: Mapping[str, Any]) -> str:
    if record.event_name:
        return str(record.event_name)
    body = record.body.string_value if record.body.WhichOneof("value") == "string_value" else ""
    return str(attrs.get("event.name") or body)


def _input_less_cached(usage: Usage, attrs: Mapping[str, Any], name: str) -> int:
    """The input of a count that holds the cached input (the GenAI conventions', the
    Responses API's): with the usage's cache reads and writes taken out, so that no token
    counts twice."""
    rest = _count(attrs, name) - usage.cache_read - usage.cache_write
    if rest < 0:
        raise Invalid(f"{name} is less than its cached parts")
    return rest


def from_logs(request: ExportLogsServiceRequest) -> Found:
    """The usage records among an export's log records."""
    found = Found()
    latest = _latest_ns()
    for rl in request.resource_logs:
        resource = attributes(rl.resource.attributes)
        for sl in rl.scope_logs:
            for record in sl.log_records:
                attrs = {**resource, **attributes(record.attributes)}  # the record's first
                try:
                    usage = _log_usage(record, attrs, latest)
                except Invalid as e:
                    found.reject(f"log record: {e}")
                    continue
                if usage is not None:
                    found.usages.append(usage)
    return found


def _log_usage(record: Any, attrs: dict[str, Any], latest: int) -> Usage | None:
    name = _event(record, attrs)
    claude = name in CLAUDE_CODE_EVENTS
    codex = (
        name == CODEX_EVENT
        and attrs.get("event.kind") == CODEX_COMPLETED
        and ("input_token_count" in attrs or "output_token_count" in attrs)
    )
    genai = "gen_ai.usage.input_tokens" in attrs or "gen_ai.usage.output_tokens" in attrs
    if not claude and not codex and not genai:
        return None
    who = origin(attrs)
    ns = record.time_unix_nano or record.observed_time_unix_nano
    usage = Usage(LOG, "", _time(ns, latest), who, provider="", model="")
    if claude:
        usage.provider = "anthropic"
        usage.model = _model(attrs, "model")
        usage.input = _count(attrs, "input_tokens")
        usage.output = _count(attrs, "output_tokens")
        usage.cache_read = _count(attrs, "cache_read_tokens")
        usage.cache_write = _count(attrs, "cache_creation_tokens")
        usage.estimated_cost_usd = _cost(attrs.get("cost_usd"), "cost_usd")
        identity = attrs.get("event.sequence") or attrs.get("request_id") or ""
    elif codex:
        # The Responses API's counts, as the importer reads them from Codex's logs: input
        # holds the cached input and output the reasoning, so each token counts once.
        usage.provider = "openai"
        usage.model = _model(attrs, "model")
        usage.cache_read = _count(attrs, "cached_token_count")
        usage.input = _input_less_cached(usage, attrs, "input_token_count")
        usage.output = _count(attrs, "output_token_count")
        identity = ""  # none is sent: the session, time, model and counts are the record's
    else:
        usage.provider = _provider(attrs)
        usage.model = _model(attrs, "gen_ai.response.model", "gen_ai.request.model")
        usage.cache_read = _count(attrs, "gen_ai.usage.cache_read.input_tokens")
        usage.cache_write = _count(attrs, "gen_ai.usage.cache_creation.input_tokens")
        usage.input = _input_less_cached(usage, attrs, "gen_ai.usage.input_tokens")
        usage.output = _count(attrs, "gen_ai.usage.output_tokens")
        identity = attrs.get("gen_ai.response.id") or ""
    usage.key = digest(
        who.session,
        ns,
        identity,
        usage.model,
        usage.input,
        usage.output,
        usage.cache_read,
        usage.cache_write,
    )
    return usage


def from_metrics(request: ExportMetricsServiceRequest) -> Found:
    """The usage points among an export's metrics."""
    found = Found()
    latest = _latest_ns()
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                found.points.extend(_metric_points(metric, resource, found, latest))
    return found


def _metric_points(
    metric: Any, resource: dict[str, Any], found: Found, latest: int
) -> Iterable[Point]:
    name = metric.name
    shape = EXPECTED.get(name)
    if shape is None:
        return
    data = getattr(metric, metric.WhichOneof("data") or "sum")
    if metric.WhichOneof("data") != shape:
        for _ in data.data_points:
            found.reject(f"{name} must be a {shape}")
        return
    temporality = data.aggregation_temporality
    for dp in data.data_points:
        try:
            yield _point(name, temporality, dp, resource, latest)
        except Invalid as e:
            found.reject(f"{name}: {e}")


def _point(name: str, temporality: int, dp: Any, resource: dict[str, Any], latest: int) -> Point:
    if temporality not in (
        AggregationTemporality.AGGREGATION_TEMPORALITY_DELTA,
        AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE,
    ):
        raise Invalid("aggregation temporality must be delta or cumulative")
    attrs = attributes(dp.attributes)
    both = {**resource, **attrs}  # the point's first
    who = origin(both)
    if name == "gen_ai.client.token.usage":
        kind_attr, kinds = "gen_ai.token.type", GENAI_TOKEN_TYPES
        model = _model(attrs, "gen_ai.response.model", "gen_ai.request.model")
        provider = _provider(both)
        if not dp.HasField("sum"):
            raise Invalid("a histogram point without its sum")
        value = dp.sum
    else:
        kind_attr, kinds = "type", CLAUDE_TOKEN_TYPES
        model, provider = _model(attrs, "model"), "anthropic"
        value = dp.as_int if dp.WhichOneof("value") == "as_int" else dp.as_double
    if name == "claude_code.cost.usage":
        kind = "cost"
        if not 0 <= value <= MAX_COST_USD:
            raise Invalid(f"a cost must be from 0 to {MAX_COST_USD}")
    else:
        kind = kinds.get(str(attrs.get(kind_attr)), "")
        if not kind:
            raise Invalid(f"{kind_attr} must be one of {', '.join(kinds)}")
        if not 0 <= value <= MAX_TOKENS:
            raise Invalid(f"a token count must be from 0 to {MAX_TOKENS}")
    group = {k: v for k, v in attrs.items() if k != kind_attr}
    resource_key = sorted(resource.items())
    usage = Usage(
        METRIC,
        digest(resource_key, sorted(group.items()), dp.time_unix_nano),
        _time(dp.time_unix_nano, latest),
        who,
        provider=provider,
        model=model,
    )
    cumulative = temporality == AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
    series = (
        digest(name, resource_key, sorted(attrs.items()), dp.start_time_unix_nano)
        if cumulative
        else None
    )
    return Point(usage, kind, float(value), dp.time_unix_nano, series)


def records(points: Iterable[tuple[Point, float]]) -> list[Usage]:
    """The records that points add up to, given each point's amount (the whole value of a
    delta point; what a cumulative one grew by)."""
    out: dict[str, Usage] = {}
    for point, amount in points:
        usage = out.get(point.usage.key)
        if usage is None:
            usage = out[point.usage.key] = replace(point.usage)
        if point.kind == "cost":
            cost = _cost(repr(amount), "cost") or Decimal(0)
            usage.estimated_cost_usd = (usage.estimated_cost_usd or 0) + cost
        else:
            setattr(usage, point.kind, getattr(usage, point.kind) + round(amount))
    return list(out.values())
