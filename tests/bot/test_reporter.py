"""SlackReporter through the engine's runner: the thread tells the story, and catches up after outages."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot import SlackBot
from engine.pipeline.run import EngineDeps, JobRun, run_job
from engine.ports import CodeHost, Reporter
from engine.store.db import session_scope
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import CostEntry, JobState, SlackRepoChannel
from engine.views import JobView
from tests.bot.conftest import CHANNEL, REPO, USER, SlackClient
from tests.support.fake_slack import FakeSlack

PARENT_TS = "1700000001.000100"
PR_URL = "https://github.com/octo/widgets/pull/7"


def scripted_pipeline(
    before_step: Callable[[int], None] = lambda i: None,
) -> Callable[[JobRun], Awaitable[None]]:
    """A two-step job as the real pipeline records it: plan, steps with tests and cost, then a PR."""

    async def pipeline(run: JobRun) -> None:
        plan = {"steps": [{"title": "Parse the --verbose flag"}, {"title": "Document the flag"}]}
        await run.set_phase("planning")
        await run.store.update(run.job_id, plan=plan)
        for i, step in enumerate(plan["steps"]):
            await run.store.save_step(run.job_id, i, title=step["title"])
        await run.emit("plan", plan)
        for i in range(2):
            before_step(i)
            await run.set_phase("coding", {"step": i + 1, "of": 2})
            await run.store.add_cost(
                CostEntry(
                    job_id=run.job_id,
                    step_index=i,
                    role="coder",
                    model="m",
                    tokens_in=100,
                    tokens_out=50,
                    usd=0.25,
                    latency_ms=5,
                    repo=REPO,
                )
            )
            await run.store.save_step(
                run.job_id,
                i,
                state="done",
                commit_sha=f"abc{i}def0",
                test_command="pytest -q",
                test_passed=True,
            )
            await run.emit(
                "tests", {"index": i, "command": "pytest -q", "passed": True, "round": 0, "tail": ""}
            )
            await run.emit("step_finished", {"index": i, "state": "done", "commit_sha": f"abc{i}def0"})
        await run.store.update(run.job_id, pr_number=7, pr_url=PR_URL)
        await run.emit("pr", {"number": 7, "url": PR_URL, "draft": False, "created": True})

    return pipeline


async def _no_code_host(view: JobView) -> CodeHost:
    raise AssertionError("the scripted pipeline needs no code host")


def _deps(bot: SlackBot, store: JobStore, pipeline: Callable[[JobRun], Awaitable[None]]) -> EngineDeps:
    def reporters_for(view: JobView) -> list[Reporter]:
        reporter = bot.reporter_for(view)
        return [reporter] if reporter is not None else []

    return EngineDeps(
        settings=bot.settings,
        store=store,
        code_host_for=_no_code_host,
        reporters_for=reporters_for,
        pipeline=pipeline,
    )


async def _start_from_slack(slack: SlackClient, bot: SlackBot, store: JobStore) -> str:
    await slack.command(f"{REPO} Add a --verbose flag")
    await bot.wait_idle()
    [job] = await store.list_jobs()
    return job.id


async def test_the_thread_tells_the_story_and_the_parent_status_is_edited_in_place(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    job_id = await _start_from_slack(slack, slack_bot, bot_store)
    state = await run_job(job_id, _deps(slack_bot, bot_store, scripted_pipeline()))
    assert state is JobState.SUCCEEDED

    replies = [m["text"] for m in fake_slack.messages(CHANNEL, thread_ts=PARENT_TS)]
    assert len(replies) == 4
    plan, step1, step2, final = replies
    assert "Plan* (2 steps)" in plan and "1. Parse the --verbose flag" in plan
    assert "Step 1/2 done: Parse the --verbose flag" in step1 and "`abc0def`" in step1
    assert "Tests `pytest -q` passed" in step1 and "$0.25 so far" in step1
    assert "Step 2/2 done" in step2 and "$0.50 so far" in step2
    assert final.startswith(f":tada: <@{USER}> PR ready: <{PR_URL}|#7>")

    updates = fake_slack.calls["chat.update"]
    assert updates and all(u.args["ts"] == PARENT_TS and u.args["channel"] == CHANNEL for u in updates)
    last = str(updates[-1].args["blocks"])
    assert "Succeeded" in last and PR_URL in last and "autodev_cancel" not in last
    assert any("coding step 2/2" in str(u.args["blocks"]) for u in updates)


async def test_a_slack_outage_never_fails_the_job_and_the_thread_catches_up(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    job_id = await _start_from_slack(slack, slack_bot, bot_store)

    def outage(step: int) -> None:
        fake_slack.down = step == 0  # down from the plan through step 1, back for step 2

    fake_slack.down = True
    state = await run_job(job_id, _deps(slack_bot, bot_store, scripted_pipeline(outage)))
    assert state is JobState.SUCCEEDED

    replies = [m["text"] for m in fake_slack.messages(CHANNEL, thread_ts=PARENT_TS)]
    assert [r.split()[0] for r in replies] == [
        ":clipboard:",
        ":white_check_mark:",
        ":white_check_mark:",
        ":tada:",
    ]
    assert "Step 1/2" in replies[1] and "Step 2/2" in replies[2]
    assert "Succeeded" in str(fake_slack.calls["chat.update"][-1].args["blocks"])


async def test_rate_limits_are_waited_out_when_short(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    job_id = await _start_from_slack(slack, slack_bot, bot_store)
    fake_slack.rate_limit(1, retry_after=1)
    await run_job(job_id, _deps(slack_bot, bot_store, scripted_pipeline()))
    assert fake_slack.rate_limited_hits == 1
    assert len(fake_slack.messages(CHANNEL, thread_ts=PARENT_TS)) == 4


async def test_a_long_rate_limit_is_not_waited_out_inside_the_job_and_is_caught_up_later(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    job_id = await _start_from_slack(slack, slack_bot, bot_store)
    fake_slack.rate_limit(1, retry_after=600)
    state = await run_job(job_id, _deps(slack_bot, bot_store, scripted_pipeline()))
    assert state is JobState.SUCCEEDED
    assert fake_slack.rate_limited_hits == 1
    assert len(fake_slack.messages(CHANNEL, thread_ts=PARENT_TS)) == 4


async def test_a_job_started_on_github_is_followed_in_a_channel_that_follows_the_repo(
    slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    async with session_scope(bot_store.sessions) as session:
        session.add(SlackRepoChannel(subject="CFOLLOW", repo=REPO, follow=True))
        session.add(SlackRepoChannel(subject="CGRANTONLY", repo=REPO, follow=False))
    job, _ = await bot_store.submit(
        JobRequest(
            dedupe_key="gh:1",
            trigger="github_issue",
            repo=REPO,
            title="Fix the flag",
            task="t",
            requester="octocat",
            issue_number=5,
        )
    )
    await run_job(job.id, _deps(slack_bot, bot_store, scripted_pipeline()))
    [parent] = fake_slack.messages("CFOLLOW", thread_ts=None)[:1]
    assert "`octocat` on GitHub" in str(parent["blocks"])
    replies = fake_slack.messages("CFOLLOW", thread_ts=PARENT_TS)
    assert len(replies) == 4 and replies[-1]["text"].startswith(f":tada: PR ready: <{PR_URL}|#7>")
    assert fake_slack.messages("CGRANTONLY") == []


async def test_a_job_started_on_github_stays_out_of_slack_when_no_channel_follows(
    slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    job, _ = await bot_store.submit(
        JobRequest(
            dedupe_key="gh:2", trigger="github_issue", repo=REPO, title="Fix", task="t", requester="octocat"
        )
    )
    await run_job(job.id, _deps(slack_bot, bot_store, scripted_pipeline()))
    assert fake_slack.calls == {}


async def test_cost_only_events_do_not_touch_slack(
    slack: SlackClient, slack_bot: SlackBot, fake_slack: FakeSlack, bot_store: JobStore
) -> None:
    """An edit per LLM call would run into Slack's rate limits; the next visible event shows the cost."""
    job_id = await _start_from_slack(slack, slack_bot, bot_store)
    await bot_store.update(job_id, cost_usd=1.25)
    view = await bot_store.view(job_id, with_events=False)
    reporter = slack_bot.reporter_for(view)
    assert reporter is not None
    event = await bot_store.append_event(job_id, "llm_call", {"usd": 1.25})
    await reporter.on_event(view, event)
    assert fake_slack.calls["chat.update"] == []
    await reporter.on_event(view, await bot_store.append_event(job_id, "phase", {"phase": "planning"}))
    assert "$1.25 of $5.00" in str(fake_slack.calls["chat.update"][-1].args["blocks"])
