"""The HTML pages: a job's page, the operators' list with its login, and the Cancel and Retry buttons."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from engine import events
from engine.pipeline.actions import ActionRefused, cancel_job, retry_job
from engine.store.jobs import JobNotFound
from engine.store.models import JobKind, JobState
from engine.store.waits import waiting_info
from engine.views import JobView
from web.access import OPERATOR_COOKIE, safe_next
from web.context import WebContext
from web.present import (
    budget_percent,
    cost_chart,
    fields_of,
    fingerprint,
    iso,
    split_diff,
    tail,
)

log = logging.getLogger(__name__)

TRIGGERS = ("github_issue", "github_comment", "github_review", "github_check", "slack", "cli")
OPERATOR = "operator (web)"
Token = Annotated[str | None, Query(alias="t", max_length=200)]


def job_url(job_id: str, token: str | None, suffix: str = "") -> str:
    return f"/jobs/{job_id}{suffix}" + (f"?{urlencode({'t': token})}" if token else "")


def plan_items(job: JobView) -> list[dict[str, Any]]:
    """The plan as a checklist: the planner's steps, each with the state of the step that carries it out."""
    states = {s.index: s.state for s in job.steps}
    planned = (job.plan or {}).get("steps") or []
    titles = [str(item.get("title", "")) if isinstance(item, dict) else str(item) for item in planned]
    if not titles:
        return [{"index": s.index, "title": s.title, "state": s.state} for s in job.steps]
    return [{"index": i, "title": title, "state": states.get(i, "pending")} for i, title in enumerate(titles)]


def instructions_read(job: JobView) -> list[dict[str, Any]]:
    """What this job was told: the repository's instruction files each `instructions` event listed."""
    told = []
    for event in job.events:
        if event.type == events.INSTRUCTIONS:
            files = event.data.get("files")
            step = event.data.get("step_index")
            where = "the whole job" if step is None else f"step {int(str(step)) + 1}"
            told.append({"where": where, "files": files if isinstance(files, list) else []})
    return told


def conversation(job: JobView) -> list[dict[str, str]]:
    """The job's questions and plans put to people, and their answers and approvals, in order."""
    said = []
    for event in job.events:
        data = event.data
        if event.type == events.QUESTION:
            said.append({"kind": "question", "who": "autodev asked", "text": str(data.get("text", ""))})
        elif event.type == events.AWAITING_APPROVAL:
            said.append({"kind": "approval", "who": "autodev asked for approval of the plan", "text": ""})
        elif event.type == events.ANSWERED:
            who = f"{data.get('by')} answered ({data.get('via')})"
            said.append({"kind": "answered", "who": who, "text": str(data.get("text", ""))})
        elif event.type == events.APPROVED:
            who = f"{data.get('by')} approved the plan ({data.get('via')})"
            said.append({"kind": "approved", "who": who, "text": str(data.get("amendment") or "")})
    return said


def waiting_behind(job: JobView) -> str | None:
    """What a queued job waits for on its pull request's branch (one conversation per PR): the latest
    `waiting_behind` event, unless the job has changed state since."""
    if job.state is not JobState.QUEUED:
        return None
    for event in reversed(job.events):
        if event.type == events.STATE:
            return None
        if event.type == events.WAITING_BEHIND:
            text = str(event.data.get("text") or f"waiting for job {event.data.get('job_id')} on this branch")
            return text[:1].upper() + text[1:]
    return None


def job_page_values(ctx: WebContext, request: Request, job: JobView, token: str | None) -> dict[str, Any]:
    operator = ctx.access.operator(request) is not None
    steps = [
        {"step": s, "files": split_diff(s.diff), "tail": tail(s.test_output)}
        for s in job.steps
        if s.state != "pending" or s.diff or s.test_output
    ]
    last_seq = max((e.seq for e in job.events), default=0)
    # Only a token-holder's links carry the token; an operator's work from the cookie alone.
    link_token = None if operator and not token else token
    return {
        "job": job,
        "token": link_token,
        "operator": operator,
        "csrf": ctx.access.csrf_token() if operator else "",
        "can_cancel": operator and not job.terminal,
        "can_retry": operator
        and job.terminal
        and not (job.state is JobState.SUCCEEDED and job.kind != JobKind.REVISE),
        "elapsed": job.elapsed_seconds(datetime.now(UTC)),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "budget_percent": budget_percent(job),
        "chart": cost_chart(job),
        "plan": plan_items(job),
        "steps": steps,
        "events": [{"seq": e.seq, "type": e.type, "fields": fields_of(e.data)} for e in job.events],
        "diagnostics": [fields_of(d) for d in job.context_diagnostics],
        "told": instructions_read(job),
        "conversation": conversation(job),
        "waiting": waiting_info(job.origin) if job.state is JobState.WAITING else None,
        "behind": waiting_behind(job),
        "stream_url": job_url(job.id, link_token, "/stream")
        + ("&" if link_token else "?")
        + urlencode({"since": fingerprint(job, last_seq)}),
        "action_url": lambda action: f"/jobs/{job.id}/{action}",
        "notice": None,
    }


