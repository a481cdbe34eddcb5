"""Reviews on autodev's pull requests: which become a revise job, with what task, and which do nothing.

The review's inline comments are read with GraphQL (their thread ids are what autodev resolves later);
the whole flow — push, replies, resolved threads — is in tests/e2e/test_review_threads.py."""

from __future__ import annotations

from typing import Any

import httpx

from engine.store.jobs import JobStore
from engine.store.models import JobKind
from github_app import GitHubApp
from tests.github_app.conftest import REPO, RecordingQueue, as_app_delivery, deliver, payload, settle
from tests.support.fake_github import FakeGitHub

SLUG = "autodev-test"
BRANCH = "autodev/1-spelling"


def review(state: str = "commented", body: str = "", sender: str = "alice") -> dict[str, Any]:
    """The corpus's `pull_request_review.submitted`, on autodev's PR #2."""
    data = as_app_delivery(payload("pull_request_review", "submitted.payload.json"), sender)
    data["review"].update(state=state, body=body)
    data["review"]["user"]["login"] = sender
    data["pull_request"]["head"]["ref"] = BRANCH
    return data


def inline_comment(review_id: int, comment_id: int, body: str, sender: str = "alice") -> dict[str, Any]:
    """The corpus's `pull_request_review_comment.created`, on the same PR, in review `review_id`."""
    data = as_app_delivery(payload("pull_request_review_comment", "created.payload.json"), sender)
    data["comment"].update(id=comment_id, body=body, pull_request_review_id=review_id)
    data["pull_request"]["head"]["ref"] = BRANCH
    return data


def answered_thread(github: FakeGitHub, number: int) -> dict[str, Any]:
    """A thread from an earlier round: alice's comment, and autodev's answer under it."""
    thread = github.add_review_comment(
        REPO, number, review_id=1, user="alice", path="a.py", line=1, body="Add a logo"
    )
    github.add_review_comment(
        REPO, number, review_id=2, user=f"{SLUG}[bot]", path="a.py", line=1, thread=thread,
        body="Not addressed in this round: a logo is out of scope for this PR.",
    )  # fmt: skip
    return thread


def reviewed_pull(github: FakeGitHub, *args: str, **fields: str) -> tuple[dict[str, Any], int, int]:
    """alice's repository (she may write), autodev's PR and a `review(...)` of it: the delivery, the PR's
    number and the review's id."""
    github.add_repo(REPO, writers={"alice"})
    data = review(*args, **fields)
    number, review_id = data["pull_request"]["number"], data["review"]["id"]
    pull_on(github, number)
    return data, number, review_id


def pull_on(github: FakeGitHub, number: int) -> None:
    github.repos[REPO].pulls[number] = {
        "number": number, "node_id": f"PR_{number}", "title": "Fix spelling", "body": "", "draft": False,
        "state": "open", "head": {"ref": BRANCH, "sha": "a" * 40}, "base": {"ref": "master", "sha": "b" * 40},
    }  # fmt: skip


async def test_a_review_with_three_inline_comments_makes_one_job_that_carries_each_comment(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    data, number, review_id = reviewed_pull(github, body="A few things.")
    earlier = github.add_review_comment(
        REPO, number, review_id=1, user="bob", path="app.py", line=4, body="Why a global?",
        diff_hunk="@@ -1,4 +1,4 @@\n+STATE = {}",
    )  # fmt: skip
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="app.py", line=4, body="Agreed: pass it in.",
        thread=earlier,
    )  # fmt: skip
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="README.md", line=3, start_line=1,
        body="Reword these lines.", diff_hunk="@@ -1,3 +1,3 @@\n-Helo\n+Hello",
    )  # fmt: skip
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="lib/util.py", line=10, body="Typo: recieve",
        diff_hunk="@@ -8,3 +8,3 @@\n+def recieve():",
    )  # fmt: skip

    await deliver(client, "pull_request_review", data)
    assert await settle(gh_app, queue) == ["job submitted"]

    [job] = await store.list_jobs()
    assert job.kind == JobKind.REVISE and job.trigger == "github_review" and job.branch == BRANCH
    assert "A few things." in job.task
    assert "## Review comment 1 — app.py line 4" in job.task
    assert "> @bob: Why a global?" in job.task and "@alice: Agreed: pass it in." in job.task
    assert "## Review comment 2 — README.md lines 1-3" in job.task and "+Hello" in job.task
    assert "## Review comment 3 — lib/util.py line 10" in job.task and "+def recieve():" in job.task
    assert "`review_comment` tool" in job.task
    assert job.origin["round"] == "review by @alice: 3 comments"
    kept = job.origin["review"]["comments"]
    assert [(c["n"], c["path"], c["line"]) for c in kept] == [
        (1, "app.py", 4),
        (2, "README.md", 3),
        (3, "lib/util.py", 10),
    ]
    assert all(c["thread_id"].startswith("PRRT_") and c["comment_id"] for c in kept)
    [query] = github.graphql_calls("reviewThreads")
    assert query.json["variables"]["number"] == number


