"""The round a job is in a PR's follow-through (origin["round"]) shows in its Slack parent message."""

from __future__ import annotations

from bot import SlackBot
from engine.pipeline.run import run_job
from engine.store.db import session_scope
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import JobKind, SlackRepoChannel
from tests.bot.conftest import REPO
from tests.bot.test_reporter import _deps, scripted_pipeline
from tests.support.fake_slack import FakeSlack


async def test_a_review_jobs_round_is_in_the_followed_channels_parent_message(
    slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    async with session_scope(bot_store.sessions) as session:
        session.add(SlackRepoChannel(subject="CFOLLOW", repo=REPO, follow=True))
    job, _ = await bot_store.submit(
        JobRequest(
            dedupe_key="gh:review:1",
            trigger="github_review",
            kind=JobKind.REVISE,
            repo=REPO,
            title="Revise #7: Fix the flag",
            task="t",
            requester="alice",
            branch="autodev/5-flag",
            pr_number=7,
            origin={"round": "review by @alice: 3 comments", "review_id": 1},
        )
    )
    await run_job(job.id, _deps(slack_bot, bot_store, scripted_pipeline()))

    [parent] = fake_slack.messages("CFOLLOW", thread_ts=None)[:1]
    assert "review by @alice: 3 comments" in str(parent["blocks"])
    last = fake_slack.calls["chat.update"][-1].args["blocks"]
    assert "review by @alice: 3 comments" in str(last) and "Succeeded" in str(last)
