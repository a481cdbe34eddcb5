"""👍 on a plan's comment approves it: GitHub sends no webhook for reactions, so the reconciler asks."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from engine.store.models import utcnow
from engine.store.waits import waiting_info
from engine.views import JobView
from github_app.client import GitHubApi
from github_app.permissions import Permissions

log = logging.getLogger(__name__)

# How often a plan's reactions are read, by how long it has waited: each reconciler round (15 s) at first,
# then less often, so a plan left for days costs a few hundred requests of the installation's 5,000 an hour.
POLL_EVERY = ((timedelta(minutes=10), 0.0), (timedelta(hours=1), 60.0), (timedelta.max, 300.0))


class ReactionApprovals:
    """`engine.ports.ApprovalWatcher` for GitHub: the first writer who reacted 👍 to the plan's comment."""

    def __init__(self, api: GitHubApi, permissions: Permissions) -> None:
        self.api = api
        self.permissions = permissions
        self._next_poll: dict[tuple[str, int], float] = {}  # (job, wait) → monotonic time of the next read

    async def approver(self, view: JobView) -> str | None:
        info = waiting_info(view.origin)
        mine = view.reporter_state.get("github") or {}
        comment_id = mine.get("wait_comment_id")
        if (
            info is None
            or info["kind"] != "approval"
            or mine.get("wait_comment_for") != info["id"]  # the plan's comment is not posted yet
            or comment_id is None
            or view.installation_id is None
        ):
            return None
        if not self._due((view.id, int(info["id"])), datetime.fromisoformat(str(info["since"]))):
            return None
        path = f"/repos/{view.repo}/issues/comments/{comment_id}/reactions"
        rows = await self.api.request(
            view.installation_id, "GET", path, params={"content": "+1", "per_page": 100}
        )
        for row in rows or []:
            user = row.get("user") or {}
            login = user.get("login")
            if not login or user.get("type") == "Bot":
                continue
            if await self.permissions.is_writer(view.repo, str(login), view.installation_id):
                return f"@{login}"
            log.info("a 👍 from %s, who may not approve, ignored", login, extra={"job_id": view.id})
        return None

    def _due(self, key: tuple[str, int], since: datetime) -> bool:
        now = time.monotonic()
        if self._next_poll.get(key, 0.0) > now:
            return False
        waited = utcnow() - since
        interval = next(every for age, every in POLL_EVERY if waited < age)
        if len(self._next_poll) > 10_000:
            self._next_poll.clear()  # plans long gone; a cleared entry only costs one early read
        self._next_poll[key] = now + interval
        return True
