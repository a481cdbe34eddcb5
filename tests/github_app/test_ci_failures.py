"""A failing CI check on autodev's pull request: what is stored, what the worker makes of it, and when nothing
happens (someone else's PR, a commit autodev did not push, a cancelled run, `@app stop`, rounds used up).
The whole round — the fix job running and pushing — is in tests/e2e/test_ci_fix.py."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx

from engine.store.jobs import JobStore
from engine.store.models import JobState
from github_app import GitHubApp
from tests.github_app.conftest import REPO, RecordingQueue, as_app_delivery, deliver, payload, settle
from tests.support.fake_github import FakeGitHub, FakeRepo

SLUG = "autodev-test"
BRANCH = "autodev/1-spelling"
SHA = "c" * 40
SUITE = 9001
RUN = 5001
# A token-shaped line a failing job might print: it must never reach the model or the job page.
LEAKED = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
LOG = (
    "2026-11-28T10:00:00.0000000Z ##[group]Run python -m pytest\n"
    f"2026-11-28T10:00:01.0000000Z export GH_TOKEN={LEAKED}\n"
    "2026-11-28T10:00:02.0000000Z FAILED tests/test_ok.py::test_ok - AssertionError: assert False\n"
    "2026-11-28T10:00:02.5000000Z ##[error]Process completed with exit code 1.\n"
)


def check_suite(sha: str, number: int, *, branch: str = BRANCH, suite: int = SUITE, **changes: Any) -> dict:
    """The corpus's check_suite.completed, as GitHub sends it for a failing suite on `branch`'s head."""
    data = as_app_delivery(payload("check_suite", "completed.payload.json"), f"{SLUG}[bot]", "Bot")
    data["check_suite"].update(
        {"id": suite, "head_branch": branch, "head_sha": sha, "conclusion": "failure", **changes}
    )
    (pull,) = data["check_suite"]["pull_requests"]
    pull["number"], pull["head"]["ref"], pull["head"]["sha"] = number, branch, sha
    return data


def check_run(sha: str, number: int, *, branch: str = BRANCH, run: int = RUN, **changes: Any) -> dict:
    """The corpus's failing check_run.completed (a GitHub Actions job) on `branch`'s head."""
    data = as_app_delivery(payload("check_run", "completed.1.payload.json"), "github-actions[bot]", "Bot")
    data["check_run"].update({"id": run, "head_sha": sha, **changes})
    data["check_run"]["check_suite"].update({"id": SUITE, "head_branch": branch, "head_sha": sha})
    (pull,) = data["check_run"]["pull_requests"]
    pull["number"], pull["head"]["ref"], pull["head"]["sha"] = number, branch, sha
    return data


def failing_actions_job(repo: FakeRepo, sha: str, *, run: int = RUN, suite: int = SUITE) -> None:
    """GitHub's side of one failing GitHub Actions job: its check run, an annotation and its log."""
    repo.ci_runs[run] = {
        "id": run,
        "name": "tests",
        "head_sha": sha,
        "status": "completed",
        "conclusion": "failure",
        "details_url": f"https://github.invalid/{repo.full_name}/actions/runs/1/job/{run}",
        "app": {"slug": "github-actions"},
        "check_suite": {"id": suite},
    }
    repo.annotations[run] = [
        {
            "path": "tests/test_ok.py",
            "start_line": 2,
            "annotation_level": "failure",
            "message": "assert False",
        }
    ]
    repo.job_logs[run] = LOG


def autodev_pull(repo: FakeRepo, number: int = 2, sha: str = SHA, branch: str = BRANCH) -> None:
    repo.pulls[number] = {
        "number": number,
        "node_id": f"PR_{number}",
        "title": "Fix spelling",
        "state": "open",
        "draft": False,
        "head": {"ref": branch, "sha": sha},
        "base": {"ref": "main", "sha": "b" * 40},
    }


async def failing_autodev_pull(github: FakeGitHub, store: JobStore) -> FakeRepo:
    """alice's repository (she may write) with autodev's PR #2, whose head SHA autodev pushed and whose
    GitHub Actions job failed on it."""
    repo = github.add_repo(REPO, writers={"alice"})
    autodev_pull(repo)
    failing_actions_job(repo, SHA)
    await pushed(store)
    return repo


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


async def pushed(store: JobStore, sha: str = SHA) -> None:
    """autodev's earlier job pushed `sha` (the pipeline records it when it pushes)."""
    await store.record_push(repo=REPO, sha=sha, job_id="0" * 32, branch=BRANCH)


