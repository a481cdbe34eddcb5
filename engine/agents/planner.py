"""The planner: one LLM call that returns a schema-validated plan, with at most two repairs."""

from __future__ import annotations

import json
import logging
import re

from pydantic import BaseModel, Field, ValidationError

from engine.agents.rules import AgentRules
from engine.errors import ModelRefused, PermanentFailure
from engine.llm.client import LLMClient

log = logging.getLogger(__name__)

MAX_REPAIRS = 2
PLAN_MAX_TOKENS = 4096
MAX_QUESTION_CHARS = 2000
# Said to the planner only when it may ask (the repository allows it and the job has not asked too often).
MAY_ASK = (
    "\n\n# If the task is ambiguous\nWhen the task cannot be planned without a decision only the requester "
    'can make, you may instead answer with one JSON object `{"question": "..."}`: a single, short '
    "question. Ask only when guessing would likely waste the work; otherwise plan with stated assumptions."
)
NO_MORE_QUESTIONS = (
    "You cannot ask a question now. Plan the task with reasonable assumptions and state them in the summary."
)


class PlannerQuestion(ValueError):
    """The planner asked the requester a question instead of planning; `text` is the question."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class PlanStep(BaseModel):
    title: str = Field(min_length=1, max_length=300)
    rationale: str = ""
    acceptance: str = ""
    files: list[str] = Field(default_factory=list)


class Plan(BaseModel):
    summary: str = ""
    steps: list[PlanStep] = Field(min_length=1, max_length=12)


def parse_plan(text: str | None) -> Plan:
    """The plan in `text`: bare JSON or JSON in a ``` fence; raises ValueError/ValidationError."""
    if not text or not text.strip():
        raise ValueError("the answer was empty; expected one JSON object")
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, flags=re.S)
    raw = fenced.group(1) if fenced else text.strip()
    if not fenced and not raw.startswith("{"):
        start, end = raw.find("{"), raw.rfind("}")
        if start < 0 or end < start:
            raise ValueError("no JSON object found in the answer")
        raw = raw[start : end + 1]
    data = json.loads(raw)
    if isinstance(data, dict) and set(data) == {"question"}:
        question = str(data["question"]).strip()
        if question:
            raise PlannerQuestion(question[:MAX_QUESTION_CHARS])
    return Plan.model_validate(data)


async def make_plan(
    llm: LLMClient, rules: AgentRules, *, conventions: str, task: str, context: str, may_ask: bool = False
) -> Plan:
    """The plan; with `may_ask`, PlannerQuestion when the model asks one question instead."""
    ask = MAY_ASK if may_ask else ""
    messages = [
        {"role": "system", "content": rules.system_prompt("planner", conventions)},
        {"role": "user", "content": f"# Task\n{task}{ask}\n\n# Repository context\n{context}"},
    ]
    for attempt in range(MAX_REPAIRS + 1):
        try:
            reply = await llm.chat(role="planner", messages=messages, max_tokens=PLAN_MAX_TOKENS)
        except ModelRefused as exc:
            raise ModelRefused(
                f"the planner model {exc.model} refused to plan the task: “{exc.refusal[:1000]}”",
                refusal=exc.refusal,
                role=exc.role,
                model=exc.model,
            ) from exc
        try:
            return parse_plan(reply.content)
        except (ValueError, ValidationError) as exc:
            if isinstance(exc, PlannerQuestion):
                if may_ask:
                    raise
                # Asked anyway: repaired like any other answer that is not a plan.
                failure = f"the planner asked a question it may not ask: {exc.text}"
                correction = NO_MORE_QUESTIONS
            else:
                problem = _describe(exc)
                log.info("plan rejected (attempt %d): %s", attempt + 1, problem)
                failure = f"the planner did not return a valid plan after {MAX_REPAIRS} repairs: {problem}"
                correction = (
                    f"That answer is not a valid plan: {problem}\nReply again with only the JSON "
                    'object {"summary": "...", "steps": [{"title", "rationale", "acceptance", "files"}]}.'
                )
            if attempt == MAX_REPAIRS:
                raise PermanentFailure(failure) from exc
            messages += [
                {"role": "assistant", "content": reply.content or ""},
                {"role": "user", "content": correction},
            ]
    raise AssertionError("unreachable")


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'plan'}: {e['msg']}" for e in exc.errors()[:8]
        )
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    return str(exc)
