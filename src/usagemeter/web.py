"""HTTP plumbing shared by every handler: errors, request parsing, JSON."""

from __future__ import annotations

import json
import re
import zoneinfo
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from math import isfinite
from typing import Annotated, Any, TypeVar
from uuid import UUID

import psycopg
import simplejson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg import postgres
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


# How json_query writes a column of each type, as row_to_json would: numbers and booleans
# bare, uuids and dates quoted (dates in ISO form: every connection sets DateStyle), any other
# type through to_json. Numbers here are finite: the service validates every number it stores.
_BARE = {postgres.types[name].oid for name in ("bool", "int2", "int4", "int8", "numeric")}
_QUOTED = {postgres.types[name].oid for name in ("date", "uuid")}


def _json_key(name: str) -> str:
    """`"name":` as an SQL string literal."""
    return "'" + (json.dumps(name, ensure_ascii=False) + ":").replace("'", "''") + "'"


def _json_value(column: psycopg.Column) -> str:
    ref = 'q."' + column.name.replace('"', '""') + '"'
    if column.type_code in _BARE:
        return f"{ref}::text"
    if column.type_code in _QUOTED:
        return f"'\"' || {ref}::text || '\"'"
    return f"to_json({ref})::text"


def _subquery(sql: str) -> str:
    return sql.rstrip().removesuffix(";")


def describe(sql: str) -> str:
    """A statement that runs nothing and tells the columns of `sql`."""
    return f"SELECT * FROM ({_subquery(sql)}) q LIMIT 0"


def json_query(sql: str, columns: Sequence[psycopg.Column]) -> str:
    """The query whose one row's `body` is the rows of `sql` (of these columns) as a compact
    JSON array in their order, rendered by PostgreSQL: numbers exactly as stored, and no
    Python object per row or value (a report may have hundreds of rows). The text is what
    row_to_json writes, built by concatenation and casts, which took half the time of
    row_to_json on a 546-row report. An aggregate over a sorted subquery reads it in order."""
    fields = " || ',' || ".join(
        f"{_json_key(c.name)} || coalesce({_json_value(c)}, 'null')" for c in columns
    )
    return (
        f"SELECT coalesce('[' || string_agg('{{' || {fields} || '}}', ',') || ']', '[]')"
        f" AS body FROM ({_subquery(sql)}) q"
    )


_RENDERERS: dict[str, str] = {}


async def json_rows(conn: AConn, sql: str, params: dict[str, Any]) -> Response:
    """A query's rows as a JSON response (json_query, built once per query and process from
    the columns the query describes)."""
    query = _RENDERERS.get(sql)
    if query is None:
        cur = await conn.execute(describe(sql), params)
        assert cur.description is not None
        query = _RENDERERS[sql] = json_query(sql, cur.description)
    row = await one(conn, query, params)
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