async def test_a_single_mention_and_the_review_that_wraps_it_make_one_job(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    """GitHub sends both deliveries for one inline comment: a job each would push twice to one branch."""
    wrapping, number, review_id = reviewed_pull(github)
    body = f"@{SLUG} rename this to `greeting`"
    thread = github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="README.md", line=1, body=body
    )
    comment_id = thread["comments"][0]["databaseId"]

    await deliver(client, "pull_request_review_comment", inline_comment(review_id, comment_id, body))
    await deliver(client, "pull_request_review", wrapping)
    assert await settle(gh_app, queue) == ["job submitted", "job already submitted"]

    [job] = await store.list_jobs()
    assert job.origin["round"] == "review by @alice: 1 comment"
    assert [c["comment_id"] for c in job.origin["review"]["comments"]] == [comment_id]
    assert queue.enqueued == [job.id]


async def test_an_inline_comment_that_does_not_mention_the_app_is_not_even_stored(
    client: httpx.AsyncClient, github: FakeGitHub
) -> None:
    response = await deliver(client, "pull_request_review_comment", inline_comment(5, 6, "nit: spacing"))
    assert response.json() == {"ignored": "not addressed to autodev"}
    assert github.calls == []


async def test_an_approval_or_a_bare_comment_review_does_nothing_and_says_nothing(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    pull_on(github, review()["pull_request"]["number"])
    await deliver(client, "pull_request_review", review("approved", "LGTM"))
    await deliver(client, "pull_request_review", review("commented", "Nice work", sender="mallory"))

    assert await settle(gh_app, queue) == [
        "review approved without inline comments: nothing to do",
        "review commented without inline comments: nothing to do",
    ]
    assert await store.list_jobs() == []
    assert github.repos[REPO].comments == {}, "no reply, not even to the non-writer"
    assert github.calls_to("GET", rf"/repos/{REPO}/collaborators/.*") == []


async def test_a_non_writers_review_with_comments_gets_one_polite_reply_and_no_job(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    data, number, review_id = reviewed_pull(github, "changes_requested", "Please fix", sender="mallory")
    github.add_review_comment(
        REPO, number, review_id=review_id, user="mallory", path="a.py", line=1, body="x"
    )

    await deliver(client, "pull_request_review", data)
    data["review"]["body"] = "Please fix, again"
    await deliver(client, "pull_request_review", data)  # a second review by the same person
    assert await settle(gh_app, queue) == ["refused: the sender may not trigger jobs"] * 2

    assert await store.list_jobs() == []
    [reply] = github.repos[REPO].comments.values()
    assert "only people with write" in reply["body"]


async def test_a_change_request_without_inline_comments_revises_with_the_reviews_text(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    pull_on(github, review()["pull_request"]["number"])
    await deliver(client, "pull_request_review", review("changes_requested", "Needs tests"))
    assert await settle(gh_app, queue) == ["job submitted"]
    [job] = await store.list_jobs()
    assert "Needs tests" in job.task and job.origin["round"] == "review by @alice: no inline comments"


async def test_a_reply_in_a_resolved_thread_is_not_a_comment_to_address(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    """A "thanks" under a thread autodev answered and resolved must not start another round."""
    data, number, review_id = reviewed_pull(github)
    thread = github.add_review_comment(REPO, number, review_id=1, user="alice", path="a.py", line=1, body="x")
    thread["isResolved"] = True
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="a.py", line=1, body="Thanks!", thread=thread
    )

    await deliver(client, "pull_request_review", data)
    assert await settle(gh_app, queue) == ["review commented without inline comments: nothing to do"]
    assert await store.list_jobs() == []


async def test_a_reply_in_an_existing_thread_without_a_mention_is_talk_not_a_new_round(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    """Regression: "ok, leave it" under autodev's answer (a review of its own on GitHub) started a round."""
    data, number, review_id = reviewed_pull(github)
    for thread in (answered_thread(github, number), answered_thread(github, number)):
        github.add_review_comment(
            REPO, number, review_id=review_id, user="alice", path="a.py", line=1, body="ok, leave it",
            thread=thread,
        )  # fmt: skip

    await deliver(client, "pull_request_review", data)
    assert await settle(gh_app, queue) == [f"replies in existing threads without @{SLUG}: nothing to do"]
    assert await store.list_jobs() == []
    assert github.repos[REPO].comments == {}, "people talk in threads: nobody is answered"
    assert github.calls_to("POST", rf"/repos/{REPO}/pulls/{number}/comments/\d+/replies") == []


async def test_a_reply_that_mentions_the_app_starts_one_round_from_either_delivery(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    wrapping, number, review_id = reviewed_pull(github)
    thread = answered_thread(github, number)
    body = f"@{SLUG} please add it after all, as an SVG"
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="a.py", line=1, body=body, thread=thread
    )
    asked = thread["comments"][-1]["databaseId"]
    delivered = inline_comment(review_id, asked, body)
    delivered["comment"]["in_reply_to_id"] = thread["comments"][0]["databaseId"]

    await deliver(client, "pull_request_review", wrapping)
    await deliver(client, "pull_request_review_comment", delivered)
    assert await settle(gh_app, queue) == ["job submitted", "job already submitted"]

    [job] = await store.list_jobs()
    assert [c["comment_id"] for c in job.origin["review"]["comments"]] == [asked]
    assert f"> @{SLUG}[bot]: Not addressed in this round" in job.task and "as an SVG" in job.task


async def test_a_reply_in_a_review_that_requests_changes_starts_a_round(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    data, number, review_id = reviewed_pull(github, "changes_requested")
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="a.py", line=1, body="No: it is in scope.",
        thread=answered_thread(github, number),
    )  # fmt: skip

    await deliver(client, "pull_request_review", data)
    assert await settle(gh_app, queue) == ["job submitted"]
    [job] = await store.list_jobs()
    assert job.origin["round"] == "review by @alice: 1 comment" and "No: it is in scope." in job.task


async def test_a_review_with_a_new_comment_takes_its_replies_along_without_a_mention(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    data, number, review_id = reviewed_pull(github)
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="a.py", line=1, body="ok, leave it",
        thread=answered_thread(github, number),
    )  # fmt: skip
    github.add_review_comment(
        REPO, number, review_id=review_id, user="alice", path="b.py", line=2, body="Typo: recieve"
    )

    await deliver(client, "pull_request_review", data)
    assert await settle(gh_app, queue) == ["job submitted"]
    [job] = await store.list_jobs()
    assert [c["path"] for c in job.origin["review"]["comments"]] == ["a.py", "b.py"]


async def test_a_huge_review_is_taken_on_thirty_comments_at_a_time_and_says_so(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    data, number, review_id = reviewed_pull(github)
    for line in range(1, 36):
        github.add_review_comment(
            REPO, number, review_id=review_id, user="alice", path="a.py", line=line, body="x"
        )

    await deliver(client, "pull_request_review", data)
    assert await settle(gh_app, queue) == ["job submitted"]
    [job] = await store.list_jobs()
    assert job.origin["round"] == "review by @alice: 30 of 35 comments"
    assert len(job.origin["review"]["comments"]) == 30 and "Review comment 31" not in job.task
    [said] = [c["body"] for c in github.repos[REPO].comments.values() if c["issue_number"] == number]
    assert "35 inline comments" in said and "The other 5 stay open" in said

    data["sender"]["id"] += 1  # the same review again, in a delivery that is not a byte-for-byte replay
    await deliver(client, "pull_request_review", data)
    assert await settle(gh_app, queue) == ["job already submitted"]
    assert [c["body"] for c in github.repos[REPO].comments.values()] == [said], "said once"


async def test_when_github_keeps_failing_to_give_the_threads_the_reviewer_is_told_and_no_job_starts(
    client: httpx.AsyncClient, github: FakeGitHub, gh_app: GitHubApp, store: JobStore, queue: RecordingQueue
) -> None:
    github.add_repo(REPO, writers={"alice"})
    data = review("changes_requested", "Fix it")
    pull_on(github, data["pull_request"]["number"])
    github.fail("POST", "/graphql", times=100, status=502)

    await deliver(client, "pull_request_review", data)
    [outcome] = await settle(gh_app, queue)

    assert outcome.startswith("failed: GitHub failed while reading the review's comments")
    assert await store.list_jobs() == []
    [told] = github.repos[REPO].comments.values()
    assert (
        "submit the review again" in told["body"] and told["issue_number"] == data["pull_request"]["number"]
    )
