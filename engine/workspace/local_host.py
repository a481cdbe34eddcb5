"""A CodeHost for `autodev run`: a plain local git repository, with branches but no pull requests."""

from __future__ import annotations

from pathlib import Path

from engine.errors import PermanentFailure
from engine.ports import GitRemote, PullRequest
from engine.workspace.git import GitError, git


class LocalCodeHost:
    """Clones from `repo_path` and pushes the job's branch back into it; the pipeline skips PR steps."""

    supports_pull_requests = False

    def __init__(self, repo_path: Path) -> None:
        self.repo_path = repo_path.resolve()

    async def remote(self, repo: str) -> GitRemote:
        if not (self.repo_path / ".git").exists() and not (self.repo_path / "HEAD").is_file():
            raise PermanentFailure(f"{self.repo_path} is not a git repository")
        return GitRemote(url=str(self.repo_path))

    async def default_branch(self, repo: str) -> str:
        try:
            return (await git("symbolic-ref", "--short", "HEAD", cwd=self.repo_path)).strip()
        except GitError as exc:
            raise PermanentFailure(f"{self.repo_path} has no current branch to start from: {exc}") from exc

    async def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        return None

    async def open_pull_request(
        self, repo: str, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        raise PermanentFailure("a local repository has no pull requests; the branch is left in place")

    async def update_pull_request(
        self,
        repo: str,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        draft: bool | None = None,
    ) -> PullRequest:
        raise PermanentFailure("a local repository has no pull requests")
