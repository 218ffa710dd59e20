"""The guard every request passes before the application: bounded bodies read whole, NUL-free
paths and query strings, and requests cancelled when their client leaves; and gzip for
pages."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi.responses import JSONResponse
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from usagemeter.web import error_response


def too_large(max_body: int) -> JSONResponse:
    """The answer to a body over the limit."""
    return error_response(413, f"request body larger than {max_body} bytes")


class Guard:
    """What every request goes through before the application sees it:
    - a path or query string with a NUL character is 400;
    - the body is read whole first, so no database connection waits on a slow client: over
      `max_body` bytes it is 413 (by its Content-Length before a byte is read, or as soon as
      a body sent without one grows past it), not all there within `body_timeout` seconds
      408;
    - the application runs until it has answered or the client goes away, whichever comes
      first: a request whose client left is cancelled, and with it its database query."""

    def __init__(self, app: ASGIApp, max_body: int, body_timeout: float) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > self.max_body:
            await too_large(self.max_body)(scope, receive, send)
            return
        if b"%00" in scope["query_string"] or "\x00" in scope["path"]:
            where = "path" if "\x00" in scope["path"] else "query string"
            await error_response(400, f"invalid {where}: NUL character")(scope, receive, send)
            return
        try:
            body = await asyncio.wait_for(self._body(receive), self.body_timeout)
        except TimeoutError:
            message = f"request body not received within {self.body_timeout:g} seconds"
            await error_response(408, message)(scope, receive, send)
            return
        if body is None:
            await too_large(self.max_body)(scope, receive, send)
            return
        await self._run(scope, body, receive, send)

    async def _body(self, receive: Receive) -> bytes | None:
        """The whole body, or None when it grows past max_body (or the client left)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _run(self, scope: Scope, body: bytes, receive: Receive, send: Send) -> None:
        gone = asyncio.Event()
        given = False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        app = asyncio.ensure_future(self.app(scope, replay, send))
        watcher = asyncio.ensure_future(watch())
        try:
            await asyncio.wait({app, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not app.done():  # the client left: stop its work (psycopg cancels the query)
                app.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await app


class Compressed:
    """gzip for pages and their assets (chart.js: 205 kB, 70 kB compressed) when the browser
    takes it; the API's answers pass as they are (its clients are daemons and scripts, and
    compressing costs CPU on every request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        api = scope["type"] != "http" or scope["path"].startswith(("/api/", "/metrics", "/v1/"))
        await (self.app if api else self.gzip)(scope, receive, send)
