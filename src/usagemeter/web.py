"""HTTP plumbing shared by every handler: errors, request parsing, JSON."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import re
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import date
from decimal import Decimal
from math import isfinite
from typing import Annotated, Any, TypeVar
from uuid import UUID

import jiter
import psycopg
import simplejson
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from psycopg import postgres
from pydantic import AfterValidator, BaseModel, Field, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails
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


def no_nul(value: str) -> str:
    """PostgreSQL text cannot hold a NUL character: refuse it before the database does."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# String fields of request bodies, each with its documented maximum length (docs/api.md).
Name = Annotated[str, Field(max_length=200), AfterValidator(no_nul)]
Label = Annotated[str, Field(max_length=255), AfterValidator(no_nul)]
Title = Annotated[str, Field(max_length=1000), AfterValidator(no_nul)]


_DATE = TypeAdapter(date)


def iso_date(value: Any) -> Any:
    """A JSON date string (YYYY-MM-DD) as a date; anything else is left to the model."""
    if not isinstance(value, str):
        return value
    try:
        return _DATE.validate_strings(value)
    except ValidationError:
        raise ValueError("must be a date (YYYY-MM-DD)") from None


def _is_json(content_type: str | None) -> bool:
    media = (content_type or "").split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def read_json(request: Request, error: str) -> Any:
    """The request body as JSON (415 unless it says it is JSON; a body that is not JSON is a
    400 with `error`). Numbers with a fraction or exponent keep their exact text
    (exact_number reads them); NaN, Infinity, lone surrogates and nesting past the
    parser's limit are not JSON."""
    raw = await request.body()
    if raw and not _is_json(request.headers.get("content-type")):
        raise ApiError(415, "Content-Type must be application/json")
    try:
        return jiter.from_json(raw, allow_inf_nan=False, float_mode="lossless-float")
    except ValueError:
        raise bad_request(error) from None


def reason(error: ErrorDetails, default: str = "is invalid") -> str:
    """What is wrong with one field, in words."""
    if error["type"] == "string_too_long":
        return f"must be at most {error.get('ctx', {})['max_length']} characters"
    if error["type"] == "value_error":
        return str(error.get("ctx", {})["error"])
    return default


M = TypeVar("M", bound=BaseModel)


async def parse_model(
    request: Request, model: type[M], error: str = "invalid request body", terse: bool = False
) -> M:
    """The JSON body validated against a model, or a 400 naming the first bad field (`terse`:
    only `error` for a value of the wrong type, as Multica answers on its daemon routes)."""
    data = await read_json(request, error)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        why = reason(first, "" if terse else "is invalid")
        raise bad_request(f"{error}: {field or 'body'} {why}" if why else error) from None


def exact_number(value: Any) -> Decimal:
    """A JSON number as the decimal the client wrote, of at most 15 significant digits (a
    JSON body's fractions arrive as their text; plain floats, from Python callers, give
    back the digits written through repr when there are at most 15 of them)."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, jiter.LosslessFloat):
        number = Decimal(str(value))
    elif isinstance(value, bool) or not isinstance(value, int | float) or not isfinite(value):
        raise ValueError("not a number")
    else:
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


def database_trouble(exc: Exception) -> str:
    """What a 503 says of a database error: down, restarting, out of connections, or a
    statement over its time (the client tries again)."""
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return "database too slow"
    return "database unavailable"


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _allowed(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in app.router.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods or set()
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    """Every error body is `{"error": ...}`; validation never answers 422."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        return error_response(400, "invalid request")

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        response = error_response(exc.status_code, str(exc.detail).lower())
        if exc.status_code == 405:  # every method of the path, not only one route's
            response.headers["Allow"] = ", ".join(_allowed(app, request.url.path))
        return response

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this answer, so the server logs the traceback once, and
        # the server then drops the connection: say so, or the client's next request on it
        # fails too.
        response = error_response(500, "internal error")
        response.headers["Connection"] = "close"
        return response

    async def database_error(_: Request, exc: Exception) -> JSONResponse:
        response = error_response(503, database_trouble(exc))
        response.headers["Retry-After"] = "1"
        return response

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(psycopg.OperationalError, database_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)


async def connection(request: Request) -> AsyncIterator[AConn]:
    """One pooled autocommit connection for the request."""
    async with request.app.state.pool.connection() as conn:
        yield conn


Conn = Annotated[AConn, Depends(connection)]


_RETRIED = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)


def retrying(handler: Callable[..., Awaitable[Any]], attempts: int = 4) -> Callable[..., Any]:
    """The handler, run again when its transaction lost a deadlock or a serialization
    conflict (rolled back, so nothing of it was written; its body is read once and kept)."""

    @functools.wraps(handler)
    async def run(*args: Any, **kwargs: Any) -> Any:
        for attempt in range(attempts - 1):
            try:
                return await handler(*args, **kwargs)
            except _RETRIED:
                await asyncio.sleep(0.005 * 2**attempt)
        return await handler(*args, **kwargs)

    # FastAPI reads the handler's parameters; resolve their names where the handler is.
    run.__signature__ = inspect.signature(handler, eval_str=True)  # type: ignore[attr-defined]
    return run


def rollup_enabled(request: Request) -> bool:
    """Whether reports read the rollup (USAGE_DAILY_ROLLUP_ENABLED)."""
    return bool(request.app.state.config.rollup_enabled)
