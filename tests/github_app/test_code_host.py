"""GitHubCodeHost: remotes with the installation token for https only, PRs found before they are opened."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from engine.errors import PermanentFailure, TransientFailure
from engine.ports import CodeHost
from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from github_app import GitHubApp, GitHubCodeHost
from tests.github_app.conftest import INSTALLATION
from tests.support.fake_github import FakeGitHub

REPO = "octo/hello"


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def bare_repo(tmp_path: Path) -> Path:
    work = tmp_path / "seed"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("hello\n")
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init", cwd=work)
    bare = tmp_path / "hello.git"
    git("clone", "-q", "--bare", str(work), str(bare))
    return bare


@pytest.fixture
async def host(gh_app: GitHubApp, store: JobStore) -> GitHubCodeHost:
    job, _ = await store.submit(
        JobRequest(
            dedupe_key="h",
            trigger="github_issue",
            repo=REPO,
            title="t",
            task="t",
            requester="a",
            installation_id=INSTALLATION,
        )
    )
    code_host = await gh_app.code_host(await store.view(job.id))
    assert isinstance(code_host, CodeHost) and isinstance(code_host, GitHubCodeHost)
    return code_host


async def test_a_file_remote_is_cloneable_and_carries_no_token(
    host: GitHubCodeHost, github: FakeGitHub, tmp_path: Path
) -> None:
    bare = bare_repo(tmp_path)
    github.add_repo(REPO, clone_url=bare.as_uri(), default_branch="main")
    remote = await host.remote(REPO)
    assert remote.url == bare.as_uri() and remote.http_headers == {}
    git("clone", "-q", remote.url, str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "README.md").read_text() == "hello\n"
    assert await host.default_branch(REPO) == "main"
    assert remote.git_config() == []


async def test_an_https_remote_gets_the_installation_token_as_a_basic_auth_header(
    host: GitHubCodeHost, github: FakeGitHub
) -> None:
    github.add_repo(REPO, clone_url="https://git.example/octo/hello.git")
    remote = await host.remote(REPO)
    assert remote.url == "https://git.example/octo/hello.git"  # the token never goes into the URL
    expected = base64.b64encode(f"x-access-token:{github.token_for(INSTALLATION)}".encode()).decode()
    assert remote.http_headers == {"Authorization": f"Basic {expected}"}
    await host.remote(REPO)  # cached: one token request
    assert len(github.calls_to("POST", rf"/app/installations/{INSTALLATION}/access_tokens")) == 1


async def test_a_draft_pr_is_opened_once_and_found_again_by_its_branch(
    host: GitHubCodeHost, github: FakeGitHub
) -> None:
    github.add_repo(REPO)
    assert await host.find_pull_request(REPO, "autodev/1-typo") is None
    body = "Fixes the typo.\n\nCloses #1"
    pr = await host.open_pull_request(
        REPO, head="autodev/1-typo", base="main", title="Fix typo", body=body, draft=True
    )
    assert pr.draft and pr.number == 1 and pr.head_branch == "autodev/1-typo"
    [call] = github.calls_to("POST", rf"/repos/{REPO}/pulls")
    assert call.json == {
        "title": "Fix typo",
        "head": "autodev/1-typo",
        "base": "main",
        "body": body,
        "draft": True,
    }
    found = await host.find_pull_request(REPO, "autodev/1-typo")
    assert found is not None and found.number == 1
    assert github.calls_to("GET", rf"/repos/{REPO}/pulls")[-1].query == {
        "head": "octo:autodev/1-typo",
        "state": "open",
    }
    # A retried job that tries again gets the existing PR, not a second one.
    again = await host.open_pull_request(
        REPO, head="autodev/1-typo", base="main", title="x", body="y", draft=True
    )
    assert again.number == 1 and len(github.repos[REPO].pulls) == 1


async def test_pr_creation_survives_transient_502s_and_reports_a_persistent_one(
    host: GitHubCodeHost, github: FakeGitHub
) -> None:
    github.add_repo(REPO)
    github.fail("POST", rf"/repos/{REPO}/pulls", times=2, status=502)
    pr = await host.open_pull_request(REPO, head="autodev/2-x", base="main", title="t", body="b", draft=True)
    assert pr.number == 1
    github.fail("POST", rf"/repos/{REPO}/pulls", times=50, status=502)
    with pytest.raises(TransientFailure, match="GitHub answered 502 while opening the pull request"):
        await host.open_pull_request(REPO, head="autodev/3-y", base="main", title="t", body="b", draft=True)


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (401, "check GITHUB_APP_ID and GITHUB_PRIVATE_KEY"),
        (403, "accept its requested permissions in the installation's settings"),
        (404, "octo/hello does not exist or the App is not installed on it"),
        (422, "GitHub refused opening the pull request (422: injected failure)"),
    ],
)
async def test_a_refused_pr_creation_is_a_permanent_failure_that_says_what_to_do(
    host: GitHubCodeHost, github: FakeGitHub, status: int, says: str
) -> None:
    github.add_repo(REPO)
    github.fail("POST", rf"/repos/{REPO}/pulls", times=1, status=status)
    with pytest.raises(PermanentFailure) as raised:
        await host.open_pull_request(REPO, head="autodev/4-z", base="main", title="t", body="b", draft=True)
    assert says in raised.value.reason
    assert len(github.calls_to("POST", rf"/repos/{REPO}/pulls")) == 1  # a refusal is not retried


async def test_a_rate_limited_call_is_transient_and_carries_githubs_wait(
    host: GitHubCodeHost, github: FakeGitHub
) -> None:
    github.add_repo(REPO)
    limited = {"x-ratelimit-remaining": "0", "retry-after": "1"}
    github.fail("GET", rf"/repos/{REPO}", times=50, status=429, headers=limited)
    with pytest.raises(TransientFailure, match="GitHub rate limit while reading the repository") as raised:
        await host.default_branch(REPO)
    assert raised.value.retry_after == 1.0


async def test_update_edits_title_and_body_and_marks_ready_through_graphql(
    host: GitHubCodeHost, github: FakeGitHub
) -> None:
    github.add_repo(REPO)
    pr = await host.open_pull_request(REPO, head="autodev/1-a", base="main", title="t", body="b", draft=True)
    updated = await host.update_pull_request(REPO, pr.number, title="Done", body="All green", draft=False)
    assert not updated.draft
    assert github.calls_to("PATCH", rf"/repos/{REPO}/pulls/1")[0].json == {
        "title": "Done",
        "body": "All green",
    }
    [mutation] = github.calls_to("POST", "/graphql")
    assert "markPullRequestReadyForReview" in mutation.json["query"]
    assert github.repos[REPO].pulls[1]["title"] == "Done"


async def test_a_job_without_an_installation_has_no_github_code_host(
    gh_app: GitHubApp, store: JobStore
) -> None:
    job, _ = await store.submit(
        JobRequest(dedupe_key="n", trigger="slack", repo=REPO, title="t", task="t", requester="a")
    )
    with pytest.raises(PermanentFailure, match="installation"):
        await gh_app.code_host(await store.view(job.id))


async def test_installation_tokens_are_shared_through_redis_between_processes(
    gh_settings: Settings, store: JobStore, github: FakeGitHub, clean_redis: str
) -> None:
    github.add_repo(REPO, clone_url="https://git.example/octo/hello.git")
    clients = [aioredis.Redis.from_url(clean_redis) for _ in range(2)]
    apps = [GitHubApp(gh_settings, store, None, client) for client in clients]  # e.g. web and worker
    job, _ = await store.submit(
        JobRequest(
            dedupe_key="r",
            trigger="github_issue",
            repo=REPO,
            title="t",
            task="t",
            requester="a",
            installation_id=INSTALLATION,
        )
    )
    view = await store.view(job.id)
    remotes = [await (await app.code_host(view)).remote(REPO) for app in apps]
    assert remotes[0] == remotes[1]
    assert len(github.calls_to("POST", rf"/app/installations/{INSTALLATION}/access_tokens")) == 1
    for app, client in zip(apps, clients, strict=True):
        await app.aclose()
        await client.aclose()
