"""Sessions of the pages: sign-in with a personal access token, the cookie, CSRF, sign-out."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from tests.conftest import World, auth
from usagemeter.auth import digest
from usagemeter.db import Row

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html
    return found.group(1)


def sign_in(client: TestClient, token: str, next_url: str = "/") -> Any:
    """Post the sign-in form as a browser would: its page first, then the form."""
    form = client.get("/")
    return client.post(
        "/signin",
        data={"token": token, "csrf_token": csrf_of(form.text), "next": next_url},
        follow_redirects=False,
    )


def sessions(db: psycopg.Connection[Row]) -> int:
    row = db.execute("SELECT count(*) AS n FROM web_session").fetchone()
    assert row is not None
    return int(row["n"])


def test_signing_in_keeps_a_session_row_and_sets_an_httponly_samesite_cookie(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.token()
    r = sign_in(client, token, "/w/acme/prices")
    assert (r.status_code, r.headers["location"]) == (303, "/w/acme/prices")
    cookie = next(
        c for c in r.headers.get_list("set-cookie") if c.startswith("usagemeter_session=")
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS the cookie is Secure
    value = cookie.split(";")[0].split("=", 1)[1]
    assert sessions(db) == 1
    stored = db.execute("SELECT token_hash, csrf_token FROM web_session").fetchone()
    # The row keeps the cookie's hash, never the cookie itself.
    assert stored is not None and bytes(stored["token_hash"]) == digest(value)
    page = client.get("/w/acme")
    assert page.status_code == 200 and "owner@example.com" in page.text
    assert csrf_of(page.text) == stored["csrf_token"]


def test_only_a_known_personal_access_token_signs_in(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    daemon = world.daemon_token()
    for token, message in [
        ("", "sign in with a personal access token"),
        (daemon, "sign in with a personal access token"),
        ("mul_" + "0" * 40, "this token is unknown or has been revoked"),
    ]:
        r = sign_in(client, token)
        assert r.status_code == 401 and message in r.text
        assert "<form" in r.text  # the form again, to try once more
    assert sessions(db) == 0


def test_a_sign_in_without_its_csrf_token_is_refused(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.token()
    client.get("/")
    for data in ({"token": token}, {"token": token, "csrf_token": "forged"}):
        r = client.post("/signin", data=data, follow_redirects=False)
        assert r.status_code == 403 and "did not come from this site" in r.text
    assert sessions(db) == 0


def test_a_cookie_never_authorises_the_api(client: TestClient, world: World) -> None:
    token = world.token()
    assert sign_in(client, token).status_code == 303
    assert client.get("/w/acme").status_code == 200
    r = client.get("/api/workspaces")
    assert (r.status_code, r.json()) == (401, {"error": "missing authorization"})
    assert client.get("/api/workspaces", headers=auth(token)).status_code == 200


def test_signing_out_ends_the_session(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    sign_in(client, world.token())
    page = client.get("/w/acme")
    cookie = client.cookies["usagemeter_session"]
    refused = client.post("/signout", data={}, follow_redirects=False)
    assert refused.status_code == 403 and sessions(db) == 1  # no CSRF token, no sign-out
    r = client.post("/signout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/")
    assert sessions(db) == 0
    client.cookies.set("usagemeter_session", cookie)  # the old cookie, kept by a client
    again = client.get("/w/acme", follow_redirects=False)
    assert (again.status_code, again.headers["location"]) == (303, "/?next=%2Fw%2Facme")


def test_revoking_the_token_or_expiry_ends_its_sessions(
    client: TestClient, world: World, db: psycopg.Connection[Row]
) -> None:
    token = world.token()
    sign_in(client, token)
    assert client.get("/w/acme", follow_redirects=False).status_code == 200
    db.execute("UPDATE web_session SET expires_at = now() - interval '1 second'")
    assert client.get("/w/acme", follow_redirects=False).status_code == 303
    sign_in(client, token)
    assert sessions(db) == 1  # the expired one went with the new sign-in
    db.execute("DELETE FROM api_token")
    assert client.get("/w/acme", follow_redirects=False).status_code == 303
    assert sessions(db) == 0


def test_after_sign_in_only_a_path_of_this_site(client: TestClient, world: World) -> None:
    token = world.token()
    for next_url, where in [
        ("/w/acme/runtimes?sort=name", "/w/acme/runtimes?sort=name"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("", "/"),
    ]:
        client.cookies.clear()  # signed out: the sign-in form again
        assert sign_in(client, token, next_url).headers["location"] == where
