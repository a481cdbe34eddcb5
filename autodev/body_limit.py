"""One ASGI middleware bounds every request body, per route, while it streams — before any parser runs.

Without it a request costs the web process whatever its body weighs: the form parser read a 400 MB
multipart upload to /jobs/login into memory before the route could refuse it, and /slack/events buffered
a chunked body whole before checking its size (the worker shares the process in `autodev serve`).

- A declared Content-Length over the route's limit is answered 413 without reading a byte.
- A chunked (or understated) body is counted as it arrives; the chunk that passes the limit ends the
  request: the app's `receive` raises, whatever it answers is dropped, and the client gets 413.
- multipart/form-data is refused (415) wherever the route takes no files: none does.

Refusals close the connection, so the client's unread rest is never read at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised into the app from `receive` when the body passes the route's limit."""


@dataclass(frozen=True, slots=True)
class Limit:
    max_bytes: int
    multipart: bool = False  # whether the route takes multipart/form-data (files)


class BodyLimit:
    """`routes`: exact paths with their own Limit; every other path gets `default`."""

    def __init__(self, app: ASGIApp, *, routes: Mapping[str, Limit], default: Limit) -> None:
        self.app = app
        self.routes = dict(routes)
        self.default = default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.routes.get(scope["path"], self.default)
        declared: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else None
            elif (
                name == b"content-type"
                and value[:19].lower() == b"multipart/form-data"
                and not limit.multipart
            ):
                await refuse(send, 415, "multipart bodies are not accepted here")
                return
        if declared is not None and declared > limit.max_bytes:
            await refuse(send, 413, f"body over {limit.max_bytes} bytes")
            return
        await LimitedRequest(self.app, limit.max_bytes).run(scope, receive, send)


class LimitedRequest:
    """One request whose body is counted as the app reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.received = 0
        self.over = False
        self.started = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def limited_receive() -> Message:
            if self.over:
                raise BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
                if self.received > self.max_bytes:
                    self.over = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if self.over:
                return  # the app's answer to a body it could not read in full; the 413 below replaces it
            if message["type"] == "http.response.start":
                self.started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not self.over:
                raise
        if self.over and not self.started:
            await refuse(send, 413, f"body over {self.max_bytes} bytes")


async def refuse(send: Send, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
