"""`/orchestrate …` text → a command, or a `CommandError` that tells the user what is wrong."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.llm.money import usd

REPO_RE = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:#(?P<issue>\d+))?$")
OPTION_RE = re.compile(r"(?:^|\s)--(?P<name>budget|base)(?:=|\s+)(?P<value>\S+)")
APPROVE_RE = re.compile(r"(?:^|\s)--approve(?=\s|$)")
BRANCH_RE = re.compile(r"^[A-Za-z0-9._/-]+$")
SUBJECT_RE = re.compile(r"^<?[#@]?(?P<id>[CGUW][A-Z0-9]{2,})(?:\|[^>]*)?>?$")
JOB_REF_RE = re.compile(r"^[0-9a-f]{6,32}$")
MAX_TITLE = 80

USAGE = """\
*Usage*
• `/orchestrate owner/repo <task>` — start a job; progress arrives in a thread
• `/orchestrate owner/repo#123` — take issue #123 as the task
  options: `--budget 2.50` (USD) · `--base <branch>` · `--approve` (the plan waits for your Approve)
• `/orchestrate status [job]` — your recent jobs, or one job
• `/orchestrate cancel <job>` — stop a job
• `/orchestrate allow <#channel|@user> owner/repo [--follow]` · `revoke <#channel|@user> owner/repo` (admins)
• `/orchestrate help`"""


class CommandError(ValueError):
    """Bad input; the message is shown to the user as is."""


@dataclass(frozen=True, slots=True)
class StartJob:
    repo: str
    task: str
    title: str
    issue_number: int | None = None
    budget_usd: float | None = None
    base_branch: str | None = None
    approve: bool = False  # the plan waits for an Approve before coding starts


@dataclass(frozen=True, slots=True)
class ShowStatus:
    job_ref: str | None


@dataclass(frozen=True, slots=True)
class CancelJob:
    job_ref: str


@dataclass(frozen=True, slots=True)
class ShowHelp:
    pass


@dataclass(frozen=True, slots=True)
class ChangeGrant:
    subject: str
    repo: str
    follow: bool
    revoke: bool


Command = StartJob | ShowStatus | CancelJob | ShowHelp | ChangeGrant


def parse(text: str, *, max_budget_usd: float) -> Command:
    text = (text or "").strip()
    head, _, rest = text.partition(" ")
    rest = rest.strip()
    verb = head.lower()
    if verb in ("", "help"):
        return ShowHelp()
    if verb == "status":
        return ShowStatus(_job_ref(rest) if rest else None)
    if verb == "cancel":
        if not rest:
            raise CommandError("Which job? `/orchestrate cancel <job id>` (the id is in the job's message).")
        return CancelJob(_job_ref(rest))
    if verb in ("allow", "revoke"):
        return _grant(rest, revoke=verb == "revoke")
    return _start(head, rest, max_budget_usd=max_budget_usd)


def _start(head: str, rest: str, *, max_budget_usd: float) -> StartJob:
    match = REPO_RE.match(head)
    if match is None:
        raise CommandError(f"`{head}` is not `owner/repo` or `owner/repo#123`.\n\n{USAGE}")
    approve = APPROVE_RE.search(rest) is not None
    rest = APPROVE_RE.sub(" ", rest)
    options: dict[str, str] = {}
    for option in OPTION_RE.finditer(rest):
        options[option["name"]] = option["value"]
    task = re.sub(r"[ \t]{2,}", " ", OPTION_RE.sub(" ", rest)).strip()
    issue = int(match["issue"]) if match["issue"] else None
    if issue is None and not task:
        raise CommandError(f"Say what to do: `/orchestrate {head} <task>`, or name an issue: `{head}#123`.")
    budget = _budget(options["budget"], max_budget_usd) if "budget" in options else None
    base = _branch(options["base"]) if "base" in options else None
    if issue is not None:
        title = f"Issue #{issue}" + (f": {task}" if task else "")
        task = task or f"Resolve issue #{issue} of {match['repo']}."
    else:
        title = task
    first_line = title.splitlines()[0]
    title = first_line if len(first_line) <= MAX_TITLE else first_line[: MAX_TITLE - 1] + "…"
    return StartJob(
        repo=match["repo"],
        task=task,
        title=title,
        issue_number=issue,
        budget_usd=budget,
        base_branch=base,
        approve=approve,
    )


def _budget(raw: str, max_budget_usd: float) -> float:
    try:
        value = float(raw.lstrip("$"))
    except ValueError:
        raise CommandError(f"`--budget {raw}` is not a number of dollars, e.g. `--budget 2.50`.") from None
    if not 0 < value <= max_budget_usd:
        raise CommandError(f"`--budget` must be more than $0 and at most {usd(max_budget_usd)}.")
    return value


def _branch(raw: str) -> str:
    bad = (
        not BRANCH_RE.match(raw)
        or ".." in raw
        or raw.startswith(("-", "/", "."))
        or raw.endswith(("/", ".lock", "."))
        or "//" in raw
    )
    if bad:
        raise CommandError(f"`--base {raw}` is not a valid branch name.")
    return raw


def _job_ref(raw: str) -> str:
    ref = raw.split()[0].lower()
    if not JOB_REF_RE.match(ref):
        raise CommandError(f"`{raw.split()[0]}` is not a job id (the hex id shown in the job's message).")
    return ref


def _grant(rest: str, *, revoke: bool) -> ChangeGrant:
    words = rest.split()
    follow = "--follow" in words
    words = [w for w in words if w != "--follow"]
    verb = "revoke" if revoke else "allow"
    if len(words) != 2:
        raise CommandError(
            f"Usage: `/orchestrate {verb} <#channel|@user> owner/repo`" + ("" if revoke else " [--follow]")
        )
    subject = SUBJECT_RE.match(words[0])
    if subject is None:
        raise CommandError(f"`{words[0]}` is not a channel or user (pick one with # or @).")
    repo = words[1]
    if "#" in repo or (repo != "*" and REPO_RE.match(repo) is None):
        raise CommandError(f"`{repo}` is not `owner/repo` (or `*` for every repository).")
    return ChangeGrant(subject=subject["id"], repo=repo, follow=follow, revoke=revoke)
