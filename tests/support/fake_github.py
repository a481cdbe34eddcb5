"""A local GitHub REST API on 127.0.0.1: the subset autodev calls, answered from memory, every call recorded.

    async with FakeGitHub() as github:                      # inside the test's event loop
        settings = make_settings(tmp_path, github_api_url=github.api_url, ...)
        repo = github.add_repo("octo/hello", clone_url="file:///…/hello.git", writers={"alice"})
        ...
        github.calls_to("POST", r"/repos/octo/hello/pulls")  # → [Call(method, path, json, query, auth)]

- Repos: `add_repo(full_name, clone_url, default_branch="main", writers=…, admins=…)` returns a `FakeRepo`
  whose `comments`, `pulls`, `check_runs`, `reactions` and `review_comments` a test reads or seeds.
  Anyone not a writer/admin has `read` permission.
- `fail(method, path_regex, times=1, status=502, headers=None)`: the next `times` matching calls fail.
- Any route not listed here answers 404 (and is recorded), so unexpected calls show up in a test.
- Review threads: `add_review_comment(repo, number, review_id=…, user=…, path=…, line=…, body=…)` starts a
  thread (or answers one: `thread=` a thread it returned); GraphQL `reviewThreads` reads them and
  `resolveReviewThread` resolves one; `POST …/pulls/{n}/comments/{id}/replies` answers in the thread and
  `GET …/pulls/{n}/comments` lists every thread's comments as REST does (with `in_reply_to_id`).
  `graphql_calls("resolveReviewThread")` lists the GraphQL calls whose query names that operation.
- CI of other apps: `ci_runs` (check run id → its JSON, with `check_suite: {id}` and `app: {slug}`),
  `annotations` (check run id → rows) and `job_logs` (Actions job id → text; its logs URL answers 302 to a
  download URL on this server, as GitHub does, which records whether a token came along).
- Pull requests and contents of a repo whose clone_url is `file://…` read its bare repository: a pull's
  `head.sha` is its branch's tip there, `GET …/contents/{path}?ref=` the file at that ref.
- Installation tokens: `POST /app/installations/{id}/access_tokens` → `token_for(id)`, valid one hour.
- `manifest_codes[code] = {...}`: what `POST /app-manifests/{code}/conversions` returns (once).
- `react(full_name, comment_id, login, content="+1")`: someone's reaction on a comment, which
  `GET …/issues/comments/{id}/reactions[?content=+1]` lists (GitHub sends no webhook for reactions).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

Handler = Callable[["FakeGitHub", re.Match[str], "Call"], Awaitable[web.Response]]


@dataclass
class Call:
    method: str
    path: str
    json: Any
    query: dict[str, str]
    auth: str | None


@dataclass
class FakeRepo:
    full_name: str
    clone_url: str
    default_branch: str = "main"
    permissions: dict[str, str] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)  # id → {id, issue_number, body, user}
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    review_comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # review id → comments
    issues: dict[int, dict[str, Any]] = field(default_factory=dict)  # number → {number, title, body}
    # PR number → threads as GraphQL returns them: {id, isResolved, path, line, startLine, comments: [...]}
    review_threads: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    ci_runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # other apps' check runs
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # check run id → rows
    job_logs: dict[int, str] = field(default_factory=dict)  # Actions job id → its log

    def git(self, *args: str) -> str | None:
        """git in the repository behind a file:// clone_url (None for any other, or when git fails)."""
        if not self.clone_url.startswith("file://"):
            return None
        done = subprocess.run(
            ["git", *args], cwd=self.clone_url.removeprefix("file://"), capture_output=True, text=True
        )
        return done.stdout if done.returncode == 0 else None


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    times: int
    status: int
    headers: dict[str, str]


