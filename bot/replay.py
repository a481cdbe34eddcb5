"""Refuse a signed Slack request seen before. Bolt refuses stale timestamps (over 5 minutes); a copy of a
fresh request would still pass, so each valid signature is remembered for that same window."""

from __future__ import annotations

import time
from collections.abc import Mapping

import redis.asyncio as aioredis
from slack_sdk.signature import SignatureVerifier

WINDOW_SECONDS = 5 * 60


class ReplayGuard:
    """Shared through Redis when given (every web process sees the same requests), else in this process."""

    def __init__(self, signing_secret: str, redis: aioredis.Redis | None = None) -> None:
        self.verifier = SignatureVerifier(signing_secret)
        self.redis = redis
        self._seen: dict[str, float] = {}

    async def is_replay(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """True for a validly signed request whose signature was already used; invalid ones are Bolt's."""
        timestamp = headers.get("x-slack-request-timestamp", "")
        signature = headers.get("x-slack-signature", "")
        if not timestamp.isdigit() or not signature or not self.verifier.is_valid(body, timestamp, signature):
            return False
        if self.redis is not None:
            first = await self.redis.set(f"autodev:slack:sig:{signature}", "1", nx=True, ex=WINDOW_SECONDS)
            return not first
        now = time.monotonic()
        self._seen = {s: t for s, t in self._seen.items() if now - t < WINDOW_SECONDS}
        if signature in self._seen:
            return True
        self._seen[signature] = now
        return False
