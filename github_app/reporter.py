"""GitHubReporter: a 👀 reaction, one sticky issue comment and an `autodev` check run, per job."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from githubkit.exception import RequestFailed

from engine import events
from engine.ports import JobEventView
from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.store.models import JobState
from engine.store.waits import waiting_info
from engine.views import JobView
from github_app.client import GitHubApi
from github_app.render import check_summary, check_title, comment_body, job_url, wait_comment

log = logging.getLogger(__name__)

MIN_INTERVAL_SECONDS = 2.0
CONCLUSIONS = {JobState.SUCCEEDED: "success", JobState.FAILED: "failure", JobState.CANCELLED: "cancelled"}
# Events that change what GitHub must show structurally; never held back by the coalescing.
ALWAYS_SEND = frozenset({events.PUSHED, events.PR, events.STATE})


def head_sha(view: JobView, event: JobEventView | None, mine: dict[str, Any]) -> str | None:
    """Where the check run belongs: the push being reported, else the job's head, else the last one used."""
    if event is not None and event.type == events.PUSHED and event.data.get("head_sha"):
        return str(event.data["head_sha"])
    for past in reversed(view.events):
        if past.type == events.PUSHED and past.data.get("head_sha"):
            return str(past.data["head_sha"])
    return view.head_sha or mine.get("check_run_sha")


