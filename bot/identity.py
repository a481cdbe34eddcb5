"""The bot's identity for Bolt, checked once in the background instead of inline on a request.

Bolt's single-workspace authorization calls `auth.test` on the first request it sees (AsyncApp has no
`token_verification_enabled`; that switch exists on the synchronous App only): with Slack's Web API
unreachable at that moment, a slash command got a 500 and was lost. Here Bolt gets an `authorize` function
that answers from what is known without a call; `auth.test` runs once at start-up, in the background, and
again with backoff while Slack cannot be reached. A token Slack rejects is reported (home page, /readyz)
instead of failing requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# auth.test errors that no retry fixes: the token itself is wrong.
BAD_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "no_permission"}
)
FIRST_RETRY_S = 5.0
MAX_RETRY_S = 300.0


class SlackIdentity:
    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client
        self.auth: dict[str, Any] | None = None
        self.problem: str | None = "not verified yet"
        self._task: asyncio.Task[None] | None = None

    @property
    def bad_token(self) -> bool:
        return self.problem is not None and self.problem.startswith("Slack rejected")

    def authorizer(self) -> Callable[..., Awaitable[AuthorizeResult]]:
        """Bolt's `authorize`: the bot's token and ids as far as known; never a call to Slack. (A plain
        function: Bolt passes arguments by the parameter names it finds, and would fill a method's `self`.)"""

        async def authorize(
            enterprise_id: str | None, team_id: str | None, user_id: str | None
        ) -> AuthorizeResult:
            auth = self.auth or {}
            return AuthorizeResult(
                enterprise_id=auth.get("enterprise_id") or enterprise_id,
                team_id=auth.get("team_id") or team_id,
                bot_id=auth.get("bot_id"),
                bot_user_id=auth.get("user_id"),
                bot_token=self.client.token,
                user_id=user_id,
            )

        return authorize

    async def verify(self) -> bool:
        """One `auth.test`: True when it settled the question (valid or rejected token), False when Slack
        could not be asked."""
        try:
            response = await self.client.auth_test()
        except SlackApiError as exc:
            data = exc.response.data if exc.response is not None else None
            error = str(data.get("error", "")) if isinstance(data, dict) else ""
            if error in BAD_TOKEN_ERRORS:
                self.problem = f"Slack rejected SLACK_BOT_TOKEN ({error})"
                log.error(
                    "%s: Slack replies and thread updates will fail until the token is fixed", self.problem
                )
                return True
            status = exc.response.status_code if exc.response is not None else "?"
            self.problem = f"not verified yet: auth.test answered {error or f'HTTP {status}'}"
            return False
        except Exception as exc:  # Slack unreachable: requests go on, the check is tried again later
            self.problem = f"not verified yet: Slack unreachable ({type(exc).__name__})"
            return False
        self.auth = dict(response.data) if isinstance(response.data, dict) else {}
        self.problem = None
        log.info("Slack token verified (bot user %s)", self.auth.get("user_id"))
        return True

    def start(self) -> None:
        """Verify in the background until Slack answers; returns at once."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._verify_until_answered(), name="slack-auth"
            )

    async def _verify_until_answered(self) -> None:
        wait = FIRST_RETRY_S
        while not await self.verify():
            log.warning("Slack token %s; trying again in %.0fs", self.problem, wait)
            await asyncio.sleep(wait)
            wait = min(MAX_RETRY_S, wait * 2)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
