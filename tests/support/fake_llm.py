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

Replies are served in the order queued. When the queue is empty the server answers 400 with
"fake LLM: no scripted reply left" (the test forgot one, or the code made a call it should not have).
`usage` is reported on every completion: `tokens=(in, out)` on a reply overrides the default (a rough
count of the request's characters / 4, and of the reply's). `/v1/embeddings` answers a deterministic
8-dimensional vector per input (a hash of the text), with usage.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeLLM"]


@dataclass
class _Reply:
    status: int = 200
    content: str | None = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    retry_after: float | None = None
    tokens: tuple[int, int] | None = None
    error: str = ""


class FakeLLM:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.embedding_requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._queue: deque[_Reply] = deque()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- scripting ---------------------------------------------------------------------------------

    def reply_text(self, text: str, *, tokens: tuple[int, int] | None = None) -> FakeLLM:
        self._queue.append(_Reply(content=text, tokens=tokens))
        return self

    def reply_json(self, value: Any, *, tokens: tuple[int, int] | None = None) -> FakeLLM:
        return self.reply_text(json.dumps(value), tokens=tokens)

    def reply_tool_calls(
        self, *calls: tuple[str, dict[str, Any]], tokens: tuple[int, int] | None = None
    ) -> FakeLLM:
        self._queue.append(_Reply(tool_calls=list(calls), tokens=tokens))
        return self

    def reply_status(self, status: int, *, retry_after: float | None = None, error: str = "") -> FakeLLM:
        self._queue.append(_Reply(status=status, retry_after=retry_after, error=error or f"status {status}"))
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
        if self._runner is not None:
            await self._runner.cleanup()

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if not self._queue:
            return _error(400, "fake LLM: no scripted reply left")
        reply = self._queue.popleft()
        if reply.status != 200:
            headers = {} if reply.retry_after is None else {"Retry-After": str(reply.retry_after)}
            return _error(reply.status, reply.error, headers)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
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
        return chat_completion(f"chatcmpl-{len(self.requests)}", body, message, tokens_in, tokens_out)

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.embedding_requests.append(body)
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
    completion_id: str, request: dict[str, Any], message: dict[str, Any], tokens_in: int, tokens_out: int
) -> web.Response:
    """An OpenAI chat completion answering `request` with `message` (also for bench/worker_concurrency.py)."""
    return web.json_response(
        {
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
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }
    )


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "fake_error", "code": status}}, status=status, headers=headers
    )
