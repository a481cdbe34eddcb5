"""The Cancel and Details buttons on a job's parent message."""

from __future__ import annotations

from bot import SlackBot
from engine.store.jobs import JobStore
from engine.store.models import JobState
from tests.bot.conftest import ADMIN, CHANNEL, REPO, USER, RecordingQueue, SlackClient
from tests.support.fake_slack import FakeSlack


async def _two_jobs(slack: SlackClient, bot: SlackBot, store: JobStore) -> tuple[str, str]:
    await slack.command(f"{REPO} First task")
    await slack.command(f"{REPO} Second task")
    await bot.wait_idle()
    jobs = {j.task: j.id for j in await store.list_jobs()}
    return jobs["First task"], jobs["Second task"]


async def test_the_cancel_button_cancels_that_job_only(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    first, second = await _two_jobs(slack, slack_bot, bot_store)
    response = await slack.click("autodev_cancel", second)
    assert response.status_code == 200
    await slack_bot.wait_idle()
    assert (await bot_store.get(second)).state == JobState.CANCELLED
    assert (await bot_store.get(first)).state == JobState.QUEUED
    [told] = fake_slack.calls["chat.postEphemeral"]
    assert told.args["user"] == USER and told.args["text"] == f"Job `{second[:8]}` cancelled."
    second_ts = (await bot_store.view(second)).reporter_state["slack"][f"thread:{CHANNEL}"]["ts"]
    [update] = fake_slack.calls["chat.update"]
    assert update.args["ts"] == second_ts and "Cancelled" in str(update.args["blocks"])


async def test_a_running_job_is_flagged_and_aborted_and_its_parent_says_cancelling(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore, queue: RecordingQueue
) -> None:
    first, _ = await _two_jobs(slack, slack_bot, bot_store)
    await bot_store.transition(first, JobState.RUNNING, phase="planning")
    await slack.click("autodev_cancel", first)
    await slack_bot.wait_idle()
    job = await bot_store.get(first)
    assert job.cancel_requested and job.state == JobState.RUNNING  # the worker ends it at its next check
    assert queue.aborted == [first]
    [update] = fake_slack.calls["chat.update"]
    assert "Cancelling" in str(update.args["blocks"]) and "autodev_cancel" not in str(update.args["blocks"])


async def test_a_user_not_allowed_the_repo_cannot_cancel(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore, queue: RecordingQueue
) -> None:
    first, _ = await _two_jobs(slack, slack_bot, bot_store)
    await slack.click("autodev_cancel", first, user="UMALLORY", channel="COTHER")
    await slack_bot.wait_idle()
    assert (await bot_store.get(first)).cancel_requested is False
    assert queue.aborted == []
    [refusal] = fake_slack.calls["chat.postEphemeral"]
    assert refusal.args["user"] == "UMALLORY"
    assert f"can't cancel jobs on `{REPO}`" in refusal.args["text"]
    assert fake_slack.calls["chat.update"] == []


async def test_an_admin_may_cancel_from_anywhere(
    slack: SlackClient, slack_bot: SlackBot, bot_store: JobStore
) -> None:
    first, _ = await _two_jobs(slack, slack_bot, bot_store)
    await slack.click("autodev_cancel", first, user=ADMIN, channel="CELSEWHERE")
    await slack_bot.wait_idle()
    assert (await bot_store.get(first)).state == JobState.CANCELLED


async def test_cancelling_an_ended_job_says_so(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    first, _ = await _two_jobs(slack, slack_bot, bot_store)
    await slack.click("autodev_cancel", first)
    await slack_bot.wait_idle()
    await slack.click("autodev_cancel", first)
    await slack_bot.wait_idle()
    last = fake_slack.calls["chat.postEphemeral"][-1]
    assert "Nothing to cancel" in last.args["text"] and "already ended" in last.args["text"]


async def test_a_forged_button_value_is_not_a_job(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    await _two_jobs(slack, slack_bot, bot_store)
    await slack.click("autodev_cancel", "%")  # a LIKE wildcard must not match every job
    await slack_bot.wait_idle()
    assert all(not j.cancel_requested for j in await bot_store.list_jobs())
    assert "No single job matches" in fake_slack.calls["chat.postEphemeral"][-1].args["text"]


async def test_the_details_link_button_is_acknowledged(slack: SlackClient, slack_bot: SlackBot) -> None:
    response = await slack.click("autodev_details", "")
    assert response.status_code == 200
