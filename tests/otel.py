"""Telemetry as the official OpenTelemetry SDK makes it and its OTLP/HTTP exporters send it:
log records (events) and metrics, exported to a running server."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as JsonLogs
from opentelemetry.exporter.otlp.json.http.metric_exporter import (
    OTLPMetricExporter as JsonMetrics,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricsData,
)
from opentelemetry.sdk.resources import Resource

CLAUDE = {"service.name": "claude-code", "host.name": "devbox"}
DELTA = AggregationTemporality.DELTA
CUMULATIVE = AggregationTemporality.CUMULATIVE


def ns(at: datetime) -> int:
    return int(at.timestamp()) * 10**9 + at.microsecond * 1000


def api_request(
    at: datetime,
    session: str = "s-1",
    seq: int = 1,
    model: str = "claude-sonnet-4-5",
    tokens: tuple[int, int, int, int] = (100, 20, 3000, 400),
    cost: str = "0.0123",
    as_strings: bool = True,
) -> dict[str, Any]:
    """One claude_code.api_request event, its values as strings as Claude Code sends them."""
    values: list[Any] = list(tokens)
    if as_strings:
        values = [str(v) for v in values]
    return {
        "timestamp": ns(at),
        "body": "claude_code.api_request",
        "event_name": "claude_code.api_request",
        "attributes": {
            "event.name": "api_request",
            "event.timestamp": at.isoformat(),
            "event.sequence": seq,
            "session.id": session,
            "user.email": "dev@example.com",
            "model": model,
            "input_tokens": values[0],
            "output_tokens": values[1],
            "cache_read_tokens": values[2],
            "cache_creation_tokens": values[3],
            "cost_usd": cost,
            "duration_ms": "1234",
        },
    }


CODEX = {"service.name": "codex_cli_rs", "service.version": "0.63.0", "env": "dev",
         "host.name": "devbox"}  # fmt: skip


def codex_completed(
    at: datetime,
    conversation: str = "c-1",
    model: str = "gpt-5-codex",
    counts: tuple[int, int, int, int] = (5000, 4000, 300, 120),
) -> dict[str, Any]:
    """One completed response as Codex logs it: a codex.sse_event whose (input with the
    cached part, cached, output with the reasoning part, reasoning) counts are strings and
    integers as Codex writes them; tool_token_count holds the total."""
    return {
        "timestamp": ns(at),
        "attributes": {
            "event.name": "codex.sse_event",
            "event.kind": "response.completed",
            "event.timestamp": at.isoformat(),
            "conversation.id": conversation,
            "app.version": "0.63.0",
            "user.email": "dev@example.com",
            "terminal.type": "xterm-256color",
            "model": model,
            "slug": model,
            "input_token_count": str(counts[0]),
            "output_token_count": str(counts[2]),
            "cached_token_count": counts[1],
            "reasoning_token_count": counts[3],
            "tool_token_count": str(counts[0] + counts[2]),
        },
    }


def log_records(
    events: list[dict[str, Any]], resource: Mapping[str, Any]
) -> list[ReadableLogRecord]:
    """The SDK's log records of the events, as its exporters take them."""
    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider(resource=Resource.create(dict(resource)))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("com.anthropic.claude_code.events")
    for event in events:
        logger.emit(**event)
    provider.shutdown()
    return list(memory.get_finished_logs())


def log_exporter(url: str, token: str, json: bool = False, gzip: bool = True) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if json:
        return JsonLogs(endpoint=f"{url}/v1/logs", headers=headers)
    compression = Compression.Gzip if gzip else Compression.NoCompression
    return OTLPLogExporter(endpoint=f"{url}/v1/logs", headers=headers, compression=compression)


def metric_exporter(url: str, token: str, json: bool = False) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    if json:
        return JsonMetrics(endpoint=f"{url}/v1/metrics", headers=headers)
    return OTLPMetricExporter(
        endpoint=f"{url}/v1/metrics", headers=headers, compression=Compression.Gzip
    )


class Meter:
    """A meter provider whose collections are taken by hand, in one temporality."""

    def __init__(self, resource: Mapping[str, Any], temporality: AggregationTemporality) -> None:
        self.reader = InMemoryMetricReader(
            preferred_temporality={Counter: temporality, Histogram: temporality}
        )
        self.provider = MeterProvider(
            resource=Resource.create(dict(resource)), metric_readers=[self.reader]
        )
        meter = self.provider.get_meter("com.anthropic.claude_code")
        self.tokens = meter.create_counter("claude_code.token.usage", unit="tokens")
        self.cost = meter.create_counter("claude_code.cost.usage", unit="USD")
        self.genai = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")

    def collect(self) -> MetricsData:
        data = self.reader.get_metrics_data()
        assert data is not None
        return data


@contextmanager
def meter(
    resource: Mapping[str, Any] = CLAUDE, temporality: AggregationTemporality = DELTA
) -> Iterator[Meter]:
    m = Meter(resource, temporality)
    try:
        yield m
    finally:
        m.provider.shutdown()
