"""Usage ingest shared by the daemon endpoint and the batch endpoint.

Validation happens entirely before the database is touched; a batch with any invalid
entry is rejected whole (400 naming the entry) and nothing is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, TypeVar
from uuid import UUID

import psycopg
from fastapi import Request
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from usagemeter.auth import CallerDep, current_workspace
from usagemeter.db import AConn, one, queries
from usagemeter.web import Conn, Name, bad_request, exact_number, read_json, reason

Q = queries(__file__)

# The most tokens of one kind in one entry: far above any request, far below what sums of
# them can reach without overflow (reports sum in numeric, exactly, whatever the rows hold).
MAX_TOKENS = 10**12
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]
TOKEN_FIELDS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens")
MAX_COST_USD = 10**6
Cost = Annotated[
    Decimal,
    BeforeValidator(exact_number),
    Field(ge=0, le=MAX_COST_USD, decimal_places=10),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": MAX_COST_USD}),
]
# The provider's cost in 1e-10 USD units, as today's Multica daemon sends it.
Ticks = Annotated[int, Field(ge=0, le=MAX_COST_USD * 10**10)]
UUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# Usage is dated from 2000-01-01 to a day ahead of the server's clock (a client's clock may
# run ahead; a date years away would head every report).
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_RFC3339 = TypeAdapter(AwareDatetime, config=ConfigDict(strict=True))


def _usage_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a string")
    at = _RFC3339.validate_strings(value)
    offset = at.utcoffset()
    if offset is None or abs(offset) >= timedelta(hours=16):
        raise ValueError("offset beyond ±15:59")
    if not EARLIEST <= at <= datetime.now(UTC) + timedelta(days=1):
        raise ValueError("out of range")
    return at


UsageTime = Annotated[
    datetime,
    PlainValidator(_usage_time),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class UsageEntry(BaseModel):
    """One (provider, model) usage report of a task; missing token fields are 0. `model` may
    be "" (a client that selected none reports none): a model like any other, unpriced. The
    provider's cost comes as `cost_usd` or as integer `cost_usd_ticks` of 1e-10 USD (today's
    Multica daemon); both given, they must agree."""

    model_config = ConfigDict(strict=True, extra="ignore")
    provider: Name = ""
    model: Name
    input_tokens: Tokens = 0
    output_tokens: Tokens = 0
    cache_read_tokens: Tokens = 0
    cache_write_tokens: Tokens = 0
    cost_usd: Cost | None = None
    cost_usd_ticks: Ticks | None = None

    @model_validator(mode="after")
    def _one_cost(self) -> UsageEntry:
        if self.cost_usd_ticks is not None:
            cost = Decimal(self.cost_usd_ticks).scaleb(-10)
            if self.cost_usd is not None and self.cost_usd != cost:
                raise ValueError("cost_usd and cost_usd_ticks disagree")
            self.cost_usd = cost
        return self


class BatchEntry(UsageEntry):
    """A usage entry naming its task; created_at (RFC 3339 with offset) defaults to now."""

    task_id: Annotated[str, Field(pattern=UUID_PATTERN)]
    created_at: UsageTime | None = None


class DaemonUsageBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    usage: list[UsageEntry] | None = None


class BatchBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    usage: list[BatchEntry]


_REASONS = {
    "model": "model must be a string of at most 200 characters without NUL",
    "provider": "provider must be a string of at most 200 characters without NUL",
    "task_id": "task_id must be a UUID",
    "created_at": "created_at must be an RFC 3339 time with a UTC offset within ±15:59,"
    " from 2000-01-01 to a day ahead of the server's clock",
    **{f: f"{f} must be an integer between 0 and {MAX_TOKENS}" for f in TOKEN_FIELDS},
    "cost_usd": f"cost_usd must be a number from 0 to {MAX_COST_USD} with at most 10"
    " decimals and 15 significant digits",
    "cost_usd_ticks": f"cost_usd_ticks must be an integer from 0 to {MAX_COST_USD * 10**10}"
    " (1e-10 USD)",
}


Body = TypeVar("Body", DaemonUsageBody, BatchBody)


# Entries validated (and later copied) between turns of the event loop: a 10,000-entry batch
# never holds up the requests beside it for more than about 2 ms at a time (1,000 entries
# took 6-8 ms, and a report waited for such a slice at each of its statements: up to 69 ms
# under sustained ingest, bench/RESULTS.md).
SLICE = 250


async def parse_usage(request: Request, model: type[Body], limit: int) -> Body:
    """Validate a usage body; the first problem becomes a 400 naming the entry."""
    data = await read_json(request, "invalid request body")
    usage = data.get("usage") if isinstance(data, dict) else None
    if isinstance(usage, list) and len(usage) > limit:
        raise bad_request(f"invalid request body: at most {limit} usage entries")
    if not isinstance(usage, list) or len(usage) <= SLICE:
        return _validate(model, data, 0)
    body = _validate(model, {**data, "usage": usage[:SLICE]}, 0)
    for start in range(SLICE, len(usage), SLICE):
        await asyncio.sleep(0)
        part = _validate(model, {**data, "usage": usage[start : start + SLICE]}, start)
        body.usage.extend(part.usage or [])  # type: ignore[union-attr]
    return body


def _validate(model: type[Body], data: Any, offset: int) -> Body:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise bad_request(_describe(e, offset)) from None


def _describe(e: ValidationError, offset: int) -> str:
    errors = e.errors()
    # A problem with the body itself outranks one inside an entry.
    if any(len(err["loc"]) < 2 for err in errors):
        return "invalid request body"
    first = errors[0]
    loc = first["loc"]
    field = str(loc[2]) if len(loc) > 2 else ""
    if not field and first["type"] == "value_error":  # the entry's own rule (_one_cost)
        return f"invalid usage entry {int(loc[1]) + offset}: {reason(first)}"
    return f"invalid usage entry {int(loc[1]) + offset}: {_REASONS.get(field, 'must be an object')}"


def _rows(task_ids: list[Any], entries: list[Any]) -> Iterator[tuple[Any, ...]]:
    for i, e in enumerate(entries):
        yield (
            i,
            task_ids[i],
            e.provider,
            e.model,
            *(getattr(e, f) for f in TOKEN_FIELDS),
            e.cost_usd,
            getattr(e, "created_at", None),
        )


async def write_usage(
    conn: AConn,
    workspace_id: UUID,
    task_ids: list[Any],
    entries: list[Any],
) -> None:
    """Stage entries with COPY, reject them all if any task is foreign, else upsert."""
    if not entries:
        return
    async with conn.transaction():
        await conn.execute(Q.create_staging.encode())
        async with conn.cursor().copy(Q.copy_staging) as copy:
            for i, row in enumerate(_rows(task_ids, entries)):
                if i and i % SLICE == 0:
                    await asyncio.sleep(0)
                await copy.write_row(row)
        await conn.execute(Q.lock_tasks)
        bad = await one(conn, Q.first_foreign_entry, {"workspace_id": workspace_id})
        assert bad is not None  # an aggregate has one row
        if bad["ord"] is not None:
            raise bad_request(f"invalid usage entry {bad['ord']}: task not found")
        try:
            await conn.execute(Q.upsert_staged)
        except psycopg.errors.ForeignKeyViolation:  # a task deleted while we wrote
            raise bad_request("a task was deleted while its usage was written") from None


async def batch_usage(request: Request, caller: CallerDep, conn: Conn) -> dict[str, Any]:
    """Write many usage entries of the workspace at once (all or nothing)."""
    limit = request.app.state.config.batch_max
    body = await parse_usage(request, BatchBody, limit)
    ws = await current_workspace(request, caller, conn)
    # The ids as written (checked as UUIDs already): the database reads them.
    task_ids = [e.task_id for e in body.usage]
    await write_usage(conn, ws.id, task_ids, body.usage)
    return {"status": "ok", "entries": len(body.usage)}
