"""The job page: what it shows, who may open it, and that job content never becomes markup."""

from __future__ import annotations

import re

import httpx

from engine import events
from engine.store.jobs import JobStore
from engine.store.models import CostEntry, JobState
from tests.web.conftest import running_job, submit


async def test_the_page_shows_a_running_job_with_its_plan_steps_costs_context_and_events(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)

    response = await client.get(made.url)

    assert response.status_code == 200
    page = response.text
    for fact in ("octo/hello", "issue #7", "github_issue", "ada", "running", "coding"):
        assert fact in page
    assert "$0.067" in page and "$5.00 budget" in page  # cost against the budget
    assert 'data-step="0" data-step-state="done"' in page
    assert 'data-step="1" data-step-state="running"' in page
    assert "1 of 2 done" in page
    # The diff, one block per file, highlighted by pygments.
    assert "<code>app/greet.py</code>" in page and "<code>tests/test_greet.py</code>" in page
    assert '<span class="gi">' in page and '<span class="gd">' in page
    # The test command and only the tail of its output.
    assert "pytest -q" in page and "1 passed" in page
    assert "line 199" in page and "line 10\n" not in page and "earlier lines not shown" in page
    # LLM calls, the chart, the context diagnostics and the event log.
    assert "<td>planner</td><td>gpt-4.1-mini</td>" in page and "851 ms" in page
    assert '<path class="cost-line"' in page
    assert "<dt>chosen</dt><dd>app/greet.py</dd>" in page and "<dt>tokens</dt><dd>1234</dd>" in page
    for event_type in ("submitted", "state", "plan", "step_finished", "step_started"):
        assert f'<strong class="etype">{event_type}</strong>' in page