class FakeGitHub:
    def __init__(self, app_slug: str = "autodev-test", app_id: int = 4242) -> None:
        self.app_slug = app_slug
        self.app_id = app_id
        self.repos: dict[str, FakeRepo] = {}
        self.calls: list[Call] = []
        self.manifest_codes: dict[str, dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self.api_url = ""

    # -- test API ---------------------------------------------------------------------------------

    def add_repo(
        self,
        full_name: str,
        clone_url: str = "",
        default_branch: str = "main",
        writers: set[str] | frozenset[str] = frozenset(),
        admins: set[str] | frozenset[str] = frozenset(),
    ) -> FakeRepo:
        perms = {user: "write" for user in writers} | {user: "admin" for user in admins}
        url = clone_url or f"https://github.invalid/{full_name}.git"
        repo = FakeRepo(full_name, url, default_branch, perms)
        self.repos[full_name] = repo
        return repo

    def fail(
        self, method: str, path: str, times: int = 1, status: int = 502, headers: dict[str, str] | None = None
    ) -> None:
        self._failures.append(_Failure(method, re.compile(path), times, status, headers or {}))

    def calls_to(self, method: str, path: str) -> list[Call]:
        pattern = re.compile(path)
        return [c for c in self.calls if c.method == method and pattern.fullmatch(c.path)]

    def react(self, full_name: str, comment_id: int, login: str, content: str = "+1") -> None:
        path = f"/repos/{full_name}/issues/comments/{comment_id}/reactions"
        row = {"id": self.next_id(), "content": content, "path": path, "user": _user(login)}
        self.repos[full_name].reactions.append(row)

    def add_review_comment(
        self,
        full_name: str,
        number: int,
        *,
        review_id: int,
        user: str,
        path: str,
        line: int,
        body: str,
        diff_hunk: str = "",
        start_line: int | None = None,
        thread: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An inline comment of review `review_id`: a new thread, or a reply in `thread`; the thread."""
        comment = {
            "databaseId": self.next_id(),
            "body": body,
            "path": path,
            "line": line,
            "startLine": start_line,
            "originalLine": line,
            "diffHunk": diff_hunk,
            "author": {"login": user},
            "pullRequestReview": {"databaseId": review_id},
        }
        if thread is None:
            thread = {
                "id": f"PRRT_{self.next_id()}",
                "isResolved": False,
                "path": path,
                "line": line,
                "startLine": start_line,
                "comments": [],
            }
            self.repos[full_name].review_threads.setdefault(number, []).append(thread)
        thread["comments"].append(comment)
        return thread

    def graphql_calls(self, operation: str) -> list[Call]:
        return [c for c in self.calls_to("POST", "/graphql") if operation in str((c.json or {}).get("query"))]

    def token_for(self, installation_id: int) -> str:
        return f"ghs_fake_token_{installation_id}"

    def next_id(self) -> int:
        return next(self._ids)

    # -- server -----------------------------------------------------------------------------------

    async def __aenter__(self) -> FakeGitHub:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.api_url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        auth = request.headers.get("Authorization")
        call = Call(request.method, request.path, body, dict(request.query), auth)
        self.calls.append(call)
        for failure in self._failures:
            if failure.times > 0 and failure.method == call.method and failure.pattern.fullmatch(call.path):
                failure.times -= 1
                return web.json_response(
                    {"message": "injected failure"}, status=failure.status, headers=failure.headers
                )
        for method, pattern, handler in ROUTES:
            if method == call.method and (match := pattern.fullmatch(call.path)):
                return await handler(self, match, call)
        return web.json_response({"message": "Not Found (fake GitHub has no such route)"}, status=404)

    def repo(self, match: re.Match[str]) -> FakeRepo:
        name = f"{match['owner']}/{match['name']}"
        if name not in self.repos:
            raise web.HTTPNotFound(text='{"message": "Not Found"}', content_type="application/json")
        return self.repos[name]


def _user(login: str, type_: str = "User") -> dict[str, Any]:
    return {"login": login, "type": type_, "id": abs(hash(login)) % 10**6}


def _pull_json(repo: FakeRepo, pull: dict[str, Any]) -> dict[str, Any]:
    tip = repo.git("rev-parse", f"refs/heads/{pull['head']['ref']}")
    if tip:  # the branch as pushed to the bare repository
        pull["head"] = {**pull["head"], "sha": tip.strip()}
    return {**pull, "html_url": f"https://github.invalid/{repo.full_name}/pull/{pull['number']}"}


# -- handlers -------------------------------------------------------------------------------------


async def app_info(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    return web.json_response({"id": gh.app_id, "slug": gh.app_slug, "name": gh.app_slug})


async def access_token(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    expires = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return web.json_response({"token": gh.token_for(int(m["id"])), "expires_at": expires}, status=201)


async def get_repo(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    repo = gh.repo(m)
    return web.json_response(
        {"full_name": repo.full_name, "clone_url": repo.clone_url, "default_branch": repo.default_branch}
    )


async def permission(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    perm = gh.repo(m).permissions.get(m["user"], "read")
    return web.json_response({"permission": perm, "role_name": perm, "user": _user(m["user"])})


async def get_issue(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    issue = gh.repo(m).issues.get(int(m["number"]))
    if issue is None:
        return web.json_response({"message": "Not Found"}, status=404)
    return web.json_response({"number": int(m["number"]), "state": "open", **issue})


async def list_comments(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    number = int(m["number"])
    rows = [c for c in gh.repo(m).comments.values() if c["issue_number"] == number]
    return web.json_response(rows)


async def create_comment(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    comment = {
        "id": gh.next_id(),
        "issue_number": int(m["number"]),
        "body": call.json["body"],
        "user": _user(f"{gh.app_slug}[bot]", "Bot"),
    }
    gh.repo(m).comments[comment["id"]] = comment
    return web.json_response(comment, status=201)


async def edit_comment(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    comment = gh.repo(m).comments.get(int(m["id"]))
    if comment is None:
        return web.json_response({"message": "Not Found"}, status=404)
    comment["body"] = call.json["body"]
    return web.json_response(comment)


async def reaction(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    row = {"id": gh.next_id(), "content": call.json["content"], "path": call.path}
    gh.repo(m).reactions.append(row)
    return web.json_response(row, status=201)


async def list_reactions(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    content = call.query.get("content")
    rows = [
        {"id": r["id"], "content": r["content"], "user": r.get("user") or _user(f"{gh.app_slug}[bot]", "Bot")}
        for r in gh.repo(m).reactions
        if r["path"] == call.path and (content is None or r["content"] == content)
    ]
    return web.json_response(rows)


async def list_pulls(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    repo = gh.repo(m)
    head = call.query.get("head", "")
    branch = head.split(":", 1)[-1]
    state = call.query.get("state", "open")
    rows = [
        _pull_json(repo, p)
        for p in repo.pulls.values()
        if (not head or p["head"]["ref"] == branch) and (state == "all" or p["state"] == state)
    ]
    return web.json_response(rows)


async def create_pull(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    repo, body = gh.repo(m), call.json
    if any(p["head"]["ref"] == body["head"] and p["state"] == "open" for p in repo.pulls.values()):
        return web.json_response({"message": "Validation Failed: A pull request already exists"}, status=422)
    number = len(repo.pulls) + 1
    pull = {
        "number": number,
        "node_id": f"PR_{repo.full_name}_{number}",
        "title": body["title"],
        "body": body.get("body"),
        "draft": bool(body.get("draft")),
        "state": "open",
        "head": {"ref": body["head"], "sha": "0" * 40},
        "base": {"ref": body["base"], "sha": "0" * 40},
    }
    repo.pulls[number] = pull
    return web.json_response(_pull_json(repo, pull), status=201)


async def get_pull(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    repo = gh.repo(m)
    pull = repo.pulls.get(int(m["number"]))
    if pull is None:
        return web.json_response({"message": "Not Found"}, status=404)
    if call.method == "PATCH":
        pull.update({k: v for k, v in call.json.items() if k in ("title", "body", "state", "base")})
    return web.json_response(_pull_json(repo, pull))


async def review_comments(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    return web.json_response(gh.repo(m).review_comments.get(int(m["review"]), []))


async def create_check_run(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    run = {"id": gh.next_id(), **call.json}
    gh.repo(m).check_runs[run["id"]] = run
    return web.json_response(run, status=201)


async def update_check_run(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    run = gh.repo(m).check_runs.get(int(m["id"]))
    if run is None:
        return web.json_response({"message": "Not Found"}, status=404)
    run.update(call.json)
    return web.json_response(run)


async def graphql(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    query, variables = str(call.json.get("query", "")), call.json.get("variables") or {}
    if "reviewThreads" in query:
        return _review_threads(gh, variables)
    if "resolveReviewThread" in query:
        return _resolve_thread(gh, str(variables.get("threadId")))
    node_id = variables.get("id")
    for repo in gh.repos.values():
        for pull in repo.pulls.values():
            if pull["node_id"] == node_id:
                pull["draft"] = "convertPullRequestToDraft" in call.json["query"]
                return web.json_response({"data": {"result": {"clientMutationId": None}}})
    return web.json_response({"data": None, "errors": [{"message": "Could not resolve to a node"}]})


def _review_threads(gh: FakeGitHub, variables: dict[str, Any]) -> web.Response:
    repo = gh.repos.get(f"{variables.get('owner')}/{variables.get('name')}")
    if repo is None or int(variables.get("number", 0)) not in repo.pulls:
        return web.json_response(
            {"data": None, "errors": [{"message": "Could not resolve to a PullRequest"}]}
        )
    threads = [
        {**t, "comments": {"nodes": t["comments"]}}
        for t in repo.review_threads.get(int(variables["number"]), [])
    ]
    page = {"hasNextPage": False, "endCursor": None}
    pull = {"reviewThreads": {"pageInfo": page, "nodes": threads}}
    return web.json_response({"data": {"repository": {"pullRequest": pull}}})


def _resolve_thread(gh: FakeGitHub, thread_id: str) -> web.Response:
    for repo in gh.repos.values():
        for threads in repo.review_threads.values():
            for thread in threads:
                if thread["id"] == thread_id:
                    thread["isResolved"] = True
                    resolved = {"thread": {"id": thread_id, "isResolved": True}}
                    return web.json_response({"data": {"resolveReviewThread": resolved}})
    return web.json_response(
        {"data": None, "errors": [{"message": f"Could not resolve to a node {thread_id}"}]}
    )


async def list_review_comments(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    rows = [
        {"id": c["databaseId"], "body": c["body"], "path": c["path"], "line": c["line"],
         "in_reply_to_id": c.get("in_reply_to_id")}
        for thread in gh.repo(m).review_threads.get(int(m["number"]), [])
        for c in thread["comments"]
    ]  # fmt: skip
    return web.json_response(rows)


async def review_reply(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    repo, target = gh.repo(m), int(m["id"])
    for thread in repo.review_threads.get(int(m["number"]), []):
        if any(c["databaseId"] == target for c in thread["comments"]):
            first = thread["comments"][0]
            reply = {
                "databaseId": gh.next_id(),
                "body": call.json["body"],
                "path": first["path"],
                "line": first["line"],
                "startLine": first["startLine"],
                "originalLine": first["originalLine"],
                "diffHunk": first["diffHunk"],
                "author": {"login": f"{gh.app_slug}[bot]"},
                "pullRequestReview": {"databaseId": gh.next_id()},
                "in_reply_to_id": target,
            }
            thread["comments"].append(reply)
            rest = {"id": reply["databaseId"], "body": reply["body"], "in_reply_to_id": target}
            return web.json_response(rest, status=201)
    return web.json_response({"message": "Not Found"}, status=404)


async def suite_check_runs(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    suite = int(m["id"])
    runs = [r for r in gh.repo(m).ci_runs.values() if (r.get("check_suite") or {}).get("id") == suite]
    return web.json_response({"total_count": len(runs), "check_runs": runs})


async def annotations(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    return web.json_response(gh.repo(m).annotations.get(int(m["id"]), []))


async def job_logs(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    if int(m["id"]) not in gh.repo(m).job_logs:
        return web.json_response({"message": "Not Found"}, status=404)
    url = f"{gh.api_url}/_downloads/logs/{m['owner']}/{m['name']}/{m['id']}?sig=signed"
    raise web.HTTPFound(url)


async def download_logs(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    text = gh.repo(m).job_logs.get(int(m["id"]))
    if text is None:
        return web.json_response({"message": "BlobNotFound"}, status=404)
    return web.Response(text=text, content_type="text/plain")


async def contents(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    repo = gh.repo(m)
    text = repo.git("show", f"{call.query.get('ref') or repo.default_branch}:{m['path']}")
    if text is None:
        return web.json_response({"message": "Not Found"}, status=404)
    encoded = base64.b64encode(text.encode()).decode()
    return web.json_response({"type": "file", "path": m["path"], "encoding": "base64", "content": encoded})


async def manifest_conversion(gh: FakeGitHub, m: re.Match[str], call: Call) -> web.Response:
    result = gh.manifest_codes.pop(m["code"], None)
    if result is None:
        return web.json_response({"message": "Not Found"}, status=404)
    return web.json_response(result, status=201)


_REPO = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], Handler]] = [
    (method, re.compile(path), handler)
    for method, path, handler in [
        ("GET", r"/app", app_info),
        ("POST", r"/app/installations/(?P<id>\d+)/access_tokens", access_token),
        ("POST", r"/app-manifests/(?P<code>\w+)/conversions", manifest_conversion),
        ("POST", r"/graphql", graphql),
        ("GET", _REPO, get_repo),
        ("GET", _REPO + r"/collaborators/(?P<user>[^/]+)/permission", permission),
        ("GET", _REPO + r"/issues/(?P<number>\d+)", get_issue),
        ("GET", _REPO + r"/issues/(?P<number>\d+)/comments", list_comments),
        ("POST", _REPO + r"/issues/(?P<number>\d+)/comments", create_comment),
        ("PATCH", _REPO + r"/issues/comments/(?P<id>\d+)", edit_comment),
        ("POST", _REPO + r"/issues/(?P<number>\d+)/reactions", reaction),
        ("POST", _REPO + r"/issues/comments/(?P<id>\d+)/reactions", reaction),
        ("GET", _REPO + r"/issues/comments/(?P<id>\d+)/reactions", list_reactions),
        ("GET", _REPO + r"/pulls", list_pulls),
        ("POST", _REPO + r"/pulls", create_pull),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)", get_pull),
        ("PATCH", _REPO + r"/pulls/(?P<number>\d+)", get_pull),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)/reviews/(?P<review>\d+)/comments", review_comments),
        ("GET", _REPO + r"/pulls/(?P<number>\d+)/comments", list_review_comments),
        ("POST", _REPO + r"/pulls/(?P<number>\d+)/comments/(?P<id>\d+)/replies", review_reply),
        ("POST", _REPO + r"/check-runs", create_check_run),
        ("PATCH", _REPO + r"/check-runs/(?P<id>\d+)", update_check_run),
        ("GET", _REPO + r"/check-suites/(?P<id>\d+)/check-runs", suite_check_runs),
        ("GET", _REPO + r"/check-runs/(?P<id>\d+)/annotations", annotations),
        ("GET", _REPO + r"/actions/jobs/(?P<id>\d+)/logs", job_logs),
        ("GET", r"/_downloads/logs/(?P<owner>[^/]+)/(?P<name>[^/]+)/(?P<id>\d+)", download_logs),
        ("GET", _REPO + r"/contents/(?P<path>.+)", contents),
    ]
]
