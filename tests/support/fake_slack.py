"""A local Slack Web API on 127.0.0.1: answers the methods the bot uses and records every call.

Point `SLACK_API_URL` at `fake.api_url`. Switches: `rate_limit(n, retry_after)` answers the next n calls with
429 + Retry-After; `down = True` answers every call with 503; `hold(method)` parks calls of a method until
`release(method)`. `response_url` is a URL on the same server that records what is sent to it.
Socket Mode: `apps.connections.open` hands out a WebSocket on the same server; `send_envelope` delivers an
envelope over it and returns the app's acknowledgement.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

WAIT_S = 10  # how long a test waits for the app over Socket Mode before failing


@dataclass
class SlackCall:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass
class FakeSlack:
    bot_user_id: str = "UBOT"
    calls: dict[str, list[SlackCall]] = field(default_factory=lambda: defaultdict(list))
    responses: list[dict[str, Any]] = field(default_factory=list)
    down: bool = False
    unknown_channels: set[str] = field(default_factory=set)
    rejected_tokens: set[str] = field(default_factory=set)  # auth.test answers invalid_auth for these
    rate_limited_hits: int = 0
    _rate_limited: int = 0
    _retry_after: int = 1
    _holds: dict[str, asyncio.Event] = field(default_factory=dict)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    socket_acks: list[dict[str, Any]] = field(default_factory=list)
    socket_tokens: list[str | None] = field(default_factory=list)
    _sockets: list[web.WebSocketResponse] = field(default_factory=list)
    _connected: asyncio.Event = field(default_factory=asyncio.Event)
    _acked: asyncio.Condition = field(default_factory=asyncio.Condition)
    _runner: web.AppRunner | None = None
    base_url: str = ""

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    @property
    def response_url(self) -> str:
        return f"{self.base_url}/respond"

    def rate_limit(self, calls: int, retry_after: int = 1) -> None:
        self._rate_limited, self._retry_after = calls, retry_after

    def hold(self, method: str) -> None:
        self._holds[method] = asyncio.Event()

    def release(self, method: str) -> None:
        self._holds.pop(method).set()

    def messages(self, channel: str | None = None, *, thread_ts: str | None = None) -> list[dict[str, Any]]:
        """chat.postMessage arguments, optionally of one channel and one thread."""
        return [
            c.args
            for c in self.calls["chat.postMessage"]
            if (channel is None or c.args.get("channel") == channel)
            and (thread_ts is None or c.args.get("thread_ts") == thread_ts)
        ]

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_post("/respond", self._respond)
        app.router.add_get("/link", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for event in self._holds.values():
            event.set()
        for socket in self._sockets:
            await socket.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _args(self, request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            return dict(await request.json())
        form = await request.post()
        args: dict[str, Any] = {}
        for key, value in form.items():
            text = str(value)
            args[key] = json.loads(text) if key in ("blocks", "attachments") else text
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.down:
            return web.Response(status=503, text="Slack is down")
        if self._rate_limited > 0:
            self._rate_limited -= 1
            self.rate_limited_hits += 1
            return web.json_response(
                {"ok": False, "error": "ratelimited"},
                status=429,
                headers={"Retry-After": str(self._retry_after)},
            )
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        self.calls[method].append(SlackCall(method, args, auth.removeprefix("Bearer ") or None))
        if method in self._holds:
            await self._holds[method].wait()
        return web.json_response(self._answer(method, args))

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if channel in self.unknown_channels:
            return {"ok": False, "error": "not_in_channel"}
        if method == "apps.connections.open":
            self.socket_tokens.append(self.calls[method][-1].token)
            return {"ok": True, "url": self.base_url.replace("http://", "ws://") + "/link"}
        if method == "auth.test" and self.calls[method][-1].token in self.rejected_tokens:
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {"ok": True, "user_id": self.bot_user_id, "bot_id": "BBOT", "team_id": "T1", "team": "t"}
        if method == "chat.postMessage":
            ts = f"{1700000000 + next(self._ts)}.000100"
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text")}}
        if method == "chat.update":
            return {"ok": True, "channel": channel, "ts": args.get("ts"), "text": args.get("text")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{1700000000 + next(self._ts)}.000200"}
        return {"ok": False, "error": "unknown_method"}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, then collect the app's acknowledgements of what `send_envelope` sent."""
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        await socket.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A1"}})
        self._connected.set()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                async with self._acked:
                    self.socket_acks.append(json.loads(message.data))
                    self._acked.notify_all()
        return socket

    async def send_envelope(self, envelope: dict[str, Any]) -> dict[str, Any]:
        """Deliver an envelope to the connected app and return its acknowledgement."""
        await asyncio.wait_for(self._connected.wait(), WAIT_S)
        await self._sockets[-1].send_json(envelope)

        def acked() -> bool:
            return any(a.get("envelope_id") == envelope["envelope_id"] for a in self.socket_acks)

        async with self._acked:
            await asyncio.wait_for(self._acked.wait_for(acked), WAIT_S)
        return next(a for a in self.socket_acks if a.get("envelope_id") == envelope["envelope_id"])

    async def _respond(self, request: web.Request) -> web.Response:
        self.responses.append(dict(await request.json()))
        return web.Response(text="ok")
