"""The webhook fields autodev reads, as lenient models.

githubkit's typed webhook models reject several payloads GitHub really sends (the octokit/webhooks examples
for issues.labeled, check_run.rerequested and installation.* fail its validation), so a delivery is parsed
into these small models instead: every field we rely on is checked, everything else is ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class User(_Lenient):
    login: str
    type: str = "User"

    @property
    def is_bot(self) -> bool:
        return self.type == "Bot" or self.login.endswith("[bot]")


class Repository(_Lenient):
    full_name: str


class InstallationRef(_Lenient):
    id: int


class Label(_Lenient):
    name: str


class Issue(_Lenient):
    number: int
    title: str
    body: str | None = None
    user: User
    pull_request: dict[str, Any] | None = None


class Comment(_Lenient):
    id: int
    body: str | None = None
    user: User


class Ref(_Lenient):
    ref: str
    sha: str


class PullRequest(_Lenient):
    number: int
    title: str
    body: str | None = None
    html_url: str = ""
    head: Ref
    base: Ref


class Review(_Lenient):
    id: int
    state: str
    body: str | None = None
    user: User


class ReviewComment(_Lenient):
    """An inline comment on a pull request's diff (pull_request_review_comment)."""

    id: int
    body: str | None = None
    user: User
    pull_request_review_id: int | None = None
    path: str = ""
    line: int | None = None
    start_line: int | None = None
    diff_hunk: str = ""
    in_reply_to_id: int | None = None


class CheckRun(_Lenient):
    id: int
    name: str = ""
    external_id: str | None = None


class RequestedAction(_Lenient):
    identifier: str


class Account(_Lenient):
    login: str


class Installation(_Lenient):
    id: int
    account: Account | None = None


class RepoName(_Lenient):
    full_name: str


class Event(_Lenient):
    action: str | None = None
    sender: User | None = None
    repository: Repository | None = None
    installation: InstallationRef | None = None


class IssuesEvent(Event):
    issue: Issue
    label: Label | None = None


class IssueCommentEvent(Event):
    issue: Issue
    comment: Comment


class ReviewEvent(Event):
    review: Review
    pull_request: PullRequest


class ReviewCommentEvent(Event):
    comment: ReviewComment
    pull_request: PullRequest


class CheckRunEvent(Event):
    check_run: CheckRun
    requested_action: RequestedAction | None = None


class InstallationEvent(Event):
    installation: Installation  # type: ignore[assignment]
    repositories: list[RepoName] | None = None


class InstallationReposEvent(Event):
    installation: Installation  # type: ignore[assignment]
    repositories_added: list[RepoName] = []
    repositories_removed: list[RepoName] = []


EVENT_MODELS: dict[str, type[Event]] = {
    "issues": IssuesEvent,
    "issue_comment": IssueCommentEvent,
    "pull_request_review": ReviewEvent,
    "pull_request_review_comment": ReviewCommentEvent,
    "check_run": CheckRunEvent,
    "installation": InstallationEvent,
    "installation_repositories": InstallationReposEvent,
}
