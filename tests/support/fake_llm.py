"""A scripted OpenAI-compatible server on a real 127.0.0.1 port, for tests.

    async with FakeLLM() as llm:
        settings = make_settings(tmp_path, openai_base_url=llm.base_url, openai_api_key="sk-test")
        llm.reply_json({"steps": [...]})                      # a plan (the message content is the JSON text)
        llm.reply_tool_calls(("create_file", {"path": "a.py", "content": "x = 1\n"}))
        llm.reply_text("done")                                # a plain answer, no tool calls
        llm.reply_status(429, retry_after=0)                  # an HTTP error (429 / 500 / 401 …)
        ...
        llm.requests        # every /chat/completions request body, in order (dicts)
        llm.remaining       # scripted replies not used yet

        llm.reply_refusal("I can't help with that.")       # message.refusal, as OpenAI sends it
        llm.reply_raw("<html>502</html>", content_type="text/html")   # a proxy's page with status 200
        llm.reply_hang()                                      # never answers (the client must time out)
        llm.reply_drop()                                      # closes the connection without an answer
        llm.reasoning_models.add("gpt-5")                     # refuses max_tokens, temperature as OpenAI does

Replies are served in the order queued. When the queue is empty the server answers 400 with
"fake LLM: no scripted reply left" (the test forgot one, or the code made a call it should not have).
`usage` is reported on every completion: `tokens=(in, out)` on a reply overrides the default (a rough
count of the request's characters / 4, and of the reply's); `usage=` replaces the whole object (None: no
usage at all; negative or nonsensical values as a broken server sends them). A model in
`reasoning_models` gets OpenAI's real 400 for `max_tokens` or a temperature, before any scripted reply
is used. `/v1/embeddings` answers a deterministic 8-dimensional vector per input (a hash of the text),
with usage, unless `embedding_replies` holds scripted replies (reply_* with `embeddings=True`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeLLM"]


_DEFAULT: Any = object()


@dataclass
class _Reply:
    status: int = 200
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    retry_after: float | None = None
    tokens: tuple[int, int] | None = None
    error: str = ""
    usage: Any = _DEFAULT
    refusal: str | None = None
    raw: str | None = None  # a body sent as it is, with `content_type`
    content_type: str = "application/json"
    hang: bool = False
    drop: bool = False


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        # Models that answer as OpenAI's o-series and gpt-5 do: 400 for max_tokens or a temperature.
        self.reasoning_models: set[str] = set()
        self.embedding_replies: deque[_Reply] = deque()
        self._queue: deque[_Reply] = deque()
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0

    # -- scripting ---------------------------------------------------------------------------------

    def reply_text(
        self, text: str, *, tokens: tuple[int, int] | None = None, usage: Any = _DEFAULT
    ) -> FakeLLM:
        self._queue.append(_Reply(content=text, tokens=tokens, usage=usage))
        return self

    def reply_json(
        self, value: Any, *, tokens: tuple[int, int] | None = None, usage: Any = _DEFAULT
    ) -> FakeLLM:
        return self.reply_text(json.dumps(value), tokens=tokens, usage=usage)

    def reply_tool_calls(
        self, *calls: tuple[str, dict[str, Any]], tokens: tuple[int, int] | None = None, usage: Any = _DEFAULT
    ) -> FakeLLM:
        self._queue.append(_Reply(tool_calls=list(calls), tokens=tokens, usage=usage))
        return self

    def reply_refusal(self, text: str, *, tokens: tuple[int, int] | None = None) -> FakeLLM:
        self._queue.append(_Reply(refusal=text, tokens=tokens))
        return self

    def reply_status(
        self, status: int, *, retry_after: float | None = None, error: str = "", embeddings: bool = False
    ) -> FakeLLM:
        reply = _Reply(status=status, retry_after=retry_after, error=error or f"status {status}")
        return self._add(reply, embeddings)

    def reply_raw(
        self, body: str, *, content_type: str = "text/html", status: int = 200, embeddings: bool = False
    ) -> FakeLLM:
        """A body sent as it is: a proxy's HTML page, JSON that is not a completion, …"""
        return self._add(_Reply(status=status, raw=body, content_type=content_type), embeddings)

    def reply_hang(self, *, embeddings: bool = False) -> FakeLLM:
        """Read the request and never answer (until the server stops)."""
        return self._add(_Reply(hang=True), embeddings)

    def reply_drop(self, *, embeddings: bool = False) -> FakeLLM:
        """Read the request and close the connection without a word."""
        return self._add(_Reply(drop=True), embeddings)

    def _add(self, reply: _Reply, embeddings: bool) -> FakeLLM:
        (self.embedding_replies if embeddings else self._queue).append(reply)
        return self

    @property
    def remaining(self) -> int:
        return len(self._queue)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def all_prompt_text(self) -> str:
        """Every request body sent so far as one JSON string (to search for leaks)."""
        return json.dumps(self.requests)

    # -- server ------------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeLLM:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        refused = _refused_parameter(body) if body.get("model") in self.reasoning_models else None
        if refused is not None:
            return refused
        if not self._queue:
            return _error(400, "fake LLM: no scripted reply left")
        reply = self._queue.popleft()
        special = await self._special(request, reply)
        if special is not None:
            return special
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.refusal is not None:
            message["refusal"] = reply.refusal
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{len(self.requests)}_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)},
                }
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
        tokens_in, tokens_out = reply.tokens or (
            max(1, len(json.dumps(body)) // 4),
            max(1, len(json.dumps(message)) // 4),
        )
        return chat_completion(
            f"chatcmpl-{len(self.requests)}", body, message, tokens_in, tokens_out, usage=reply.usage
        )

    async def _special(self, request: web.Request, reply: _Reply) -> web.StreamResponse | None:
        """The answer to a reply that is not a normal one (an error, a raw body, silence), else None."""
        if reply.hang:
            await self._closing.wait()
            return web.Response(status=503)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)  # never reaches the client
        if reply.raw is not None:
            return web.Response(
                status=reply.status, body=reply.raw.encode(), headers={"Content-Type": reply.content_type}
            )
        if reply.status != 200:
            headers = {} if reply.retry_after is None else {"Retry-After": str(reply.retry_after)}
            return _error(reply.status, reply.error, headers)
        return None

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.embedding_requests.append(body)
        if self.embedding_replies:
            special = await self._special(request, self.embedding_replies.popleft())
            if special is not None:
                return special
        inputs = body.get("input", [])
        if isinstance(inputs, str):
            inputs = [inputs]
        data = []
        for i, text in enumerate(inputs):
            digest = hashlib.sha256(str(text).encode()).digest()
            data.append({"object": "embedding", "index": i, "embedding": [b / 255 for b in digest[:8]]})
        tokens = sum(max(1, len(str(t)) // 4) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "unknown"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def chat_completion(
    completion_id: str,
    request: dict[str, Any],
    message: dict[str, Any],
    tokens_in: int,
    tokens_out: int,
    *,
    usage: Any = _DEFAULT,
) -> web.Response:
    """An OpenAI chat completion answering `request` with `message` (also for bench/worker_concurrency.py).

    `usage` replaces the usage object made of `tokens_in` and `tokens_out`; None leaves it out."""
    if usage is _DEFAULT:
        usage = {
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "total_tokens": tokens_in + tokens_out,
        }
    completion: dict[str, Any] = {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "unknown"),
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
            }
        ],
    }
    if usage is not None:
        completion["usage"] = usage
    return web.json_response(completion)


def _refused_parameter(body: dict[str, Any]) -> web.Response | None:
    """OpenAI's answer to a reasoning model asked with `max_tokens` or a temperature, word for word."""
    if "max_tokens" in body:
        return _error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead.",
            param="max_tokens",
            code="unsupported_parameter",
        )
    if body.get("temperature") not in (None, 1):
        return _error(
            400,
            f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
            "Only the default (1) value is supported.",
            param="temperature",
            code="unsupported_value",
        )
    return None


def _error(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    code: str | int | None = None,
) -> web.Response:
    kind = "invalid_request_error" if param else "fake_error"
    error = {"message": message, "type": kind, "param": param, "code": code if code is not None else status}
    return web.json_response({"error": error}, status=status, headers=headers)
