"""A failing CI check on a pull request autodev opened becomes a fix round: one revise job per head commit.

The webhook keeps (`worth_storing_ci`) a completed check suite or check run that failed or timed out on a
branch autodev opened, unless it is autodev's own check run; no GitHub call there. The worker (`CiFailures`)
then finds the pull request, checks that the failing commit is its head and one autodev pushed, reads the
repository's `ci_fix_rounds` and the failing checks (their annotations, and for GitHub Actions the tail of
the job's log, masked), and submits one revise job, keyed by repository, pull request and head commit, so a
check suite and its check runs, and their redeliveries, make one job. Whether it runs now or waits behind a
job on the branch, and which waiting request it replaces, is the engine's rule (engine.store.conversations).
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from githubkit.exception import RequestFailed

from engine.errors import PermanentFailure
from engine.redact import Redactor
from engine.repo_config import CONFIG_PATH, parse_repo_config
from engine.store.conversations import CI_TRIGGER
from engine.store.intake import Intake
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import JobKind
from engine.workspace.git import BRANCH_PREFIX
from github_app.client import GitHubApi, GitHubUnavailable
from github_app.payloads import CheckRun, CheckRunEvent, CheckSuite, CheckSuiteEvent, Event
from github_app.replies import GitHubFailed, Replies

log = logging.getLogger(__name__)

FAILED = frozenset({"failure", "timed_out"})
ACTIONS_APP = "github-actions"
MAX_CHECKS = 5  # failing checks described in one task
MAX_ANNOTATIONS = 20  # per check
LOG_MAX_BYTES = 4 * 1024 * 1024  # read at most this much of a job's log…
LOG_KEEP_BYTES = 64 * 1024  # …keeping its tail…
LOG_KEEP_LINES = 60  # …and of that, these last lines
# GitHub Actions prefixes each log line with a timestamp; the model needs the text.
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")


def own_check_run(run: CheckRun) -> bool:
    return run.name == "autodev" and bool(run.external_id)


def worth_storing_ci(event: CheckSuiteEvent | CheckRunEvent, *, app_id: int | None = None) -> str | None:
    """None when a completed suite or run failed on autodev's branch (stored for the worker), else why not.
    `app_id`: this App's, whose own suites (its check runs' results) are not CI."""
    result: CheckSuite | CheckRun
    if isinstance(event, CheckSuiteEvent):
        result, branch = event.check_suite, event.check_suite.head_branch
    else:
        result = event.check_run
        branch = event.check_run.check_suite.head_branch if event.check_run.check_suite else None
        if own_check_run(event.check_run):
            return "autodev's own check run"
    if app_id is not None and result.app is not None and result.app.id == app_id:
        return "autodev's own check suite"
    if event.action != "completed":
        return f"{'check_suite' if isinstance(event, CheckSuiteEvent) else 'check_run'}.{event.action}"
    if result.conclusion not in FAILED:
        return f"conclusion {result.conclusion}"
    refs = result.pull_requests
    if not (branch or "").startswith(BRANCH_PREFIX) and not any(
        p.head.ref.startswith(BRANCH_PREFIX) for p in refs
    ):
        return "not autodev's pull request"
    return None


@dataclass
class FailedCheck:
    name: str
    conclusion: str
    url: str
    annotations: list[str] = field(default_factory=list)
    log_tail: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [f"### {self.name} ({self.conclusion})" + (f"\n{self.url}" if self.url else "")]
        if self.annotations:
            parts.append("Annotations:\n" + "\n".join(f"- {a}" for a in self.annotations))
        if self.log_tail:
            parts.append("End of the job's log:\n```\n" + "\n".join(self.log_tail) + "\n```")
        return "\n\n".join(parts)


class CiFailures:
    """What a stored CI failure means: a fix job, one "rounds used up" comment, or nothing (and why)."""

    def __init__(
        self,
        api: GitHubApi,
        store: JobStore,
        intake: Intake[JobRequest],
        replies: Replies,
        secrets: list[str],
    ) -> None:
        self.api = api
        self.store = store
        self.intake = intake
        self.replies = replies
        self.mask = Redactor(secrets)

    async def handle(self, event: CheckSuiteEvent | CheckRunEvent, delivery: str) -> tuple[str, str | None]:
        assert event.repository is not None and event.installation is not None  # checked by the webhook
        repo, installation = event.repository.full_name, event.installation.id
        suite_id: int | None
        if isinstance(event, CheckSuiteEvent):
            suite_id, sha, refs = (
                event.check_suite.id,
                event.check_suite.head_sha,
                event.check_suite.pull_requests,
            )
            branch = event.check_suite.head_branch
        else:
            suite = event.check_run.check_suite
            suite_id, sha, refs = (
                (suite.id if suite else None),
                event.check_run.head_sha,
                event.check_run.pull_requests,
            )
            branch = suite.head_branch if suite else None
        for ref in refs:  # a redelivery, or the suite after its check run: answered without asking GitHub
            known = await self.store.find_by_dedupe_key(f"github-ci:{repo}#{ref.number}@{sha}")
            if known is not None:
                return "fix already submitted for this commit", known.id
        pull = await self.pull_request(repo, installation, [p.number for p in refs], branch)
        if pull is None:
            return "no open pull request for the failing commit", None
        number, head = int(pull["number"]), pull["head"]
        if not str(head["ref"]).startswith(BRANCH_PREFIX):
            return "not autodev's pull request", None
        if head.get("sha") != sha:
            return f"stale: #{number}'s head is no longer {sha[:12]}", None
        if not await self.store.pushed_by_autodev(repo, sha):
            return f"{sha[:12]} was not pushed by autodev", None
        key = f"github-ci:{repo}#{number}@{sha}"
        if (existing := await self.store.find_by_dedupe_key(key)) is not None:
            return "fix already submitted for this commit", existing.id
        if (by := await self.store.ci_fixes_stopped_by(repo, number)) is not None:
            return f"CI fixes stopped on #{number} by {by}", None
        rounds = await self.rounds(repo, installation, str(pull["base"]["ref"]))
        if rounds == 0:
            return "CI fixes are off for this repository (ci_fix_rounds: 0)", None
        checks = await self.failed_checks(repo, installation, event, suite_id)
        used = await self.store.ci_rounds_used(repo, number)
        if used >= rounds:
            return await self.rounds_used_up(repo, installation, number, rounds, checks), None
        names = ", ".join(c.name for c in checks) or "CI"
        summary = "\n\n".join(c.describe() for c in checks) or "(GitHub listed no failing check runs)"
        task = (
            f"The CI of pull request #{number} ({pull['title']}) fails on its head commit {sha}. Fix the "
            f"code so that these checks pass; do not change the CI workflows.\n\n{self.mask(summary)}"
        )
        label = f"CI fix {used + 1} of {rounds}"
        request = JobRequest(
            dedupe_key=key,
            trigger=CI_TRIGGER,
            repo=repo,
            title=f"Fix CI on #{number}: {names}"[:300],
            task=task,
            requester=event.sender.login if event.sender else "github",
            kind=JobKind.REVISE,
            installation_id=installation,
            base_branch=str(pull["base"]["ref"]),
            branch=str(head["ref"]),
            pr_number=number,
            origin={"issue_number": number, "round": label, "ci_fix": {"sha": sha, "checks": names}},
        )
        job_id, created = await self.intake.submit(request)
        return (f"{label} submitted" if created else "fix already submitted for this commit"), job_id

    async def pull_request(
        self, repo: str, installation: int, numbers: list[int], branch: str | None
    ) -> dict[str, Any] | None:
        """The open pull request of the failing commit, as GitHub has it now (its head may have moved)."""
        if not numbers and branch:
            owner = repo.split("/", 1)[0]
            rows = await self.call(
                f"listing the pull requests of {branch}", "GET", repo, installation, f"/repos/{repo}/pulls",
                params={"head": f"{owner}:{branch}", "state": "open"},
            )  # fmt: skip
            numbers = [int(row["number"]) for row in rows or []]
        for number in numbers[:3]:
            pull = await self.call(
                f"reading pull request #{number}", "GET", repo, installation, f"/repos/{repo}/pulls/{number}"
            )
            if pull and pull.get("state", "open") == "open":
                return dict(pull)
        return None

    async def rounds(self, repo: str, installation: int, base: str) -> int:
        """`ci_fix_rounds` from the base branch's .github/autodev.yml (missing: the default; broken: 0)."""
        try:
            data = await self.api.request(
                installation, "GET", f"/repos/{repo}/contents/{CONFIG_PATH}", params={"ref": base}
            )
        except RequestFailed as exc:
            if exc.response.status_code != 404:
                raise GitHubFailed(f"reading {CONFIG_PATH}", exc) from exc
            data = None
        except GitHubUnavailable as exc:
            raise GitHubFailed(f"reading {CONFIG_PATH}", exc) from exc
        text = (
            base64.b64decode(data["content"]).decode(errors="replace")
            if data and data.get("content")
            else None
        )
        try:
            return parse_repo_config(text).ci_fix_rounds
        except PermanentFailure as exc:
            log.warning("no CI fix on %s: %s", repo, exc.reason)
            return 0

    async def failed_checks(
        self, repo: str, installation: int, event: CheckSuiteEvent | CheckRunEvent, suite_id: int | None
    ) -> list[FailedCheck]:
        """The failing check runs of the suite (else the one in the event), with annotations and log tails."""
        runs: list[dict[str, Any]] = []
        if suite_id is not None:
            data = await self.call(
                "listing the suite's check runs", "GET", repo, installation,
                f"/repos/{repo}/check-suites/{suite_id}/check-runs",
                params={"filter": "latest", "per_page": 100},
            )  # fmt: skip
            runs = list((data or {}).get("check_runs") or [])
        if not runs and isinstance(event, CheckRunEvent):
            runs = [event.check_run.model_dump()]
        failed = [
            CheckRun.model_validate(run)
            for run in runs
            if run.get("conclusion") in FAILED and not own_check_run(CheckRun.model_validate(run))
        ]
        checks: list[FailedCheck] = []
        for run in failed[:MAX_CHECKS]:
            check = FailedCheck(run.name or f"check run {run.id}", str(run.conclusion), run.details_url or "")
            check.annotations = await self.annotations(repo, installation, run.id)
            if run.app is not None and run.app.slug == ACTIONS_APP:
                check.log_tail = await self.log_tail(repo, installation, run.id)
            checks.append(check)
        return checks

    async def annotations(self, repo: str, installation: int, run_id: int) -> list[str]:
        path = f"/repos/{repo}/check-runs/{run_id}/annotations"
        try:
            rows = await self.api.request(installation, "GET", path, params={"per_page": MAX_ANNOTATIONS})
        except (RequestFailed, GitHubUnavailable) as exc:
            log.warning("could not read the annotations of check run %s: %s", run_id, exc)
            return []
        found = []
        for row in (rows or [])[:MAX_ANNOTATIONS]:
            where = f"{row.get('path', '')}:{row.get('start_line', '')}"
            title = f" {row['title']}:" if row.get("title") else ""
            found.append(
                f"{where} [{row.get('annotation_level', '')}]{title} {row.get('message', '')}".strip()
            )
        return found

    async def log_tail(self, repo: str, installation: int, job_id: int) -> list[str]:
        """The last lines of a GitHub Actions job's log (for Actions, the check run's id is the job's)."""
        path = f"/repos/{repo}/actions/jobs/{job_id}/logs"
        try:
            raw = await self.api.download_tail(
                installation, path, max_bytes=LOG_MAX_BYTES, keep_bytes=LOG_KEEP_BYTES
            )
        except (RequestFailed, GitHubUnavailable) as exc:
            log.warning("could not read the log of job %s: %s", job_id, exc)
            return [f"(the log could not be read: {exc})"]
        lines = raw.decode(errors="replace").splitlines()
        if len(raw) >= LOG_KEEP_BYTES:
            lines = lines[1:]  # cut by the tail's start
        return [self.mask(_TIMESTAMP.sub("", line)) for line in lines[-LOG_KEEP_LINES:]]

    async def rounds_used_up(
        self, repo: str, installation: int, number: int, rounds: int, checks: list[FailedCheck]
    ) -> str:
        if not await self.store.claim_exhausted_note(repo, number):
            return "CI fix rounds used up (already said)"
        names = ", ".join(c.name for c in checks) or "CI"
        last = "\n".join(
            f"- {c.name}: " + (c.annotations[0] if c.annotations else c.conclusion) for c in checks
        )
        text = (
            f"CI still fails ({names}) after {rounds} fix round{'s' if rounds != 1 else ''}, so I stop "
            f"trying here. The last failure:\n\n{self.mask(last) or '- ' + names}\n\n"
            "A revise comment still works; `ci_fix_rounds` in .github/autodev.yml sets the number of rounds."
        )
        try:
            await self.replies.post(repo, installation, number, text)
        except GitHubFailed:
            await self.store.release_exhausted_note(repo, number)
            raise
        return "CI fix rounds used up: said so on the pull request"

    async def call(
        self, doing: str, method: str, repo: str, installation: int, path: str, **kwargs: Any
    ) -> Any:
        try:
            return await self.api.request(installation, method, path, **kwargs)
        except (RequestFailed, GitHubUnavailable) as exc:
            raise GitHubFailed(doing, exc) from exc


def is_ci_result(event: Event) -> bool:
    """A check suite, or a check run other than autodev's own: bots send these, and may (autodev's push)."""
    if isinstance(event, CheckSuiteEvent):
        return True
    return isinstance(event, CheckRunEvent) and not own_check_run(event.check_run)