async def test_a_wrong_or_missing_token_reads_as_not_found(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await submit(store)
    other = await submit(store, "Another job")

    for url in (
        f"/jobs/{made.id}",
        f"/jobs/{made.id}?t=",
        f"/jobs/{made.id}?t=wrong-token",
        f"/jobs/{made.id}?t={other.job.access_token}",
        f"/jobs/{'0' * 32}?t={made.job.access_token}",
        f"/api/jobs/{made.id}",
        f"/api/jobs/{made.id}?t=wrong",
        f"/api/jobs/{made.id}/events?t=wrong",
        f"/jobs/{made.id}/stream?t=wrong",
    ):
        response = await client.get(url)
        assert response.status_code == 404, url
        assert made.job.title not in response.text


async def test_job_content_is_escaped_everywhere(client: httpx.AsyncClient, store: JobStore) -> None:
    made = await running_job(store, title="<script>alert('title')</script>", requester="<b>mallory</b>")
    await store.save_step(made.id, 1, error="<img src=x onerror=alert(1)>", test_command="<i>make</i>")
    await store.append_event(made.id, "note", {"kind": "Decision", "text": "<script>alert('note')</script>"})
    await store.update(made.id, context_diagnostics=[{"<k>": "<script>alert('ctx')</script>"}])

    page = (await client.get(made.url)).text

    assert "<script>alert" not in page and "<b>mallory" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(&#39;title&#39;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page and "&lt;i&gt;make&lt;/i&gt;" in page
    assert "&lt;script&gt;alert('diff')&lt;/script&gt;" in page  # inside the highlighted diff


async def test_only_web_links_to_the_pull_request_become_links(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    safe = await submit(store, "safe")
    await store.update(safe.id, pr_number=12, pr_url="https://github.com/octo/hello/pull/12")
    hostile = await submit(store, "hostile")
    await store.update(hostile.id, pr_number=13, pr_url="javascript:alert(1)")

    safe_page = (await client.get(safe.url)).text
    hostile_page = (await client.get(hostile.url)).text

    assert '<a href="https://github.com/octo/hello/pull/12" rel="noopener noreferrer">#12</a>' in safe_page
    assert 'href="javascript:' not in hostile_page


async def test_the_page_keeps_its_token_from_leaking_and_loads_only_its_own_assets(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await submit(store)

    response = await client.get(made.url)

    assert response.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert "<script>" not in response.text  # no inline script: the CSP would block it
    for asset in ("web.css", "job.js", "pygments.css"):
        assert f"/static/web/{asset}?v=" in response.text
        assert (await client.get(f"/static/web/{asset}")).status_code == 200
    assert (await client.get("/static/web/..%2Fpages.py")).status_code == 404


async def test_a_queued_job_without_plan_or_calls_says_so(client: httpx.AsyncClient, store: JobStore) -> None:
    made = await submit(store)

    page = (await client.get(made.url)).text

    assert "No plan yet." in page and "No step has started yet." in page and "No LLM calls yet." in page
    assert '<meta http-equiv="refresh"' in page  # without JavaScript a live job still refreshes


async def test_an_ended_job_shows_why_and_no_longer_refreshes(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await running_job(store)
    await store.transition(made.id, JobState.FAILED, reason="budget of $5.00 reached")

    page = (await client.get(made.url)).text

    assert "budget of $5.00 reached" in page and 'data-terminal="true"' in page
    assert 'http-equiv="refresh"' not in page
    assert "Cancel job" not in page and "Retry job" not in page  # buttons are for operators


async def test_the_page_lists_what_the_job_was_told(client: httpx.AsyncClient, store: JobStore) -> None:
    made = await submit(store)
    files = [{"path": "AGENTS.md", "chars": 120, "truncated": False}]
    await store.append_event(made.id, "instructions", {"files": files})
    await store.append_event(
        made.id,
        "instructions",
        {"files": [{"path": "web/<AGENTS>.md", "chars": 4000, "truncated": True}], "step_index": 1},
    )

    page = (await client.get(made.url)).text

    assert "What this job was told" in page
    assert "For the whole job" in page and "<code>AGENTS.md</code> (120 characters)" in page
    assert "For step 2" in page and "<code>web/&lt;AGENTS&gt;.md</code> (4000 characters, cut to fit)" in page


async def test_each_llm_request_shows_what_was_checked_and_what_was_billed(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await submit(store, "Cheap job", budget_usd=0.001)
    entries = [
        # A normal call: billed on its usage, under the check.
        dict(tokens_in=40, tokens_out=5, tokens_cached=30, usd=0.00007, checked_usd=0.0004, billed_on="usage",
             outcome="ok", attempt=1),
        # A timeout: billed at what was checked.
        dict(tokens_in=50, tokens_out=100, usd=0.0004, checked_usd=0.0004, billed_on="worst case",
             outcome="timed out", attempt=1, note="ReadTimeout"),
        # A prompt dearer than estimated: billed above the check.
        dict(tokens_in=900, tokens_out=100, tokens_reasoning=60, usd=0.0005, checked_usd=0.0004,
             billed_on="usage", outcome="ok", attempt=2),
    ]  # fmt: skip
    for fields in entries:
        await store.add_cost(
            CostEntry(job_id=made.id, role="coder", model="gpt-5", latency_ms=5, repo="octo/hello", **fields)
        )

    page = (await client.get(made.url)).text

    assert 'title="the worst case the budget guard checked' in page and ">Billed</th>" in page
    assert "$0.00007" in page and "$0.0004" in page and "$0.0005" in page and "of $0.001 budget" in page
    assert not re.search(r"\$0\.0+(?![0-9])", page)  # no amount rounded away to zero
    assert "timed out" in page and "worst case" in page and "attempt 2" in page
    assert "40 (30)" in page and "100 (60)" in page  # cached of the tokens in, reasoning of the tokens out
    assert page.count('class="call over-checked"') == 1 and "over the check" in page


async def test_the_page_shows_the_setup_its_commands_and_its_log(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await submit(store)
    setup = {
        "status": "failed", "source": ".github/autodev.yml", "network": True, "seconds": 4.2,
        "commands": ["pip install -e .[test]", "npm ci"], "notes": ["step 1: skipped, `uses: x`"],
        "reason": "exit code 1", "tail": "Collecting <nosuchlib>\nERROR: No matching distribution",
    }  # fmt: skip
    await store.update(made.id, sandbox={"runner": "bwrap", "network": False, "setup": setup})

    page = (await client.get(made.url)).text

    assert 'data-setup="failed"' in page and "failed: exit code 1, with network" in page
    assert '<pre class="text">pip install -e .[test]</pre>' in page and "npm ci" in page
    assert "step 1: skipped" in page and "The tests then run without network" in page
    assert '<details id="setup-log" open>' in page and "Collecting &lt;nosuchlib&gt;" in page
    assert "setup failed (exit code 1), so the tests did not run" in page  # the notice

    await store.update(
        made.id, sandbox={"runner": "bwrap", "network": False, "setup": {**setup, "status": "reused"}}
    )
    page = (await client.get(made.url)).text
    assert (
        "reused: prepared by an earlier job, with network" in page
        and "this job reused the environment" in page
    )


async def test_a_job_waiting_behind_another_on_its_branch_says_which(
    client: httpx.AsyncClient, store: JobStore
) -> None:
    made = await submit(store)
    text = "waiting for job 4f2a on this pull request's branch"
    await store.append_event(made.id, events.WAITING_BEHIND, {"job_id": "4f2a", "text": text})

    page = (await client.get(made.url)).text
    assert "Waiting for job 4f2a on this pull request&#39;s branch" in page

    await store.transition(made.id, JobState.RUNNING)  # its turn came
    assert 'id="behind"' not in (await client.get(made.url)).text