async def test_a_failing_suite_and_its_check_run_on_autodevs_commit_make_one_fix_job(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    await failing_autodev_pull(github, store)

    suite = await deliver(client, "check_suite", check_suite(SHA, 2))
    run = await deliver(client, "check_run", check_run(SHA, 2))
    again = await deliver(client, "check_suite", check_suite(SHA, 2), delivery=suite.json()["delivery"])
    outcomes = await settle(gh_app, queue)

    assert suite.json()["stored"] and run.json()["stored"], "sent by bots, yet CI results are kept"
    assert again.json()["duplicate"] is True
    assert outcomes == ["CI fix 1 of 2 submitted", "fix already submitted for this commit"]
    (job_id,) = queue.enqueued
    job = await store.get(job_id)
    assert (job.kind, job.trigger, job.branch, job.pr_number) == ("revise", "github_ci", BRANCH, 2)
    assert job.origin["round"] == "CI fix 1 of 2"
    assert "FAILED tests/test_ok.py::test_ok - AssertionError" in job.task
    assert "tests/test_ok.py:2 [failure] assert False" in job.task
    assert LEAKED not in job.task and "GH_TOKEN=[redacted]" in job.task
    assert "2026-11-28T10" not in job.task, "the log's timestamps are dropped"
    assert len(github.calls_to("GET", rf"/repos/{REPO}/pulls/2")) == 1, "the second answered from the store"
    (download,) = [c for c in github.calls if c.path.startswith("/_downloads/")]
    assert download.auth is None, "the token stays with GitHub's API, not the log's download host"


async def test_nothing_happens_for_someone_elses_branch_a_cancelled_run_or_autodevs_own_checks(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, queue: RecordingQueue
) -> None:
    github.add_repo(REPO)
    own = as_app_delivery(check_run(SHA, 2, name="autodev", external_id="f" * 32), "alice")  # not a bot
    own_suite = check_suite(SHA, 2)
    own_suite["check_suite"]["app"]["id"] = github.app_id  # a failed autodev job fails autodev's own suite

    answers = [
        await deliver(client, "check_suite", check_suite(SHA, 2, branch="feature/login")),
        await deliver(client, "check_suite", check_suite(SHA, 2, conclusion="cancelled")),
        await deliver(client, "check_run", check_run(SHA, 2, conclusion="success")),
        await deliver(client, "check_run", own),
        await deliver(client, "check_suite", own_suite),
    ]

    assert [a.json()["ignored"] for a in answers] == [
        "not autodev's pull request",
        "conclusion cancelled",
        "conclusion success",
        "check_run.completed",  # autodev's own check run: only its buttons and Re-run matter
        "autodev's own check suite",
    ]
    assert queue.deliveries == [] and github.calls == []


async def test_a_failure_on_a_commit_autodev_did_not_push_starts_nothing(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    """Someone pushed to autodev's branch: their commit is theirs to fix, their code not ours to run."""
    repo = github.add_repo(REPO)
    autodev_pull(repo)
    failing_actions_job(repo, SHA)
    await pushed(store, "d" * 40)  # autodev's commit was an earlier one

    await deliver(client, "check_suite", check_suite(SHA, 2))

    assert await settle(gh_app, queue) == [f"{SHA[:12]} was not pushed by autodev"]
    assert queue.enqueued == []


async def test_a_failure_on_a_commit_that_is_no_longer_the_head_starts_nothing(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    repo = github.add_repo(REPO)
    autodev_pull(repo, sha="e" * 40)
    await pushed(store)

    await deliver(client, "check_suite", check_suite(SHA, 2))

    assert await settle(gh_app, queue) == [f"stale: #2's head is no longer {SHA[:12]}"]
    assert queue.enqueued == []


async def test_app_stop_cancels_the_fix_under_way_and_ends_the_rounds(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    repo = await failing_autodev_pull(github, store)
    await deliver(client, "check_suite", check_suite(SHA, 2))
    await settle(gh_app, queue)
    (fix,) = queue.enqueued
    stop = as_app_delivery(payload("issue_comment", "created.payload.json"), "alice")
    stop["issue"]["number"] = 2
    stop["issue"]["pull_request"] = {"url": "x", "html_url": "x", "diff_url": "x", "patch_url": "x"}
    stop["comment"]["body"] = f"@{SLUG} stop"
    autodev_pull(repo, sha="f" * 40)
    await pushed(store, "f" * 40)

    await deliver(client, "issue_comment", stop)
    await deliver(client, "check_suite", check_suite("f" * 40, 2, suite=9002))
    outcomes = await settle(gh_app, queue)

    assert outcomes == ["CI fixes stopped; 1 cancelled", "CI fixes stopped on #2 by @alice"]
    assert (await store.get(fix)).state == JobState.CANCELLED
    (reply,) = [c["body"] for c in repo.comments.values() if c["issue_number"] == 2]
    assert reply.startswith("I will not try to fix this pull request's CI any more.") and fix in reply
    assert queue.enqueued == [fix]


async def test_ci_fix_rounds_zero_on_the_base_branch_turns_it_off(
    client: httpx.AsyncClient,
    gh_app: GitHubApp,
    github: FakeGitHub,
    store: JobStore,
    queue: RecordingQueue,
    tmp_path: Path,
) -> None:
    seed = tmp_path / "seed"
    (seed / ".github").mkdir(parents=True)
    (seed / ".github" / "autodev.yml").write_text("ci_fix_rounds: 0\n")
    git(seed, "init", "-q", "-b", "main")
    git(seed, "add", "-A")
    git(seed, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "config")
    git(tmp_path, "clone", "-q", "--bare", str(seed), str(tmp_path / "bare.git"))
    repo = github.add_repo(REPO, clone_url=f"file://{tmp_path / 'bare.git'}")
    autodev_pull(repo)
    await pushed(store)

    await deliver(client, "check_suite", check_suite(SHA, 2))

    assert await settle(gh_app, queue) == ["CI fixes are off for this repository (ci_fix_rounds: 0)"]
    (read,) = github.calls_to("GET", rf"/repos/{REPO}/contents/\.github/autodev\.yml")
    assert read.query == {"ref": "main"}, "read from the base branch, which the pull request cannot change"


async def test_when_the_rounds_are_used_up_one_comment_says_so_and_no_job_starts(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    repo = github.add_repo(REPO)
    failing_actions_job(repo, SHA)
    heads = ["1" * 40, "2" * 40, "3" * 40]
    for round_, sha in enumerate(heads[:2], start=1):
        autodev_pull(repo, sha=sha)
        await pushed(store, sha)
        await deliver(client, "check_suite", check_suite(sha, 2))
        assert await settle(gh_app, queue) == [f"CI fix {round_} of 2 submitted"]
        await store.transition(queue.enqueued[-1], JobState.RUNNING)  # as a worker runs it and pushes
        await store.transition(queue.enqueued[-1], JobState.SUCCEEDED)
    autodev_pull(repo, sha=heads[2])
    await pushed(store, heads[2])

    await deliver(client, "check_suite", check_suite(heads[2], 2))
    await deliver(client, "check_run", check_run(heads[2], 2))
    outcomes = await settle(gh_app, queue)

    assert outcomes == [
        "CI fix rounds used up: said so on the pull request",
        "CI fix rounds used up (already said)",
    ]
    assert len(queue.enqueued) == 2
    (comment,) = [c["body"] for c in repo.comments.values()]
    assert comment.startswith("CI still fails (tests) after 2 fix rounds")
    assert "- tests: tests/test_ok.py:2 [failure] assert False" in comment


async def test_a_suite_that_names_no_pull_request_finds_it_by_its_branch(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    """GitHub leaves `pull_requests` empty in some deliveries (a fork, a suite made before the PR)."""
    await failing_autodev_pull(github, store)
    data = check_suite(SHA, 2)
    data["check_suite"]["pull_requests"] = []

    await deliver(client, "check_suite", data)

    assert await settle(gh_app, queue) == ["CI fix 1 of 2 submitted"]
    (listing,) = github.calls_to("GET", rf"/repos/{REPO}/pulls")
    assert listing.query == {"head": f"Codertocat:{BRANCH}", "state": "open"}


async def test_a_failure_github_keeps_failing_to_show_ends_in_one_comment_on_the_pull_request(
    client: httpx.AsyncClient, gh_app: GitHubApp, github: FakeGitHub, store: JobStore, queue: RecordingQueue
) -> None:
    """Nobody asked for a fix round by hand, so nobody would know one was never started: the PR is told."""
    repo = await failing_autodev_pull(github, store)
    github.fail("GET", rf"/repos/{REPO}/pulls/2$", times=1000, status=502)

    await deliver(client, "check_suite", check_suite(SHA, 2))
    (outcome,) = await settle(gh_app, queue)

    assert outcome.startswith("failed: GitHub failed while reading pull request #2")
    assert queue.enqueued == [] and await store.list_jobs() == []
    (notice,) = repo.comments.values()
    assert notice["issue_number"] == 2
    assert notice["body"].startswith(f"I could not act on the CI failure on {SHA[:7]}: GitHub kept failing")
    assert notice["body"].endswith("Nothing was started; re-run the failed checks to try again.")
    assert "@" not in notice["body"], "the sender is a bot: nobody to mention"
