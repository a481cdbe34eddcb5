"""Socket Mode (SLACK_APP_TOKEN): the same command over a WebSocket, for teams without a public URL."""

from __future__ import annotations

from pathlib import Path

from bot import SlackBot
from engine.store.jobs import JobStore
from tests.bot.conftest import CHANNEL, REPO, USER, RecordingQueue, slack_settings
from tests.support.fake_slack import FakeSlack


async def test_a_command_over_socket_mode_is_acknowledged_and_starts_a_job(
    tmp_path: Path, database_url: str, bot_store: JobStore, fake_slack: FakeSlack
) -> None:
    settings = slack_settings(
        tmp_path, database_url, fake_slack, slack_signing_secret=None, slack_app_token="xapp-1-test"
    )
    queue = RecordingQueue()
    bot = SlackBot(settings, bot_store, queue)
    await bot.start_socket_mode()  # returns at once; the connection is made in the background
    ack = await fake_slack.send_envelope(
        {
            "envelope_id": "env-1",
            "type": "slash_commands",
            "accepts_response_payload": True,
            "payload": {
                "team_id": "T1",
                "channel_id": CHANNEL,
                "user_id": USER,
                "command": "/orchestrate",
                "text": f"{REPO} Tidy the imports",
                "response_url": fake_slack.response_url,
                "trigger_id": "trigger-socket",
            },
        }
    )
    assert "is saved and starting" in str(ack["payload"])
    assert fake_slack.socket_tokens == ["xapp-1-test"]
    await bot.wait_idle()
    [job] = await bot_store.list_jobs()
    assert job.task == "Tidy the imports" and queue.enqueued == [job.id]
    assert len(fake_slack.messages(CHANNEL)) == 1
    await bot.aclose()


async def test_socket_mode_is_not_started_without_an_app_token(
    slack_bot: SlackBot, fake_slack: FakeSlack
) -> None:
    await slack_bot.start_socket_mode()
    await slack_bot.aclose()
    assert "apps.connections.open" not in fake_slack.calls
