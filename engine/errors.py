"""Why a job stops early (each with a reason a user can act on), and the job store's refusals."""

from __future__ import annotations

from engine.states import JobState


class JobStopped(Exception):
    """Base: the job ends now with `reason`."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobCancelled(JobStopped):
    """Someone asked to cancel; honoured between LLM calls and tool runs."""


class LimitReached(JobStopped):
    """A budget, request or time limit would be crossed by the next call."""

    def __init__(self, limit: str, reason: str) -> None:
        super().__init__(reason)
        self.limit = limit


class PermanentFailure(JobStopped):
    """Retrying cannot help (bad credentials, unknown model, tests that stay red, malformed config)."""


class ModelRefused(PermanentFailure):
    """The model refused the request (`message.refusal`): asking again will not change its mind.

    `refusal` holds the model's own words; `reason` says who refused what, for the job's end."""

    def __init__(self, reason: str, *, refusal: str, role: str, model: str) -> None:
        super().__init__(reason)
        self.refusal = refusal
        self.role = role
        self.model = model


class JobWaits(Exception):
    """The job needs a person before it goes on: a question for them, or its plan to approve.

    Not a failure: the runner moves the job to `waiting` and frees the worker (engine.pipeline.waiting)."""

    def __init__(self, kind: str, text: str, *, timeout_hours: float, data: dict[str, object]) -> None:
        super().__init__(f"waiting ({kind}): {text[:200]}")
        self.kind = kind  # "question" | "approval"
        self.text = text
        self.timeout_hours = timeout_hours
        self.data = data  # the data of the event that says what the job waits for


class TransientFailure(Exception):
    """Retrying later may help (a service down or rate limited past our own retries)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ReporterBehind(Exception):
    """A reporter could not show an event (its service is down) and logged why; a later call catches up."""


class JobNotFound(LookupError):
    """No job has this id."""


class IllegalTransition(ValueError):
    """A state change the job's life does not allow (a terminal job never changes again)."""

    def __init__(self, job_id: str, current: JobState, target: JobState) -> None:
        super().__init__(f"job {job_id} cannot go from {current} to {target}")
        self.current = current
        self.target = target
