"""The API's OpenAPI description, as the handlers really parse and answer: each route's body
(the model its handler validates), its errors (always `{"error": "..."}`, never a 422),
the workspace it works on, and bearer authentication (Swagger's Authorize button)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel


@dataclass(frozen=True)
class Route:
    """One route of the table of contents (app.ROUTES)."""

    method: str
    path: str
    handler: Callable[..., Any]
    body: type[BaseModel] | None = None  # the JSON body the handler validates
    errors: tuple[int, ...] = ()  # statuses beyond those every route of its kind answers
    workspace: bool = False  # works on the workspace named by the query or headers


_REASONS = {
    400: "Invalid input: a parameter, the body, or a NUL character in the query string",
    401: "Missing or invalid bearer token",
    403: "The caller's token or role does not allow it",
    404: "Not found, or not visible to the caller",
    408: "The body did not arrive within USAGEMETER_BODY_TIMEOUT seconds",
    409: "In conflict with the current state",
    413: "Body larger than USAGEMETER_MAX_BODY bytes (refused before it is read)",
    415: "A body whose Content-Type is not application/json",
    503: "The database is unavailable or too slow: retry after Retry-After seconds",
}

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        # A 409 of deleting a runtime also says why in a word, and which agents are in the way.
        "code": {"type": "string"},
        "active_agents": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": False,
}

_WORKSPACE = [
    ("query", "workspace_slug", "The workspace's slug (checked first)."),
    ("header", "X-Workspace-Slug", "The workspace's slug."),
    ("query", "workspace_id", "The workspace's id."),
    ("header", "X-Workspace-ID", "The workspace's id (checked last)."),
]

_DESCRIPTION = (
    "Token and cost reports of AI-agent runtimes, wire-compatible with Multica's runtime-usage"
    " API. Every `/api` route takes `Authorization: Bearer <token>`: a personal access token"
    ' (`mul_…`) or a workspace\'s daemon token (`mdt_…`). Errors are `{"error": "…"}`.'
)


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def describe_api(app: FastAPI, routes: list[Route]) -> dict[str, Any]:
    """The OpenAPI document of app, built once."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=_DESCRIPTION, routes=app.routes
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas["Error"] = _ERROR
    components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for route in routes:
        op = doc["paths"][route.path][route.method.lower()]
        for param in op.get("parameters", []):
            if param["in"] == "path" and param["name"].endswith("_id"):
                param["schema"] = {"type": "string", "format": "uuid"}
        statuses = {400, *route.errors}
        if route.path.startswith("/api/"):
            statuses |= {401, 404, 503}
            op["security"] = [{"bearer": []}]
        if route.workspace:
            op.setdefault("parameters", []).extend(
                {
                    "in": where,
                    "name": name,
                    "required": False,
                    "description": text,
                    "schema": {"type": "string"},
                }
                for where, name, text in _WORKSPACE
            )
        if route.body is not None:
            statuses |= {408, 413, 415}
            body = route.body.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(body.pop("$defs", {}))
            schemas[route.body.__name__] = body
            ref = {"$ref": f"#/components/schemas/{route.body.__name__}"}
            op["requestBody"] = {"required": True, "content": _json(ref)}
        responses = op.setdefault("responses", {})
        responses.pop("422", None)
        for status in sorted(statuses):
            responses[str(status)] = {
                "description": _REASONS[status],
                "content": _json({"$ref": "#/components/schemas/Error"}),
            }
    app.openapi_schema = doc
    return doc
