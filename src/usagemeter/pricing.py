"""Prices: list, set and remove (API `/api/pricing`, CLI `usagemeter prices`).

Global prices belong to the operator (CLI); a workspace's owners and admins may override
them for their workspace. Lookup rules live in SQL (price_segments, migration 0006).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from usagemeter.auth import MANAGERS, CallerDep, Workspace, current_workspace
from usagemeter.db import AConn, Row, many, one, queries
from usagemeter.web import (
    ApiError,
    Conn,
    Name,
    bad_request,
    exact_json,
    exact_number,
    iso_date,
    not_found,
    parse_model,
    parse_uuid,
)

Q = queries(__file__)

MAX_PRICE = 10**6  # USD per million tokens
PRICE_FIELDS = ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
Day = Annotated[date, BeforeValidator(iso_date)]
Price = Annotated[
    Decimal,
    BeforeValidator(exact_number),
    Field(ge=0, le=MAX_PRICE, decimal_places=4),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": MAX_PRICE}),
]


class PriceIn(BaseModel):
    """A price entry: USD per million tokens of each kind, in force from a UTC date."""

    model_config = ConfigDict(strict=True, extra="forbid")
    model: Annotated[Name, Field(min_length=1)]
    provider: Name | None = None  # None or "": any provider
    effective_from: Day | None = None  # default: today (UTC)
    input_per_mtok: Price
    output_per_mtok: Price
    cache_read_per_mtok: Price
    cache_write_per_mtok: Price

    def params(self, workspace_id: UUID | None) -> dict[str, Any]:
        return {
            **self.model_dump(),
            "workspace_id": workspace_id,
            "provider": self.provider or None,
        }


def _list_params(
    workspace_id: UUID | None, model: str | None = None, id: UUID | None = None
) -> Row:
    return {"workspace_id": workspace_id, "model": model or None, "id": id}


def _require_manager(ws: Workspace) -> None:
    if ws.role not in MANAGERS:
        raise ApiError(403, "only workspace owners and admins can change prices")


async def list_prices(
    request: Request, caller: CallerDep, conn: Conn, model: str | None = None
) -> Response:
    """Global prices and the workspace's overrides (`?model=` keeps one model and its base)."""
    ws = await current_workspace(request, caller, conn)
    return exact_json(await many(conn, Q.list_prices, _list_params(ws.id, model)))


async def effective_prices(
    request: Request, caller: CallerDep, conn: Conn, model: str = "", provider: str = ""
) -> Response:
    """The prices that apply to a model (and provider) in the workspace, by UTC date range."""
    if not model:
        raise bad_request("model is required")
    ws = await current_workspace(request, caller, conn)
    params = {"workspace_id": ws.id, "provider": provider, "model": model}
    return exact_json(await many(conn, Q.effective_prices, params))


async def set_price(request: Request, caller: CallerDep, conn: Conn) -> Response:
    """Create or replace a workspace override (owners and admins)."""
    body = await parse_model(request, PriceIn)
    ws = await current_workspace(request, caller, conn)
    price_id = await store(conn, ws, body)
    return exact_json(await one(conn, Q.list_prices, _list_params(ws.id, id=price_id)))


async def delete_price(
    price_id: str, request: Request, caller: CallerDep, conn: Conn
) -> dict[str, str]:
    """Remove a workspace override (owners and admins); global prices are the operator's."""
    pid = parse_uuid(price_id, "price_id")
    ws = await current_workspace(request, caller, conn)
    await remove(conn, ws, pid)
    return {"status": "ok"}


async def store(conn: AConn, ws: Workspace, entry: PriceIn) -> UUID:
    """Create or replace the workspace's entry (owners and admins); its id."""
    _require_manager(ws)
    row = await one(conn, Q.set_price, entry.params(ws.id))
    assert row is not None
    return UUID(str(row["id"]))


async def remove(conn: AConn, ws: Workspace, price_id: UUID) -> None:
    """Remove one of the workspace's entries (owners and admins)."""
    _require_manager(ws)
    entry = await one(conn, Q.price_scope, {"id": price_id})
    if entry is None or entry["workspace_id"] not in (None, ws.id):
        raise not_found("price")
    if entry["workspace_id"] is None:
        raise ApiError(403, "global prices are changed with the `usagemeter prices` command")
    await conn.execute(Q.delete_price, {"id": price_id})


# The CLI's side: a synchronous connection, the global catalogue or a workspace by slug.


def cli_list(
    conn: psycopg.Connection[Row], workspace_id: UUID | None, model: str | None
) -> list[Row]:
    """Prices as `list_prices` shows them."""
    return conn.execute(Q.list_prices, _list_params(workspace_id, model)).fetchall()


def cli_set(conn: psycopg.Connection[Row], workspace_id: UUID | None, entry: PriceIn) -> Row:
    """Create or replace an entry; returns it."""
    row = conn.execute(Q.set_price, entry.params(workspace_id)).fetchone()
    assert row is not None
    shown = conn.execute(Q.list_prices, _list_params(workspace_id, id=row["id"])).fetchone()
    assert shown is not None
    return shown


def cli_remove(
    conn: psycopg.Connection[Row],
    workspace_id: UUID | None,
    provider: str | None,
    model: str,
    effective_from: date,
) -> bool:
    """Remove the entry of (workspace, provider, model, effective_from); False if none."""
    key = {"workspace_id": workspace_id, "provider": provider or None, "model": model}
    row = conn.execute(Q.find_price, {**key, "effective_from": effective_from}).fetchone()
    if row is not None:
        conn.execute(Q.delete_price, {"id": row["id"]})
    return row is not None
