"""The JSON API and the live channel (Server-Sent Events), under the same access rules as the pages."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response, StreamingResponse

from engine.store.jobs import JobNotFound
from engine.store.models import JobState
from engine.views import JobView
from web.context import WebContext
from web.present import fingerprint

log = logging.getLogger(__name__)

Token = Annotated[str | None, Query(alias="t", max_length=200)]
NOT_FOUND = {"detail": "job not found"}
KEEPALIVE_SECONDS = 15.0
# A stream ends after a while and the browser reconnects on its own, so no connection is held forever.
STREAM_MAX_SECONDS = 300.0


def job_json(job: JobView) -> dict[str, Any]:
    data = dataclasses.asdict(job)
    data.pop("access_token")  # the link already holds it; an operator's API answer must not hand it out
    data["terminal"] = job.terminal
    data["steps_done"] = job.steps_done
    data["elapsed_seconds"] = job.elapsed_seconds(datetime.now(UTC))
    return jsonable_encoder(data)


def add_api_routes(router: APIRouter, ctx: WebContext) -> None:
    @router.get("/api/jobs")
    async def api_list(
        request: Request,
        repo: Annotated[str | None, Query(max_length=200)] = None,
        state: JobState | None = None,
        trigger: Annotated[str | None, Query(max_length=32)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> Response:
        if ctx.access.operator(request) is None:
            if not ctx.access.operators_enabled:
                return JSONResponse({"detail": "OPERATOR_TOKEN is not set"}, status_code=403)
            return JSONResponse({"detail": "operator access required"}, status_code=401)
        jobs = await ctx.store.list_jobs(
            repo=repo, state=state.value if state else None, trigger=trigger, limit=limit
        )
        fields = ("id", "repo", "title", "trigger", "requester", "state", "phase", "cost_usd", "pr_url")
        rows = [{name: getattr(j, name) for name in fields} | {"created_at": j.created_at} for j in jobs]
        return JSONResponse(jsonable_encoder({"jobs": rows}))

    @router.get("/api/jobs/{job_id}")
    async def api_job(request: Request, job_id: str, t: Token = None) -> Response:
        job = await ctx.visible_job(request, job_id, t)
        if job is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        return JSONResponse(job_json(job), headers={"Cache-Control": "no-store"})

    @router.get("/api/jobs/{job_id}/events")
    async def api_events(
        request: Request, job_id: str, t: Token = None, after: Annotated[int, Query(ge=0)] = 0
    ) -> Response:
        job = await ctx.visible_job(request, job_id, t, with_events=False)
        if job is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        events = await ctx.store.events(job_id, after=after)
        body = {
            "job_id": job_id,
            "state": job.state.value,
            "events": [dataclasses.asdict(e) for e in events],
            "last_seq": events[-1].seq if events else after,
        }
        return JSONResponse(jsonable_encoder(body), headers={"Cache-Control": "no-store"})

    @router.get("/jobs/{job_id}/stream")
    async def stream(
        request: Request,
        job_id: str,
        t: Token = None,
        since: Annotated[str, Query(max_length=64)] = "",
    ) -> Response:
        job = await ctx.visible_job(request, job_id, t, with_events=False)
        if job is None:
            return JSONResponse(NOT_FOUND, status_code=404)
        return StreamingResponse(
            changes(ctx, request, job_id, since),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def changes(ctx: WebContext, request: Request, job_id: str, since: str) -> AsyncIterator[str]:
    """`change` whenever what the page shows changed (the page then fetches itself again), `end` once
    the job has ended. Polls the store: steps and costs change without an event, so events would miss them."""
    seen = since
    last_seq = 0
    started = last_sent = time.monotonic()
    yield "retry: 3000\n\n"
    while time.monotonic() - started < STREAM_MAX_SECONDS:
        try:
            job = await ctx.store.view(job_id, with_events=False)
            last_seq = max([e.seq for e in await ctx.store.events(job_id, after=last_seq)], default=last_seq)
        except JobNotFound:
            yield sse("end", {"state": "gone"})
            return
        current = fingerprint(job, last_seq)
        if current != seen:
            seen = current
            last_sent = time.monotonic()
            yield sse("change", {"seq": last_seq, "state": job.state.value, "phase": job.phase})
        if job.terminal:
            yield sse("end", {"state": job.state.value})
            return
        if time.monotonic() - last_sent > KEEPALIVE_SECONDS:
            last_sent = time.monotonic()
            yield ": keepalive\n\n"
        if await request.is_disconnected():
            return
        await asyncio.sleep(ctx.poll_interval)
