"""GitHubCodeHost: clone URL with the installation token, and pull requests found before they are opened."""

from __future__ import annotations

import base64
import logging
from typing import Any

from githubkit.exception import RequestFailed

from engine.ports import GitRemote, PullRequest
from github_app.client import GitHubApi

log = logging.getLogger(__name__)

READY_FOR_REVIEW = """
mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { clientMutationId } }
"""
TO_DRAFT = """
mutation($id: ID!) { convertPullRequestToDraft(input: {pullRequestId: $id}) { clientMutationId } }
"""


def to_pull_request(data: dict[str, Any]) -> PullRequest:
    return PullRequest(
        number=int(data["number"]),
        url=str(data.get("html_url") or ""),
        head_branch=str(data["head"]["ref"]),
        base_branch=str(data["base"]["ref"]),
        draft=bool(data.get("draft", False)),
        head_sha=data["head"].get("sha"),
        state=str(data.get("state", "open")),
    )


class GitHubCodeHost:
    """A repository on GitHub, acting as one App installation."""

    supports_pull_requests = True

    def __init__(self, api: GitHubApi, installation_id: int) -> None:
        self.api = api
        self.installation_id = installation_id

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return await self.api.request(self.installation_id, method, path, **kwargs)

    async def remote(self, repo: str) -> GitRemote:
        url = str((await self._call("GET", f"/repos/{repo}"))["clone_url"])
        if not url.startswith("https://"):
            return GitRemote(url)  # file:// or a local git server in tests: never send the token there
        token = await self.api.token(self.installation_id)
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        return GitRemote(url, {"Authorization": f"Basic {basic}"})

    async def default_branch(self, repo: str) -> str:
        return str((await self._call("GET", f"/repos/{repo}"))["default_branch"])

    async def issue_text(self, repo: str, number: int) -> str:
        """The issue's title, body and comments, as a task (for jobs that name an issue from elsewhere)."""
        issue = await self._call("GET", f"/repos/{repo}/issues/{number}")
        comments = await self._call("GET", f"/repos/{repo}/issues/{number}/comments")
        parts = [f"Issue #{number}: {issue.get('title') or ''}", issue.get("body") or ""]
        parts += [
            f"Comment by {c.get('user', {}).get('login', '?')}:\n{c.get('body') or ''}" for c in comments
        ]
        return "\n\n".join(p for p in parts if p.strip())

    async def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        owner = repo.split("/", 1)[0]
        rows = await self._call(
            "GET", f"/repos/{repo}/pulls", params={"head": f"{owner}:{head_branch}", "state": "open"}
        )
        return to_pull_request(rows[0]) if rows else None

    async def open_pull_request(
        self, repo: str, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        try:
            return to_pull_request(await self._call("POST", f"/repos/{repo}/pulls", json=payload))
        except RequestFailed as exc:
            # An earlier attempt may have opened it just before failing: take that one.
            if exc.response.status_code == 422 and (found := await self.find_pull_request(repo, head)):
                return found
            raise

    async def update_pull_request(
        self,
        repo: str,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        draft: bool | None = None,
    ) -> PullRequest:
        fields = {k: v for k, v in {"title": title, "body": body}.items() if v is not None}
        path = f"/repos/{repo}/pulls/{number}"
        data = await self._call("PATCH" if fields else "GET", path, **({"json": fields} if fields else {}))
        if draft is not None and bool(data.get("draft")) != draft:
            # REST cannot change a PR's draft flag; GraphQL can, by the PR's node id.
            mutation = TO_DRAFT if draft else READY_FOR_REVIEW
            await self.api.graphql(self.installation_id, mutation, {"id": data["node_id"]})
            data = await self._call("GET", path)
        return to_pull_request(data)
