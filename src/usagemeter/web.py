"""HTTP plumbing shared by every handler: errors, request parsing, JSON."""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import AsyncIterator
from decimal import Decimal
from math import isfinite
from typing import Annotated, Any, TypeVar
from uuid import UUID

import simplejson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from usagemeter.db import AConn, one

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DAYS = re.compile(r"[0-9]{1,3}")
# "localtime" is a file on this host, not a zone of the IANA database.
ZONES = (frozenset(zoneinfo.available_timezones()) | {"UTC"}) - {"localtime"}


class ApiError(Exception):
    """An error answered as `{"error": message}` with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def not_found(what: str) -> ApiError:
    return ApiError(404, f"{what} not found")


def parse_uuid(value: str | None, name: str) -> UUID:
    """The canonical 36-character form only; anything else is 400 `invalid <name>`."""
    if value is None or not _UUID.fullmatch(value):
        raise bad_request(f"invalid {name}")
    return UUID(value)


def parse_days(value: str | None, default: int) -> int:
    """Digits only, 1..365; empty or absent means the default."""
    if not value:
        return default
    if not _DAYS.fullmatch(value) or not 1 <= int(value) <= 365:
        raise bad_request("invalid days")
    return int(value)


def is_zone(name: str) -> bool:
    """An IANA zone name as zoneinfo lists it (case-sensitive), or UTC."""
    return name in ZONES


def parse_tz(value: str | None) -> str | None:
    """A `tz` query parameter: None when empty or absent, else a valid zone."""
    if not value:
        return None
    if not is_zone(value):
        raise bad_request("invalid timezone")
    return value


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request, error: str) -> Any:
    """The request body as JSON; a body that is not JSON is a 400 with `error`."""
    raw = await request.body()
    try:
        return json.loads(raw, parse_constant=_no_constants)
    except ValueError:
        raise bad_request(error) from None


M = TypeVar("M", bound=BaseModel)


async def parse_model(request: Request, model: type[M]) -> M:
    """The JSON body validated against a model (JSON rules: dates are strings), or a 400
    naming the first bad field."""
    await read_json(request, "invalid request body")
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as e:
        field = ".".join(str(p) for p in e.errors()[0]["loc"])
        raise bad_request(f"invalid request body: {field or 'body'} is invalid") from None


def exact_number(value: Any) -> Decimal:
    """A JSON number as the decimal the client wrote. JSON parsers read numbers as doubles,
    whose repr gives back the very digits written when there are at most 15 of them.
    (A Decimal comes from Python callers, never from a JSON body.)"""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
        raise ValueError("not a number")
    number = Decimal(repr(value))
    if len(number.as_tuple().digits) > 15:
        raise ValueError("more than 15 significant digits")
    return number


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return simplejson.RawJSON(format(value, "f"))
    return str(value)  # UUIDs


def exact_json(content: Any) -> Response:
    """A JSON response that writes decimals (money) digit for digit, never via a float."""
    body = simplejson.dumps(content, default=_exact, separators=(",", ":"))
    return Response(body, media_type="application/json")


def json_query(sql: str) -> str:
    """The query whose one row's `body` is the rows of `sql` as a compact JSON array in
    their order, rendered by PostgreSQL: numbers exactly as stored, and no Python object per
    row or value (a report may have hundreds of rows). An aggregate over a sorted subquery
    reads it in order."""
    return (
        "SELECT coalesce('[' || string_agg(row_to_json(q)::text, ',') || ']', '[]')"
        f" AS body FROM ({sql.rstrip().removesuffix(';')}) q"
    )


async def json_rows(conn: AConn, sql: str, params: dict[str, Any]) -> Response:
    """A query's rows as a JSON response (json_query)."""
    row = await one(conn, json_query(sql), params)
    assert row is not None  # an aggregate always has one row
    return Response(row["body"], media_type="application/json")


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    """Every error body is `{"error": ...}`; validation never answers 422."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(400, "invalid request")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail).lower())

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server logs the traceback once.
        return error_response(500, "internal error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


async def connection(request: Request) -> AsyncIterator[AConn]:
    """One pooled autocommit connection for the request."""
    async with request.app.state.pool.connection() as conn:
        yield conn


Conn = Annotated[AConn, Depends(connection)]


def rollup_enabled(request: Request) -> bool:
    """Whether reports read the rollup (USAGE_DAILY_ROLLUP_ENABLED)."""
    return bool(request.app.state.config.rollup_enabled)
