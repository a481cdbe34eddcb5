"""A review's inline comments with their threads (GraphQL: REST has no thread ids and no `isResolved`).

A review job needs, per comment, the file, the line (and first line of a multi-line comment), the diff hunk,
what was said earlier in its thread, and the thread's node id, so the comment can be answered and its thread
resolved once the change is pushed.
"""

from __future__ import annotations

from typing import Any

from github_app.client import GitHubApi

THREADS = """
query($owner: String!, $name: String!, $number: Int!, $cursor: String) {
  repository(owner: $owner, name: $name) {
    pullRequest(number: $number) {
      reviewThreads(first: 100, after: $cursor) {
        pageInfo { hasNextPage endCursor }
        nodes {
          id isResolved path line startLine
          comments(first: 50) {
            nodes {
              databaseId body path line startLine originalLine diffHunk
              author { login }
              pullRequestReview { databaseId }
            }
          }
        }
      }
    }
  }
}
"""
RESOLVE = """
mutation($threadId: ID!) { resolveReviewThread(input: {threadId: $threadId}) { thread { id isResolved } } }
"""
MAX_PAGES = 5  # 500 threads: more than any review autodev should take on in one job
HUNK_MAX_CHARS = 3000
HISTORY_MAX = 10


async def review_comments(
    api: GitHubApi, installation_id: int, repo: str, number: int, review_id: int
) -> list[dict[str, Any]]:
    """The inline comments of review `review_id`, in thread order, each with its thread's history.

    A comment that replies in a thread already resolved is left out (a "thanks" under an answered comment
    asks for nothing); a reply in an open thread is a comment to address like any other, marked `reply`
    (its thread was started by an earlier review) so the trigger can tell a conversation from a request."""
    owner, name = repo.split("/", 1)
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(MAX_PAGES):
        variables = {"owner": owner, "name": name, "number": number, "cursor": cursor}
        data = await api.graphql(installation_id, THREADS, variables)
        threads = ((data.get("repository") or {}).get("pullRequest") or {}).get("reviewThreads") or {}
        for thread in threads.get("nodes") or []:
            found += _of_review(thread, review_id)
        page = threads.get("pageInfo") or {}
        if not page.get("hasNextPage"):
            break
        cursor = page.get("endCursor")
    return found


def _of_review(thread: dict[str, Any], review_id: int) -> list[dict[str, Any]]:
    comments = (thread.get("comments") or {}).get("nodes") or []
    picked: list[dict[str, Any]] = []
    # GitHub lists a thread's comments oldest first: a thread whose first comment is another review's was
    # there before this review, and this review's comments in it are replies (REST's `in_reply_to_id`).
    reply = bool(comments) and _review_id(comments[0]) != review_id
    for index, comment in enumerate(comments):
        if _review_id(comment) != review_id:
            continue
        if index > 0 and thread.get("isResolved"):
            continue
        history = [{"author": _login(c), "body": str(c.get("body") or "")[:2000]} for c in comments[:index]][
            -HISTORY_MAX:
        ]
        picked.append(
            {
                "comment_id": int(comment["databaseId"]),
                "thread_id": thread.get("id"),
                "author": _login(comment),
                "body": str(comment.get("body") or ""),
                "path": str(comment.get("path") or thread.get("path") or ""),
                "line": comment.get("line") or thread.get("line") or comment.get("originalLine"),
                "start_line": comment.get("startLine") or thread.get("startLine"),
                "diff_hunk": str(comment.get("diffHunk") or "")[-HUNK_MAX_CHARS:],
                "history": history,
                "reply": reply,
            }
        )
    return picked


def _review_id(comment: dict[str, Any]) -> Any:
    return (comment.get("pullRequestReview") or {}).get("databaseId")


def _login(comment: dict[str, Any]) -> str:
    return str((comment.get("author") or {}).get("login") or "ghost")
