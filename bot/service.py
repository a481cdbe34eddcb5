"""What the listeners do: authorize and store a job before `ack`; then post its parent message and enqueue
it; status, cancel."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot import queries
from bot.parsing import JOB_REF_RE, USAGE, CancelJob, ChangeGrant, ShowStatus, StartJob
from bot.render import escape, short_id, status_line
from bot.reporter import SLACK_ERRORS, SlackReporter
from engine.pipeline.actions import ActionRefused, cancel_job
from engine.pipeline.waiting import answer_question, approve_plan
from engine.ports import JobQueue
from engine.settings import Settings
from engine.store.jobs import JobNotFound, JobRequest, JobStore
from engine.store.models import Job
from engine.store.waits import waiting_info, waiting_jobs

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Submission:
    """What `/orchestrate <repo> <task>` came to: a stored job (new or a Slack retry's), or a refusal."""

    job_id: str | None = None
    repo: str = ""
    created: bool = False
    refusal: str | None = None


class SlackService:
    def __init__(
        self, settings: Settings, store: JobStore, queue: JobQueue | None, client: AsyncWebClient
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self.client = client

    def reporter(self) -> SlackReporter:
        return SlackReporter(self.client, self.store, self.settings)

    async def tell(self, *, channel: str, user: str, text: str, response_url: str | None = None) -> None:
        """Tell `user` only; through the response URL when the bot cannot post in the channel."""
        try:
            await self.client.chat_postEphemeral(channel=channel, user=user, text=text)
            return
        except SLACK_ERRORS as exc:
            if not response_url:
                log.warning("could not tell user %s: %s", user, exc)
                return
        try:
            await AsyncWebhookClient(response_url).send(text=text, response_type="ephemeral")
        except SLACK_ERRORS as exc:
            log.warning("could not tell user %s through the response URL: %s", user, exc)

    async def submit_job(
        self, command: StartJob, *, channel: str, user: str, trigger_id: str, response_url: str | None
    ) -> Submission:
        """Authorize and store the job (before the command is acknowledged); a refusal says why."""
        sessions = self.store.sessions
        if not await queries.may_target(
            self.settings, sessions, channel=channel, user=user, repo=command.repo
        ):
            return Submission(
                refusal=f"You can't start jobs on `{command.repo}` from here: neither you nor this channel "
                "is allowed that repository. Ask an admin to run `/orchestrate allow`."
            )
        installed = await queries.installation_for(sessions, command.repo)
        if installed is None:
            return Submission(
                refusal=f"The autodev GitHub App is not installed on `{command.repo}` (or the repository "
                "does not exist). Install the App on it first, then try again."
            )
        installation_id, repo = installed
        job, created = await self.store.submit(
            JobRequest(
                dedupe_key=f"slack:{trigger_id}",
                trigger="slack",
                repo=repo,
                title=command.title,
                task=command.task,
                requester=user,
                installation_id=installation_id,
                issue_number=command.issue_number,
                base_branch=command.base_branch,
                origin={
                    "channel": channel,
                    "user": user,
                    "response_url": response_url,
                    **({"approve": True} if command.approve else {}),
                },
                budget_usd=command.budget_usd,
            )
        )
        if not created:
            log.info("Slack retry of a command already submitted", extra={"job_id": job.id})
        return Submission(job_id=job.id, repo=repo, created=created)

    async def announce_job(self, job_id: str, *, channel: str, user: str, response_url: str | None) -> None:
        """Post the stored job's parent message, then put it on the queue."""
        view = await self.store.view(job_id, with_events=False)
        # The parent goes up before the worker can start, so the worker's reporter threads under it.
        if not await self.reporter().sync(view):
            await self.tell(
                channel=channel,
                user=user,
                response_url=response_url,
                text=f"Job `{short_id(job_id)}` on `{view.repo}` started, but I could not post in this "
                "channel (invite me with `/invite @autodev`); progress will follow when I can.",
            )
        await self._enqueue(job_id, channel=channel, user=user, response_url=response_url)

    async def _enqueue(self, job_id: str, *, channel: str, user: str, response_url: str | None) -> None:
        if self.queue is None:
            log.warning("no job queue configured; job %s waits for the reconciler", job_id)
            return
        try:
            await self.queue.enqueue(job_id)
        except Exception as exc:
            log.exception("enqueue failed", extra={"job_id": job_id})
            await self.tell(
                channel=channel,
                user=user,
                response_url=response_url,
                text=f"Job `{short_id(job_id)}` is saved but the queue did not answer "
                f"({type(exc).__name__}); "
                "it starts by itself within a few minutes once the queue is back. No need to ask again.",
            )

    async def status(self, command: ShowStatus, *, channel: str, user: str) -> str:
        sessions = self.store.sessions
        if command.job_ref is None:
            jobs = await queries.recent_jobs(sessions, requester=user)
            if not jobs:
                return "You have no jobs yet. " + USAGE
            lines = [
                f"• `{short_id(j.id)}` `{j.repo}` {escape(j.title)} — {j.state}"
                + (f" <{j.pr_url}|PR>" if j.pr_url else "")
                for j in jobs
            ]
            return "*Your recent jobs*\n" + "\n".join(lines)
        job_id = await queries.find_job_id(sessions, command.job_ref)
        if job_id is None:
            return f"No single job matches `{command.job_ref}`."
        view = await self.store.view(job_id, with_events=False)
        if not await queries.may_target(self.settings, sessions, channel=channel, user=user, repo=view.repo):
            return f"You are not allowed to see jobs on `{view.repo}`."
        return f"*{escape(view.title)}* (`{view.repo}`, job `{short_id(view.id)}`)\n{status_line(view)}"

    async def cancel(self, job_ref: str, *, channel: str, user: str) -> str:
        """Cancel a job the user may target; the answer says what happened."""
        sessions = self.store.sessions
        job_id = await queries.find_job_id(sessions, job_ref) if JOB_REF_RE.match(job_ref) else None
        if job_id is None:
            return f"No single job matches `{escape(job_ref)}`."
        view = await self.store.view(job_id, with_events=False)
        if not await queries.may_target(self.settings, sessions, channel=channel, user=user, repo=view.repo):
            return f"You can't cancel jobs on `{view.repo}`: you are not allowed that repository."
        try:
            await cancel_job(self.store, self.queue, job_id, by=f"slack:{user}")
        except ActionRefused as exc:
            return f"Nothing to cancel: {exc}."
        view = await self.store.view(job_id, with_events=False)
        reporter = self.reporter()
        if view.terminal:  # a queued job ends at once and no worker will report it
            await reporter.sync(view)
            return f"Job `{short_id(job_id)}` cancelled."
        await reporter.refresh_parents(view)
        return f"Cancelling job `{short_id(job_id)}`; it stops at its next check."

    async def approve(self, job_id: str, *, channel: str, user: str) -> str:
        """The Approve button under a plan: a user allowed the job's repository starts its coding."""
        try:
            view = await self.store.view(job_id, with_events=False)
        except JobNotFound:
            return "That job no longer exists."
        if not await queries.may_target(
            self.settings, self.store.sessions, channel=channel, user=user, repo=view.repo
        ):
            return f"You can't approve jobs on `{view.repo}`: you are not allowed that repository."
        if not await approve_plan(self.store, self.queue, job_id, by=f"slack:{user}", via="slack"):
            return f"Nothing to approve: job `{short_id(job_id)}` is not waiting for approval."
        await self.reporter().refresh_parents(await self.store.view(job_id, with_events=False))
        return f"Plan approved; job `{short_id(job_id)}` starts coding."

    async def thread_reply(self, *, channel: str, user: str, thread_ts: str, text: str) -> str | None:
        """A message in a job's thread: the answer to the job's question when the job waits for one and
        the user may target its repository; what to tell the user, or None (a message like any other)."""
        job = await self._waiting_in_thread(channel, thread_ts)
        if job is None or (waiting_info(job.origin) or {}).get("kind") != "question" or not text.strip():
            return None
        if not await queries.may_target(
            self.settings, self.store.sessions, channel=channel, user=user, repo=job.repo
        ):
            return (
                f"Only people allowed `{job.repo}` can answer autodev's question; your reply was not taken."
            )
        if not await answer_question(
            self.store, self.queue, job.id, text=text, by=f"slack:{user}", via="slack"
        ):
            return None  # answered a moment ago by someone else, or cancelled
        await self.reporter().refresh_parents(await self.store.view(job.id, with_events=False))
        return None

    async def _waiting_in_thread(self, channel: str, thread_ts: str) -> Job | None:
        """The waiting job whose thread in `channel` starts at `thread_ts` (few jobs wait at once)."""
        for job in await waiting_jobs(self.store):
            thread = (job.reporter_state or {}).get("slack", {}).get(f"thread:{channel}") or {}
            if thread.get("ts") == thread_ts:
                return job
        return None

    async def cancel_command(self, command: CancelJob, *, channel: str, user: str) -> str:
        return await self.cancel(command.job_ref, channel=channel, user=user)

    async def change_grant(self, command: ChangeGrant, *, user: str) -> str:
        if not queries.is_admin(self.settings, user):
            return "Only Slack admins of autodev (a `*` entry for you in SLACK_ALLOWED) can change access."
        sessions = self.store.sessions
        who = f"<#{command.subject}>" if command.subject[0] in "CG" else f"<@{command.subject}>"
        if command.revoke:
            removed = await queries.revoke_grant(sessions, subject=command.subject, repo=command.repo)
            return (
                f"{who} may no longer target `{command.repo}`."
                if removed
                else f"{who} had no grant for `{command.repo}`."
            )
        await queries.set_grant(sessions, subject=command.subject, repo=command.repo, follow=command.follow)
        follow = " and follows its jobs here" if command.follow else ""
        return f"{who} may now target `{command.repo}`{follow}."