def add_page_routes(router: APIRouter, ctx: WebContext) -> None:
    @router.get("/jobs")
    async def job_list(
        request: Request,
        repo: Annotated[str | None, Query(max_length=200)] = None,
        state: Annotated[str | None, Query(max_length=20)] = None,
        trigger: Annotated[str | None, Query(max_length=32)] = None,
    ) -> Response:
        if not ctx.access.operators_enabled:
            return ctx.render("closed.html", 403)
        if ctx.access.operator(request) is None:
            return ctx.render("login.html", 401, error=None, next=str(request.url.path))
        filters = {"repo": (repo or "").strip(), "state": state or "", "trigger": trigger or ""}
        error = None
        if filters["state"] and filters["state"] not in {s.value for s in JobState}:
            error = f"Unknown state {filters['state']!r}; showing every state."
            filters["state"] = ""
        jobs = await ctx.store.list_jobs(
            repo=filters["repo"] or None, state=filters["state"] or None, trigger=filters["trigger"] or None
        )
        return ctx.render(
            "jobs.html",
            jobs=jobs,
            filters=filters,
            error=error,
            states=[s.value for s in JobState],
            triggers=TRIGGERS,
            csrf=ctx.access.csrf_token(),
        )

    @router.post("/jobs/login")
    async def login(
        token: Annotated[str, Form(max_length=500)] = "", next: Annotated[str, Form(max_length=500)] = ""
    ) -> Response:
        if not ctx.access.operators_enabled:
            return ctx.render("closed.html", 403)
        if not ctx.access.password_ok(token):
            log.info("operator login refused")
            return ctx.render("login.html", 401, error="That is not the operator token.", next=next)
        response = RedirectResponse(safe_next(next), status_code=303)
        response.set_cookie(
            OPERATOR_COOKIE,
            ctx.access.session_value(),
            max_age=12 * 3600,
            httponly=True,
            secure=ctx.access.secure_cookie,
            samesite="strict",
        )
        return response

    @router.post("/jobs/logout")
    async def logout() -> Response:
        response = RedirectResponse("/jobs", status_code=303)
        response.delete_cookie(OPERATOR_COOKIE, httponly=True, samesite="strict")
        return response

    @router.get("/jobs/{job_id}")
    async def job_page(request: Request, job_id: str, t: Token = None) -> Response:
        job = await ctx.visible_job(request, job_id, t)
        if job is None:
            return ctx.not_found(request)
        return ctx.render("job.html", **job_page_values(ctx, request, job, t))

    @router.post("/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: str, csrf: Annotated[str, Form()] = "") -> Response:
        return await _act(ctx, request, job_id, csrf, "cancel")

    @router.post("/jobs/{job_id}/retry")
    async def retry(request: Request, job_id: str, csrf: Annotated[str, Form()] = "") -> Response:
        return await _act(ctx, request, job_id, csrf, "retry")


async def _act(ctx: WebContext, request: Request, job_id: str, csrf: str, action: str) -> Response:
    if ctx.access.operator(request) is None:
        return ctx.not_found(request)
    if not ctx.access.may_act(request, csrf):
        return ctx.render("refused.html", 403, message="The form was stale or not sent by this site; reload.")
    try:
        if action == "cancel":
            await cancel_job(ctx.store, ctx.queue, job_id, by=OPERATOR)
            target = job_id
        else:
            new_job, _ = await retry_job(ctx.store, ctx.queue, job_id, by=OPERATOR)
            target = new_job.id
    except JobNotFound:
        return ctx.not_found(request)
    except ActionRefused as refused:
        return await _job_with_notice(ctx, request, job_id, str(refused), 409)
    except Exception:
        # retry_job records the new job before it enqueues; the reconciler queues a job left behind.
        log.exception("job action failed", extra={"job_id": job_id, "action": action})
        notice = f"The {action} could not reach the job queue; the job is recorded and will be picked up."
        return await _job_with_notice(ctx, request, job_id, notice, 503)
    log.info("job %s by operator", action, extra={"job_id": job_id})
    return RedirectResponse(f"/jobs/{target}", status_code=303)


async def _job_with_notice(
    ctx: WebContext, request: Request, job_id: str, notice: str, status: int
) -> Response:
    job = await ctx.visible_job(request, job_id, None)
    if job is None:
        return ctx.not_found(request)
    values = job_page_values(ctx, request, job, None)
    values["notice"] = notice
    return ctx.render("job.html", status, **values)
