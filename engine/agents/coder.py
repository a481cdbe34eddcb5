"""The coder loop for one step: tool calls until the model says it is done, then the tests, then repairs."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from engine.agents.planner import Plan, PlanStep
from engine.agents.rules import AgentRules
from engine.agents.tools import ToolBox
from engine.errors import ModelRefused, PermanentFailure
from engine.llm.client import LLMClient
from engine.workspace.commands import TestResult

log = logging.getLogger(__name__)

CODER_MAX_TOKENS = 8192
TOOL_RESULT_MAX_CHARS = 20_000


@dataclass
class StepOutcome:
    summary: str
    test: TestResult | None
    repair_rounds: int
    turns: int


@dataclass
class StepBrief:
    index: int
    step: PlanStep
    plan: Plan
    task: str
    context: str


def step_prompt(brief: StepBrief) -> str:
    lines = [f"# Task\n{brief.task}", "# Plan"]
    for i, s in enumerate(brief.plan.steps):
        marker = "→" if i == brief.index else ("✓" if i < brief.index else " ")
        lines.append(f"{marker} {i + 1}. {s.title}")
    step = brief.step
    lines += [
        f"\n# Your step ({brief.index + 1} of {len(brief.plan.steps)}): {step.title}",
        f"Why: {step.rationale}" if step.rationale else "",
        f"Done when: {step.acceptance}" if step.acceptance else "",
        f"Likely files: {', '.join(step.files)}" if step.files else "",
        f"\n# Repository context\n{brief.context}",
    ]
    return "\n".join(line for line in lines if line)


async def code_step(
    brief: StepBrief,
    *,
    llm: LLMClient,
    rules: AgentRules,
    conventions: str,
    tools: ToolBox,
    run_tests: Callable[[int], Awaitable[TestResult | None]],
    check_cancel: Callable[[], Awaitable[None]],
    repair_rounds: int,
    max_turns: int,
) -> StepOutcome:
    """Drive the model through one step; the step ends green or raises PermanentFailure."""
    messages = [
        {"role": "system", "content": rules.system_prompt("coder", conventions)},
        {"role": "user", "content": step_prompt(brief)},
    ]
    rounds = 0
    turns = 0
    summary = ""
    while True:
        try:
            reply = await llm.chat(
                role="coder",
                messages=messages,
                step_index=brief.index,
                tools=tools.schemas,
                max_tokens=CODER_MAX_TOKENS,
            )
        except ModelRefused as exc:
            # The step ends refused, in the model's words; asking again would only cost more.
            raise ModelRefused(
                f"step {brief.index + 1} ({brief.step.title}) was refused by the coder model {exc.model}: "
                f"“{exc.refusal[:1000]}”",
                refusal=exc.refusal,
                role=exc.role,
                model=exc.model,
            ) from exc
        turns += 1
        messages.append(reply.assistant_message())
        if reply.tool_calls and turns < max_turns:
            for call in reply.tool_calls:
                await check_cancel()
                answer = await tools.call(call["name"], call["arguments"])
                messages.append({"role": "tool", "tool_call_id": call["id"], "content": _clip(answer)})
            continue
        if reply.tool_calls:
            # Out of turns: answer the pending calls so the history stays valid, then judge by the tests.
            for call in reply.tool_calls:
                messages.append(
                    {"role": "tool", "tool_call_id": call["id"], "content": "error: turn limit reached"}
                )
            log.info("step %d hit the turn limit (%d)", brief.index, max_turns)
        summary = reply.content or summary
        await check_cancel()
        result = await run_tests(rounds)
        if result is None or result.passed:
            return StepOutcome(summary, result, rounds, turns)
        if rounds >= repair_rounds or turns >= max_turns:
            why = "the turn limit was reached" if turns >= max_turns else f"{rounds} repair rounds"
            raise PermanentFailure(
                f"step {brief.index + 1} ({brief.step.title}) still fails its tests after {why}; "
                f"`{result.command}` ended with:\n{result.tail(40)}"
            )
        rounds += 1
        messages.append(
            {
                "role": "user",
                "content": f"The tests fail (repair round {rounds} of {repair_rounds}). "
                f"`{result.command}` printed:\n{result.tail(80)}\n\n"
                "Fix the code, then answer without a tool call.",
            }
        )


def _clip(text: str) -> str:
    if len(text) <= TOOL_RESULT_MAX_CHARS:
        return text
    return text[:TOOL_RESULT_MAX_CHARS] + "\n[output truncated]"
