"""Why a job stops early. Each carries a reason a user can act on; the runner turns it into a final state."""

from __future__ import annotations


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


class TransientFailure(Exception):
    """Retrying later may help (a service down or rate limited past our own retries)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class ReporterBehind(Exception):
    """A reporter could not show an event (its service is down) and logged why; a later call catches up."""
