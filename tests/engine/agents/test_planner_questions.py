"""The planner's answer is a plan, or (when it may ask) exactly one question."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engine.agents.planner import MAX_QUESTION_CHARS, PlannerQuestion, parse_plan


def test_an_object_with_only_a_question_is_a_question() -> None:
    with pytest.raises(PlannerQuestion) as asked:
        parse_plan('```json\n{"question": "  Which database, SQLite or PostgreSQL?  "}\n```')
    assert asked.value.text == "Which database, SQLite or PostgreSQL?"


def test_a_very_long_question_is_cut() -> None:
    with pytest.raises(PlannerQuestion) as asked:
        parse_plan('{"question": "' + "why " * 1000 + '"}')
    assert len(asked.value.text) == MAX_QUESTION_CHARS


def test_an_empty_question_or_a_question_beside_steps_is_not_a_question() -> None:
    with pytest.raises(ValidationError):
        parse_plan('{"question": " "}')  # neither a question nor a plan: repaired like any bad answer
    plan = parse_plan('{"question": "?", "summary": "s", "steps": [{"title": "Do it"}]}')
    assert [s.title for s in plan.steps] == ["Do it"]
