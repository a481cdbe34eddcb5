"""One execution of one job as the pipeline sees it: its dependencies, its events, its cancel checks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine import events
from engine.errors import JobCancelled, ReporterBehind
from engine.ports import CodeHost, JobEventView, JobQueue, Reporter
from engine.settings import Settings
from engine.store.jobs import JobStore
from engine.store.models import CostEntry, Job
from engine.views import JobView

log = logging.getLogger(__name__)

Pipeline = Callable[["JobRun"], Awaitable[None]]
# How old a read of the cancel flag may be for the checks between a model's tool calls and test runs.
CANCEL_RECHECK_S = 1.0


@dataclass
class EngineDeps:
    """What the composition root hands the engine: settings, the store, and the adapters' factories."""

    settings: Settings
    store: JobStore
    code_host_for: Callable[[JobView], Awaitable[CodeHost]]
    reporters_for: Callable[[JobView], Sequence[Reporter]] = lambda view: ()
    queue: JobQueue | None = None
    pipeline: Pipeline | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class JobRun:
    """One execution of one job: emits events to the store and every reporter, and checks for cancel."""

    def __init__(
        self, job_id: str, deps: EngineDeps, reporters: Sequence[Reporter], job: Job | None = None
    ) -> None:
        self.job_id = job_id
        self.deps = deps
        self.store = deps.store
        self.settings = deps.settings
        self.reporters = list(reporters)
        self.reporter_errors = 0
        # The job's row as the runner read it when it claimed the job: what the pipeline starts from (its
        # request, plan, branch, …); state, phase and counters in it are not kept up to date.
        self.job = job

    async def emit(
        self,
        type: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
    ) -> JobEventView:
        """Append and show an event; `fields` (job columns) and `steps` are written in its transaction."""
        event = await self.store.append_event(self.job_id, type, data, fields=fields, steps=steps)
        await self.publish(event)
        return event

    async def record_llm_call(self, entry: CostEntry, data: dict[str, Any]) -> None:
        """The call's cost entry, the job's totals and its `llm_call` event in one transaction; then shown."""
        event = await self.store.add_cost(entry, (events.LLM_CALL, data))
        if event is not None:
            await self.publish(event)

    async def set_phase(
        self,
        phase: str,
        data: dict[str, Any] | None = None,
        *,
        fields: dict[str, Any] | None = None,
        steps: dict[int, dict[str, Any]] | None = None,
        then: Sequence[tuple[str, dict[str, Any]]] = (),
        unless_cancelled: bool = False,
    ) -> None:
        """Enter `phase` (its event, then the events `then`), with `fields` and `steps`, in one transaction.

        `unless_cancelled`: the write reads the cancel flag afresh and, when it is set, writes nothing and
        raises JobCancelled; the check before a plan or a step costs no read of its own."""
        new = [(events.PHASE, {"phase": phase, **(data or {})}), *then]
        appended = await self.store.append_events(
            self.job_id,
            new,
            fields={**(fields or {}), "phase": phase},
            steps=steps,
            unless_cancelled=unless_cancelled,
        )
        for event in appended:
            await self.publish(event)

    async def publish(self, event: JobEventView) -> None:
        """Show `event` everywhere; a reporter that fails is logged and never fails the job."""
        if not self.reporters:
            return
        view = await self.store.view(self.job_id, with_events=False)
        for reporter in self.reporters:
            try:
                await reporter.on_event(view, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.reporter_errors += 1
                log.warning(
                    "reporter %s failed on %s",
                    reporter.name,
                    event.type,
                    exc_info=not isinstance(exc, ReporterBehind),  # a ReporterBehind has said why already
                    extra={"job_id": self.job_id},
                )
                # Recorded, not published (that would ask the failing reporter again): for /metrics, the page,
                # and the reconciler, which shows a job's end again where it could not be shown.
                await self.store.append_event(
                    self.job_id,
                    events.REPORTER_ERROR,
                    {
                        "reporter": reporter.name,
                        "on": event.type,
                        "seq": event.seq,
                        "error": f"{type(exc).__name__}: {exc}"[:300],
                    },
                )

    async def check_cancel(self) -> None:
        """Raise JobCancelled when the job's cancel flag is set (read now): before a step or a plan."""
        if await self.store.cancel_requested(self.job_id):
            raise JobCancelled("cancelled on request")

    async def check_cancel_recent(self) -> None:
        """check_cancel, answered by the flag as read within the last CANCEL_RECHECK_S seconds when there
        is one: before a tool call or a test run, which follow the LLM call whose event just read it. The
        next LLM call (its budget check) and the next step read the flag afresh."""
        if await self.store.cancel_requested(self.job_id, max_age_s=CANCEL_RECHECK_S):
            raise JobCancelled("cancelled on request")

    async def view(self) -> JobView:
        return await self.store.view(self.job_id)
