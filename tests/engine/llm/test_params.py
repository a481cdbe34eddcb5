"""Per-model request parameters (token limit's name, temperature, reasoning effort), and 400s explained."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.errors import PermanentFailure
from engine.llm.params import ModelParams, explain_refused_parameter, params_for, reasoning_family
from engine.llm.pricing import PriceBook
from tests.conftest import make_settings


@pytest.mark.parametrize(
    "model", ["o1", "o3", "o3-mini", "o4-mini", "gpt-5", "gpt-5-mini", "gpt-5.1", "openai/gpt-5-nano"]
)
def test_o_series_and_gpt_5_take_max_completion_tokens_and_no_temperature(model: str) -> None:
    assert reasoning_family(model)
    assert params_for(model, {}).request(100) == {"max_completion_tokens": 100}


@pytest.mark.parametrize("model", ["gpt-4.1", "gpt-4o-mini", "llama3.1:8b", "qwen2.5-coder", "omni-7b"])
def test_other_models_get_the_safe_default(model: str) -> None:
    assert not reasoning_family(model)
    assert params_for(model, {}).request(100) == {"max_tokens": 100}


def test_the_shipped_table_says_what_each_model_takes(tmp_path: Path) -> None:
    book = PriceBook.load(make_settings(tmp_path))
    assert book.params("gpt-5").request(10) == {"max_completion_tokens": 10, "reasoning_effort": "medium"}
    assert book.params("gpt-4.1").request(10) == {"max_tokens": 10, "temperature": 0.2}
    assert book.params("never-heard-of-it") == ModelParams()


def test_a_pricing_file_sets_a_models_parameters(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    entry = {"input": 1, "output": 2, "token_limit": "max_completion_tokens", "reasoning_effort": "low"}
    prices.write_text(json.dumps({"my-azure-deployment": entry, "gpt-5": {"input": 1, "output": 1}}))
    book = PriceBook.load(make_settings(tmp_path, pricing_file=prices))
    wanted = {"max_completion_tokens": 5, "reasoning_effort": "low"}
    assert book.params("my-azure-deployment").request(5) == wanted
    # An override that gives only prices keeps the family's parameters.
    assert book.params("gpt-5").request(5) == {"max_completion_tokens": 5}


@pytest.mark.parametrize(
    "entry",
    [
        {"input": 1, "output": 1, "token_limit": "max_output_tokens"},
        {"input": 1, "output": 1, "temperature": "warm"},
        {"input": 1, "output": 1, "reasoning_effort": "extreme"},
        {"input": -1, "output": 1},
        {"input": 1, "output": 1, "cached_input": -0.5},
    ],
)
def test_a_wrong_field_fails_clearly(tmp_path: Path, entry: dict[str, object]) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"m": entry}))
    with pytest.raises(PermanentFailure, match=r"pricing file .*'m'"):
        PriceBook.load(make_settings(tmp_path, pricing_file=prices))


def test_openais_400_for_max_tokens_is_explained_in_one_line() -> None:
    message = (
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead."
    )
    line = explain_refused_parameter("gpt-5", message, "max_tokens")
    assert line is not None and "\n" not in line
    assert line.startswith("gpt-5 does not take `max_tokens`")
    assert '"token_limit": "max_completion_tokens"' in line and "PRICING_FILE" in line


def test_a_400_naming_temperature_or_reasoning_effort_is_explained_too() -> None:
    temperature = explain_refused_parameter(
        "o3", "Unsupported value: 'temperature' does not support 0.2 with this model.", None
    )
    assert temperature is not None and '"temperature": null' in temperature
    unknown = "Unrecognized request argument supplied: reasoning_effort"
    effort = explain_refused_parameter("llama3", unknown, None)
    assert effort is not None and '"reasoning_effort": null' in effort
    assert explain_refused_parameter("m", "messages: too long", None) is None
