"""The OpenAPI description (openapi.py) tells the truth: every body the handlers parse,
every error as `{"error": ...}`, no 422, and bearer authentication."""

from __future__ import annotations

from fastapi.testclient import TestClient

from usagemeter.app import ROUTES


def test_every_body_and_error_is_described(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"] == {"bearer": {"type": "http", "scheme": "bearer"}}
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    for route in ROUTES:
        op = doc["paths"][route.path][route.method.lower()]
        responses = op["responses"]
        assert "422" not in responses, route.path
        errors = {int(s) for s in responses if s[0] in "45"}
        assert {400, *route.errors} <= errors, route.path
        for status in errors:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}
        if route.path.startswith("/api/"):
            assert op["security"] == [{"bearer": []}] and {401, 404, 503} <= errors, route.path
        if route.body is None:
            assert "requestBody" not in op, route.path
            continue
        assert {413, 415} <= errors, route.path
        ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert ref == f"#/components/schemas/{route.body.__name__}"
    batch = doc["components"]["schemas"]["BatchEntry"]["properties"]
    assert batch["input_tokens"]["maximum"] == 10**12
    assert batch["model"]["maxLength"] == 200
    assert batch["created_at"]["anyOf"][0] == {"type": "string", "format": "date-time"}
    assert "422" not in client.get("/openapi.json").text


def test_path_ids_are_uuids_and_workspace_routes_say_how_to_name_one(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    usage = doc["paths"]["/api/runtimes/{runtime_id}/usage"]["get"]["parameters"]
    assert {"type": "string", "format": "uuid"} in [p["schema"] for p in usage]
    names = {p["name"] for p in doc["paths"]["/api/usage/summary"]["get"]["parameters"]}
    assert {"workspace_slug", "workspace_id", "X-Workspace-Slug", "X-Workspace-ID"} <= names


def test_the_api_docs_page_needs_nothing_from_outside(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "cdn" not in page.text and "https://" not in page.text
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        url = f"/static/swagger-ui/{asset}"
        assert url in page.text
        r = client.get(url)
        assert r.status_code == 200 and len(r.content) > 500, url
    assert client.get("/redoc").status_code == 404
