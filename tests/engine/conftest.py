"""Pipeline test helpers: a tiny Python project in a real git repo, a PR-keeping code host, a job runner."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from engine.pipeline.run import EngineDeps, run_job
from engine.ports import GitRemote, PullRequest, Reporter
from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import JobState
from tests.conftest import make_settings
from tests.support.fake_llm import FakeLLM

TEST_COMMAND = f"{sys.executable} -m pytest -q -p no:cacheprovider"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def make_project(
    root: Path, *, test_command: str = TEST_COMMAND, extra: dict[str, str] | None = None
) -> Path:
    """A git repo (branch main) holding calc.py, a passing pytest test and .github/autodev.yml."""
    root.mkdir(parents=True)
    files = {
        "calc.py": "def add(a, b):\n    return a + b\n",
        "tests/test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
        "pytest.ini": "[pytest]\npythonpath = .\n",
        ".github/autodev.yml": f"test_command: {test_command!r}\n",
        ".github/workflows/ci.yml": "on: push\n",
        **(extra or {}),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial")
    return root


@dataclass
class RecordingHost:
    """A CodeHost in front of a bare git remote, keeping pull requests in memory (GitHub's side)."""

    remote_path: Path
    prs: list[PullRequest] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    bodies: dict[int, str] = field(default_factory=dict)

    async def remote(self, repo: str) -> GitRemote:
        return GitRemote(
            url=str(self.remote_path), http_headers={"Authorization": "Bearer ghs_secret_token_123"}
        )

    async def default_branch(self, repo: str) -> str:
        return "main"

    async def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        return next((p for p in self.prs if p.head_branch == head_branch), None)

    async def open_pull_request(
        self, repo: str, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        self.calls.append(("open", {"head": head, "base": base, "title": title, "draft": draft}))
        pr = PullRequest(len(self.prs) + 1, f"https://example.test/pr/{len(self.prs) + 1}", head, base, draft)
        self.prs.append(pr)
        self.bodies[pr.number] = body
        return pr

    async def update_pull_request(
        self,
        repo: str,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        draft: bool | None = None,
    ) -> PullRequest:
        self.calls.append(("update", {"number": number, "draft": draft}))
        i = next(i for i, p in enumerate(self.prs) if p.number == number)
        if draft is not None:
            self.prs[i] = replace(self.prs[i], draft=draft)
        if body is not None:
            self.bodies[number] = body
        return self.prs[i]


@pytest.fixture
async def llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


@pytest.fixture
def remote(tmp_path: Path, project: Path) -> Path:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(bare)], check=True)
    return bare


def llm_settings(tmp_path: Path, database_url: str, llm: FakeLLM, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "openai_base_url": llm.base_url,
        "openai_api_key": "sk-test-key-0123456789",
        "llm_max_retries": 2,
        "repair_rounds": 2,
        **overrides,
    }
    return make_settings(tmp_path, **values)


async def submit(store: JobStore, repo: str = "acme/calc", **fields: Any) -> str:
    values: dict[str, Any] = {
        "dedupe_key": f"test:{repo}:{fields.get('title', 'task')}:{id(fields)}",
        "trigger": "test",
        "repo": repo,
        "title": "Add a subtract function",
        "task": "Add subtract(a, b) to calc.py with a test.",
        "requester": "tester",
        **fields,
    }
    job, _ = await store.submit(JobRequest(**values))
    return job.id


async def run(
    job_id: str, settings: Settings, store: JobStore, host: Any, reporters: list[Reporter] | None = None
) -> JobState:
    async def code_host_for(view: object) -> Any:
        return host

    deps = EngineDeps(
        settings, store, code_host_for=code_host_for, reporters_for=lambda view: reporters or []
    )
    return await run_job(job_id, deps)


def plan(*titles: str, files: list[str] | None = None) -> dict[str, Any]:
    return {
        "summary": "Do the work",
        "steps": [
            {"title": t, "rationale": "r", "acceptance": "tests pass", "files": files or []} for t in titles
        ],
    }


def branch_log(repo: Path, branch: str) -> list[str]:
    return git(repo, "log", "--format=%s", f"main..{branch}").splitlines()