class GitHubReporter:
    """Renders the whole job on every event; ids live in the job's reporter_state so a retry reuses them."""

    name = "github"

    def __init__(self, api: GitHubApi, store: JobStore, settings: Settings) -> None:
        self.api = api
        self.store = store
        self.settings = settings
        self._last_sent: dict[str, float] = {}
        self._trailing: dict[str, asyncio.Task[None]] = {}
        # One render per job at a time, so a trailing update and an event never both create a check run.
        self._locks: dict[str, asyncio.Lock] = {}

    async def on_event(self, view: JobView, event: JobEventView) -> None:
        if view.installation_id is None:
            return
        now = time.monotonic()
        wait = self._last_sent.get(view.id, float("-inf")) + MIN_INTERVAL_SECONDS - now
        if wait > 0 and not view.terminal and event.type not in ALWAYS_SEND:
            # Coalesced: one trailing render shows whatever the job looks like when the interval is over.
            if view.id not in self._trailing:
                self._trailing[view.id] = asyncio.create_task(self._flush_later(view.id, wait))
            return
        if (pending := self._trailing.pop(view.id, None)) is not None:
            pending.cancel()
        self._last_sent[view.id] = now
        await self.render(view, event)

    async def _flush_later(self, job_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        try:
            view = await self.store.view(job_id, with_events=False)
            if self._trailing.get(job_id) is asyncio.current_task():
                del self._trailing[job_id]
                self._last_sent[job_id] = time.monotonic()
                await self.render(view, None)
        except Exception:  # a later event renders again; a reporter error never fails the job
            log.warning("trailing GitHub update failed", exc_info=True, extra={"job_id": job_id})

    async def aclose(self) -> None:
        tasks = list(self._trailing.values())
        self._trailing.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def render(self, view: JobView, event: JobEventView | None) -> None:
        lock = self._locks.setdefault(view.id, asyncio.Lock())
        async with lock:
            await self._render(view, event)
        if view.terminal:
            self._locks.pop(view.id, None)
            self._last_sent.pop(view.id, None)

    async def _render(self, view: JobView, event: JobEventView | None) -> None:
        # Read the ids afresh: another attempt of this job may have created them meanwhile.
        state: dict[str, Any] = dict((await self.store.view(view.id, with_events=False)).reporter_state)
        mine: dict[str, Any] = dict(state.get(self.name, {}))
        if not mine.get("reacted"):
            try:
                await self.react(view)
            except RequestFailed as exc:  # a missing reaction is cosmetic; never retried per event
                log.warning("could not add the reaction: %s", exc, extra={"job_id": view.id})
            await self.save(view, reacted=True)
        if (number := view.origin.get("issue_number") or view.issue_number) is not None:
            await self.sticky_comment(view, int(number), mine)
            await self.ask(view, int(number), mine)
        await self.check_run(view, event, mine)

    async def react(self, view: JobView) -> None:
        kind, target = (view.origin.get("reaction") or [None, None])[:2]
        number = view.origin.get("issue_number") or view.issue_number
        if kind == "comment" and target:
            path = f"/repos/{view.repo}/issues/comments/{target}/reactions"
        elif number is not None:
            path = f"/repos/{view.repo}/issues/{number}/reactions"
        else:
            return
        await self.api.request(view.installation_id, "POST", path, json={"content": "eyes"})

    async def save(self, view: JobView, **values: Any) -> None:
        # Saved as soon as something exists on GitHub, so a later failure never makes it create a twin.
        await self.store.merge_reporter_state(view.id, self.name, values)

    async def sticky_comment(self, view: JobView, number: int, mine: dict[str, Any]) -> None:
        body = comment_body(view, self.settings.public_url, await self.slug())
        if comment_id := mine.get("comment_id"):
            path = f"/repos/{view.repo}/issues/comments/{comment_id}"
            await self.api.request(view.installation_id, "PATCH", path, json={"body": body})
            return
        created = await self.api.request(
            view.installation_id, "POST", f"/repos/{view.repo}/issues/{number}/comments", json={"body": body}
        )
        await self.save(view, comment_id=created["id"])

    async def ask(self, view: JobView, number: int, mine: dict[str, Any]) -> None:
        """A waiting job's question or plan, as a comment of its own, once per wait; its id is kept (the
        reconciler reads the 👍 reactions on a plan's comment)."""
        info = waiting_info(view.origin)
        if view.state is not JobState.WAITING or info is None or mine.get("wait_comment_for") == info["id"]:
            return
        body = wait_comment(view, info, self.settings.public_url, await self.slug())
        created = await self.api.request(
            view.installation_id, "POST", f"/repos/{view.repo}/issues/{number}/comments", json={"body": body}
        )
        await self.save(
            view, wait_comment_id=created["id"], wait_comment_for=info["id"], wait_kind=info["kind"]
        )

    async def check_run(self, view: JobView, event: JobEventView | None, mine: dict[str, Any]) -> None:
        sha = head_sha(view, event, mine)
        if sha is None:
            return  # nothing pushed yet: a check run needs a commit to hang on
        run_id, run_sha = mine.get("check_run_id"), mine.get("check_run_sha")
        if run_id is not None and run_sha != sha:
            await self.complete_superseded(view, run_id, sha)
            run_id = None
        payload = self.check_payload(view)
        if run_id is None:
            created = await self.api.request(
                view.installation_id,
                "POST",
                f"/repos/{view.repo}/check-runs",
                json={"name": "autodev", "head_sha": sha, "external_id": view.id, **payload},
            )
            await self.save(view, check_run_id=created["id"], check_run_sha=sha)
        else:
            await self.api.request(
                view.installation_id, "PATCH", f"/repos/{view.repo}/check-runs/{run_id}", json=payload
            )

    def check_payload(self, view: JobView) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "details_url": job_url(self.settings.public_url, view),
            "output": {"title": check_title(view), "summary": check_summary(view, self.settings.public_url)},
        }
        if view.terminal:
            payload.update(status="completed", conclusion=CONCLUSIONS[view.state], actions=[])
            if view.state is not JobState.SUCCEEDED:
                payload["actions"] = [
                    {"label": "Retry", "description": "Run this job again", "identifier": "retry"}
                ]
        else:
            payload.update(
                status="in_progress" if view.state is JobState.RUNNING else "queued",
                actions=[{"label": "Cancel", "description": "Stop this job", "identifier": "cancel"}],
            )
        return payload

    async def complete_superseded(self, view: JobView, run_id: int, new_sha: str) -> None:
        try:
            await self.api.request(
                view.installation_id,
                "PATCH",
                f"/repos/{view.repo}/check-runs/{run_id}",
                json={
                    "status": "completed",
                    "conclusion": "neutral",
                    "actions": [],
                    "output": {"title": "Superseded", "summary": f"The job moved on to {new_sha[:12]}."},
                },
            )
        except RequestFailed:
            log.warning("could not close a superseded check run", extra={"job_id": view.id})

    async def slug(self) -> str:
        try:
            return await self.api.slug()
        except Exception:  # the comment still renders, with a generic name
            log.warning("could not learn the App's slug", exc_info=True)
            return "autodev"
