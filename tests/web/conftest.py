"""The job pages mounted on a bare FastAPI app, and jobs made through the real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from engine.ports import JobQueue
from engine.settings import Settings
from engine.store.jobs import JobRequest, JobStore
from engine.store.models import CostEntry, Job, JobState
from tests.conftest import make_settings
from web import make_router

OPERATOR_TOKEN = "operator-secret-token-123"

DIFF = """diff --git a/app/greet.py b/app/greet.py
index 1111111..2222222 100644
--- a/app/greet.py
+++ b/app/greet.py
@@ -1,2 +1,3 @@
 def greet(name):
-    return "hi " + name
+    return f"Hello, {name}!"
+# <script>alert('diff')</script>
diff --git a/tests/test_greet.py b/tests/test_greet.py
new file mode 100644
--- /dev/null
+++ b/tests/test_greet.py
@@ -0,0 +1,2 @@
+def test_greet():
+    assert greet("Ada") == "Hello, Ada!"
"""


def make_app(store: JobStore, settings: Settings, queue: JobQueue | None = None) -> FastAPI:
    app = FastAPI()
    app.include_router(make_router(store, settings, queue, poll_interval=0.05))
    return app


@pytest.fixture
def operator_settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url, operator_token=OPERATOR_TOKEN)


@pytest.fixture
async def client(store: JobStore, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """No operator token configured: only job links open pages."""
    transport = httpx.ASGITransport(app=make_app(store, settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
async def operator_client(store: JobStore, operator_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(store, operator_settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@dataclass
class Made:
    job: Job

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def url(self) -> str:
        return f"/jobs/{self.job.id}?t={self.job.access_token}"


async def submit(store: JobStore, title: str = "Greet people properly", **extra: object) -> Made:
    values: dict[str, object] = {
        "dedupe_key": f"test:{title}:{extra}",
        "trigger": "github_issue",
        "repo": "octo/hello",
        "title": title,
        "task": "Make greet() say Hello.",
        "requester": "ada",
        "issue_number": 7,
    }
    values.update(extra)
    job, _ = await store.submit(JobRequest.model_validate(values))
    return Made(job)


async def running_job(store: JobStore, title: str = "Greet people properly", **extra: object) -> Made:
    """A running job two steps into its plan: step 1 done with a diff and passing tests, step 2 running."""
    made = await submit(store, title, **extra)
    await store.transition(made.id, JobState.RUNNING, phase="coding")
    plan = {
        "steps": [
            {"title": "Change the greeting", "rationale": "", "acceptance": "", "files": ["app/greet.py"]},
            {"title": "Document the greeting", "rationale": "", "acceptance": "", "files": ["README.md"]},
        ]
    }
    await store.update(made.id, plan=plan)
    await store.append_event(made.id, "plan", plan)
    await store.save_step(
        made.id,
        0,
        title="Change the greeting",
        rationale="Users asked for a friendlier greeting.",
        state="done",
        diff=DIFF,
        commit_sha="abcdef1234567890",
        test_command="pytest -q",
        test_output="\n".join(f"line {i}" for i in range(200)) + "\n1 passed",
        test_passed=True,
    )
    await store.append_event(made.id, "step_finished", {"index": 0, "state": "done"})
    await store.save_step(made.id, 1, title="Document the greeting", state="running")
    await store.append_event(made.id, "step_started", {"index": 1, "title": "Document the greeting"})
    start = datetime.now(UTC) - timedelta(minutes=3)
    for i, (role, usd) in enumerate([("planner", 0.012), ("coder", 0.034), ("coder", 0.021)]):
        await store.add_cost(
            CostEntry(
                job_id=made.id,
                step_index=None if role == "planner" else 0,
                role=role,
                model="gpt-4.1" if role == "coder" else "gpt-4.1-mini",
                tokens_in=1000 * (i + 1),
                tokens_out=200,
                usd=usd,
                latency_ms=850 + i,
                repo="octo/hello",
                created_at=start + timedelta(seconds=20 * i),
            )
        )
    await store.update(
        made.id,
        context_diagnostics=[{"step_index": 0, "chosen": ["app/greet.py"], "tokens": 1234, "why": "bm25"}],
    )
    made.job = await store.get(made.id)
    return made
