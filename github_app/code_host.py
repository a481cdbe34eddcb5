"""GitHubCodeHost: clone URL with the installation token, and pull requests found before they are opened."""

from __future__ import annotations

import base64
import logging
from typing import Any

from githubkit.exception import GraphQLFailed, RateLimitExceeded, RequestFailed

from engine.errors import PermanentFailure, TransientFailure
from engine.ports import GitRemote, PullRequest
from github_app.client import GitHubApi, GitHubUnavailable
from github_app.threads import RESOLVE

log = logging.getLogger(__name__)

READY_FOR_REVIEW = """
mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { clientMutationId } }
"""
TO_DRAFT = """
mutation($id: ID!) { convertPullRequestToDraft(input: {pullRequestId: $id}) { clientMutationId } }
"""


def github_message(exc: RequestFailed) -> str:
    """GitHub's own words for a refusal: `message` plus any validation `errors`."""
    try:
        data = exc.response.json()
    except ValueError:
        return exc.response.text[:200]
    if not isinstance(data, dict):
        return str(data)[:200]
    errors = [e.get("message") or e.get("code") for e in data.get("errors") or [] if isinstance(e, dict)]
    return "; ".join(str(part) for part in [data.get("message"), *errors] if part) or "no message"


def job_failure(exc: RequestFailed | GitHubUnavailable, what: str, repo: str) -> Exception:
    """What a failed GitHub call means for the job: retry later, or stop with a reason a user can act on."""
    if isinstance(exc, GitHubUnavailable):
        return TransientFailure(f"GitHub could not be reached while {what}: {exc}")
    status = exc.response.status_code
    if isinstance(exc, RateLimitExceeded):
        wait = exc.retry_after.total_seconds()
        return TransientFailure(f"GitHub rate limit while {what}", retry_after=wait)
    if status >= 500 or status == 429:
        return TransientFailure(f"GitHub answered {status} while {what}, after retries")
    message = github_message(exc)
    if status == 401:
        return PermanentFailure(
            f"GitHub refused the App's credentials while {what} (401: {message}); "
            "check GITHUB_APP_ID and GITHUB_PRIVATE_KEY"
        )
    if status == 403:
        return PermanentFailure(
            f"GitHub refused {what} (403: {message}); the App needs read and write access to contents, "
            f"issues, pull requests and checks on {repo}: accept its requested permissions in the "
            "installation's settings"
        )
    if status == 404:
        return PermanentFailure(
            f"GitHub answered 404 while {what}: {repo} does not exist or the App is not installed on it"
        )
    return PermanentFailure(f"GitHub refused {what} ({status}: {message})")


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

    async def _call(self, what: str, repo: str, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call; a failure becomes TransientFailure or PermanentFailure naming `what` failed."""
        try:
            return await self.api.request(self.installation_id, method, path, **kwargs)
        except (RequestFailed, GitHubUnavailable) as exc:
            raise job_failure(exc, what, repo) from exc

    async def remote(self, repo: str) -> GitRemote:
        url = str((await self._call("reading the repository", repo, "GET", f"/repos/{repo}"))["clone_url"])
        if not url.startswith("https://"):
            return GitRemote(url)  # file:// or a local git server in tests: never send the token there
        try:
            token = await self.api.token(self.installation_id)
        except (RequestFailed, GitHubUnavailable) as exc:
            raise job_failure(exc, "getting an installation token", repo) from exc
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        return GitRemote(url, {"Authorization": f"Basic {basic}"})

    async def default_branch(self, repo: str) -> str:
        data = await self._call("reading the repository", repo, "GET", f"/repos/{repo}")
        return str(data["default_branch"])

    async def issue_text(self, repo: str, number: int) -> str:
        """The issue's title, body and people's comments (not bots', such as autodev's own), as a task."""
        what = f"reading issue #{number}"
        issue = await self._call(what, repo, "GET", f"/repos/{repo}/issues/{number}")
        comments = await self._call(
            what, repo, "GET", f"/repos/{repo}/issues/{number}/comments", params={"per_page": 100}
        )
        parts = [f"# Issue #{number}: {issue.get('title') or ''}", issue.get("body") or ""]
        for comment in comments or []:
            user = comment.get("user") or {}
            if user.get("type") != "Bot":
                parts.append(f"## Comment by @{user.get('login', '?')}\n{comment.get('body') or ''}")
        return "\n\n".join(p for p in parts if p.strip())

    async def find_pull_request(self, repo: str, head_branch: str) -> PullRequest | None:
        owner = repo.split("/", 1)[0]
        rows = await self._call(
            "looking for the pull request",
            repo,
            "GET",
            f"/repos/{repo}/pulls",
            params={"head": f"{owner}:{head_branch}", "state": "open"},
        )
        return to_pull_request(rows[0]) if rows else None

    async def open_pull_request(
        self, repo: str, *, head: str, base: str, title: str, body: str, draft: bool
    ) -> PullRequest:
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        try:
            return to_pull_request(
                await self.api.request(self.installation_id, "POST", f"/repos/{repo}/pulls", json=payload)
            )
        except RequestFailed as exc:
            # An earlier attempt may have opened it just before failing: take that one.
            if exc.response.status_code == 422 and (found := await self.find_pull_request(repo, head)):
                return found
            raise job_failure(exc, "opening the pull request", repo) from exc
        except GitHubUnavailable as exc:
            raise job_failure(exc, "opening the pull request", repo) from exc

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
        what = f"updating pull request #{number}"
        method, extra = ("PATCH", {"json": fields}) if fields else ("GET", {})
        data = await self._call(what, repo, method, path, **extra)
        if draft is not None and bool(data.get("draft")) != draft:
            # REST cannot change a PR's draft flag; GraphQL can, by the PR's node id.
            mutation = TO_DRAFT if draft else READY_FOR_REVIEW
            try:
                await self.api.graphql(self.installation_id, mutation, {"id": data["node_id"]})
            except (RequestFailed, GitHubUnavailable) as exc:
                raise job_failure(exc, f"changing the draft state of pull request #{number}", repo) from exc
            except GraphQLFailed as exc:
                raise PermanentFailure(
                    f"GitHub refused changing the draft state of pull request #{number}: {exc}"
                ) from exc
            data = await self._call(what, repo, "GET", path)
        return to_pull_request(data)

    async def reply_to_review_comment(self, repo: str, pr_number: int, comment_id: int, body: str) -> None:
        path = f"/repos/{repo}/pulls/{pr_number}/comments/{comment_id}/replies"
        await self._call(f"replying to review comment {comment_id}", repo, "POST", path, json={"body": body})

    async def answered_review_comments(self, repo: str, pr_number: int, marker: str) -> set[int]:
        """The review comments on the PR that a reply carrying `marker` answers (newest 300 comments)."""
        answered: set[int] = set()
        path = f"/repos/{repo}/pulls/{pr_number}/comments"
        for page in range(1, 4):
            params = {"per_page": 100, "page": page, "sort": "created", "direction": "desc"}
            rows = await self._call(
                "reading the pull request's review comments", repo, "GET", path, params=params
            )
            for row in rows or []:
                if marker in str(row.get("body") or "") and row.get("in_reply_to_id"):
                    answered.add(int(row["in_reply_to_id"]))
            if len(rows or []) < 100:
                break
        return answered

    async def resolve_review_thread(self, repo: str, thread_id: str) -> None:
        try:
            await self.api.graphql(self.installation_id, RESOLVE, {"threadId": thread_id})
        except (RequestFailed, GitHubUnavailable) as exc:
            raise job_failure(exc, "resolving a review thread", repo) from exc
        except GraphQLFailed as exc:
            raise PermanentFailure(f"GitHub refused resolving review thread {thread_id}: {exc!r}") from exc
