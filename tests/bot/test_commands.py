"""`/orchestrate`: authorize and store the job, ack, then post the parent message and enqueue."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select

from bot import SlackBot
from bot.listeners import commands
from bot.render import short_id
from engine.settings import Settings
from engine.store.db import make_engine, make_sessionmaker
from engine.store.jobs import JobLimits, JobStore
from engine.store.models import Job, JobState, SlackRepoChannel
from tests.bot.conftest import (
    ADMIN,
    CHANNEL,
    INSTALLATION_ID,
    REPO,
    USER,
    RecordingQueue,
    SlackClient,
    slack_client,
)
from tests.support.fake_slack import FakeSlack


async def _jobs(store: JobStore) -> list[Job]:
    return await store.list_jobs()


async def test_the_ack_comes_once_the_job_is_stored_and_then_the_job_starts_with_its_thread(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore, queue: RecordingQueue
) -> None:
    fake_slack.hold("chat.postMessage")
    response = await slack.command(f"{REPO} Add a --verbose flag to the CLI --budget 2.50 --base develop")
    # Acknowledged with the job stored, while the parent message is still being posted.
    assert response.status_code == 200
    [job] = await _jobs(bot_store)
    assert f"Job `{short_id(job.id)}` on `{REPO}` is saved and starting" in response.text
    assert queue.enqueued == []

    fake_slack.release("chat.postMessage")
    await slack_bot.wait_idle()

    assert (job.trigger, job.repo, job.requester, job.installation_id) == (
        "slack",
        REPO,
        USER,
        INSTALLATION_ID,
    )
    assert job.task == "Add a --verbose flag to the CLI"
    assert (job.budget_usd, job.base_branch, job.issue_number) == (2.50, "develop", None)
    assert job.origin["channel"] == CHANNEL and job.origin["user"] == USER
    assert queue.enqueued == [job.id]

    [parent] = fake_slack.messages(CHANNEL)
    assert "thread_ts" not in parent
    blocks = str(parent["blocks"])
    assert "Add a --verbose flag to the CLI" in blocks and f"<@{USER}>" in blocks and "$2.50" in blocks
    buttons = next(b for b in parent["blocks"] if b["type"] == "actions")["elements"]
    assert buttons[0]["action_id"] == "autodev_cancel" and buttons[0]["value"] == job.id
    assert buttons[1]["url"] == f"https://autodev.example/jobs/{job.id}?t={job.access_token}"
    view = await bot_store.view(job.id)
    assert view.reporter_state["slack"][f"thread:{CHANNEL}"]["ts"] == "1700000001.000100"


async def test_an_issue_reference_makes_the_issue_the_task(
    slack: SlackClient, slack_bot: SlackBot, bot_store: JobStore
) -> None:
    await slack.command(f"{REPO}#123")
    await slack_bot.wait_idle()
    [job] = await _jobs(bot_store)
    assert job.issue_number == 123
    assert job.title == "Issue #123"


async def test_a_retried_command_makes_one_job(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore, queue: RecordingQueue
) -> None:
    """Slack may deliver a command again (fresh signature, same trigger_id): still one job, one thread."""
    body = slack.command_body(f"{REPO} Fix the typo in README", trigger_id="trigger-same")
    assert (await slack.post(body, slack.signed(body))).status_code == 200
    await slack_bot.wait_idle()
    retry_headers = slack.signed(body, timestamp=int(time.time()) - 2)  # a new signature, not a replay
    assert (await slack.post(body, retry_headers)).status_code == 200
    await slack_bot.wait_idle()
    assert len(await _jobs(bot_store)) == 1
    assert len(queue.enqueued) == 1
    assert len(fake_slack.messages(CHANNEL)) == 1


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("not-a-repo fix it", "is not `owner/repo`"),
        (f"{REPO}", "Say what to do"),
        (f"{REPO} fix it --budget lots", "is not a number of dollars"),
        (f"{REPO} fix it --budget 0", "must be more than $0"),
        (f"{REPO} fix it --budget 5000", "at most $50.00"),
        (f"{REPO} fix it --base ../etc", "not a valid branch name"),
        ("cancel", "Which job?"),
        ("cancel zz-top", "is not a job id"),
    ],
)
async def test_bad_input_is_answered_with_what_is_wrong_and_starts_nothing(
    slack: SlackClient, slack_bot: SlackBot, bot_store: JobStore, text: str, error: str
) -> None:
    response = await slack.command(text)
    await slack_bot.wait_idle()
    assert response.status_code == 200
    assert error in response.text
    assert await _jobs(bot_store) == []


async def test_a_channel_and_user_without_a_grant_are_refused_privately(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    refusal = await slack.command(f"{REPO} Fix it", channel_id="COTHER", user_id="UMALLORY")
    await slack_bot.wait_idle()
    assert f"can't start jobs on `{REPO}`" in refusal.text  # the ack is seen by the user only
    assert await _jobs(bot_store) == []
    assert fake_slack.messages() == []


async def test_a_repository_without_the_app_installed_is_refused(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    refusal = await slack.command("octo/elsewhere Fix it", user_id=ADMIN)  # the admin may target any repo
    await slack_bot.wait_idle()
    assert "GitHub App is not installed on `octo/elsewhere`" in refusal.text
    assert await _jobs(bot_store) == []


async def test_an_answer_goes_through_the_response_url_when_the_bot_is_not_in_the_channel(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack
) -> None:
    fake_slack.unknown_channels.add("CPRIVATE")
    await slack.command("status", channel_id="CPRIVATE", response_url=fake_slack.response_url)
    await slack_bot.wait_idle()
    [response] = fake_slack.responses
    assert response["response_type"] == "ephemeral"
    assert "You have no jobs yet" in response["text"]


async def test_with_the_database_down_the_ack_says_nothing_was_started(
    bot_settings: Settings, fake_slack: FakeSlack, queue: RecordingQueue, tmp_path: Path
) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'gone.db'}")  # no tables: every query fails
    store = JobStore(make_sessionmaker(engine), JobLimits(1.0, 10, 10))
    bot = SlackBot(bot_settings, store, queue)
    async with slack_client(bot) as slack:
        answer = await slack.command(f"{REPO} Fix it")
        status = await slack.command("status")
        await bot.wait_idle()
    await bot.aclose()
    await engine.dispose()
    assert answer.status_code == 200
    assert "could not save the job" in answer.text and "Nothing was started" in answer.text
    assert queue.enqueued == []
    assert status.status_code == 200
    [told] = fake_slack.calls["chat.postEphemeral"]
    assert "database is unavailable" in told.args["text"]


async def test_a_slow_database_gets_a_prompt_ack_and_the_job_starts_once_saved(
    slack: SlackClient,
    slack_bot: SlackBot,
    fake_slack: FakeSlack,
    bot_store: JobStore,
    queue: RecordingQueue,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commands, "ACK_DEADLINE_S", 0)  # every save is "too slow" for the ack
    response = await slack.command(f"{REPO} Fix it")
    assert "the database is slow; I'll tell you when it starts" in response.text
    await slack_bot.wait_idle()
    [job] = await _jobs(bot_store)
    assert queue.enqueued == [job.id]
    [parent] = fake_slack.messages(CHANNEL)
    assert "Fix it" in str(parent["blocks"])


async def test_when_the_parent_cannot_be_posted_the_job_still_starts_and_the_user_is_told(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore, queue: RecordingQueue
) -> None:
    await slack.command("help")  # Bolt checks the token once (auth.test) while Slack is still up
    fake_slack.down = True
    await slack.command(f"{REPO} Fix it", response_url=fake_slack.response_url)
    await slack_bot.wait_idle()
    [job] = await _jobs(bot_store)
    assert queue.enqueued == [job.id]
    [told] = fake_slack.responses
    assert "started, but I could not post in this channel" in told["text"]


async def test_when_the_queue_is_down_the_user_learns_the_job_starts_later(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore, queue: RecordingQueue
) -> None:
    queue.fail_with = ConnectionError("redis unreachable")
    await slack.command(f"{REPO} Fix it")
    await slack_bot.wait_idle()
    [job] = await _jobs(bot_store)
    assert job.state == JobState.QUEUED
    [told] = fake_slack.calls["chat.postEphemeral"]
    assert "starts by itself" in told.args["text"]


async def test_status_lists_my_jobs_and_shows_one(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    await slack.command(f"{REPO} Write the changelog")
    await slack_bot.wait_idle()
    [job] = await _jobs(bot_store)
    await slack.command("status")
    await slack.command(f"status {job.id[:8]}")
    await slack_bot.wait_idle()
    listing, single = (c.args["text"] for c in fake_slack.calls["chat.postEphemeral"])
    assert f"`{job.id[:8]}` `{REPO}` Write the changelog — queued" in listing
    assert "Write the changelog" in single and "Queued" in single


async def test_cancel_by_command_ends_a_queued_job_and_updates_its_thread(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    await slack.command(f"{REPO} Write the changelog")
    await slack_bot.wait_idle()
    [job] = await _jobs(bot_store)
    await slack.command(f"cancel {job.id[:10]}")
    await slack_bot.wait_idle()
    assert (await bot_store.get(job.id)).state == JobState.CANCELLED
    [told] = fake_slack.calls["chat.postEphemeral"]
    assert told.args["text"] == f"Job `{job.id[:8]}` cancelled."
    [update] = fake_slack.calls["chat.update"]
    assert "Cancelled" in str(update.args["blocks"])
    parent_ts = fake_slack.messages(CHANNEL)[0]
    [final] = fake_slack.messages(CHANNEL, thread_ts="1700000001.000100")
    assert "Cancelled" in final["text"] and parent_ts


async def test_an_admin_grants_a_channel_a_repository_and_it_may_then_start_jobs(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    await slack.command(f"allow <#CNEW|team-x> {REPO} --follow", user_id=ADMIN)
    await slack_bot.wait_idle()
    async with bot_store.sessions() as session:
        [grant] = list(await session.scalars(select(SlackRepoChannel)))
    assert (grant.subject, grant.repo, grant.follow) == ("CNEW", REPO, True)
    await slack.command(f"{REPO} Fix it", channel_id="CNEW", user_id="UBOB")
    await slack_bot.wait_idle()
    assert len(await _jobs(bot_store)) == 1


async def test_only_admins_change_grants(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    await slack.command(f"allow <@UMALLORY> {REPO}")
    await slack_bot.wait_idle()
    [refusal] = fake_slack.calls["chat.postEphemeral"]
    assert "Only Slack admins" in refusal.args["text"]
    async with bot_store.sessions() as session:
        assert list(await session.scalars(select(SlackRepoChannel))) == []
