"""Which request parameters a model takes: its token limit's name, a temperature, a reasoning effort.

OpenAI's o-series and gpt-5 families refuse `max_tokens` (they want `max_completion_tokens`, which also
bounds their reasoning tokens) and any temperature but the default; most OpenAI-compatible servers (vLLM,
Ollama, older gateways) know only `max_tokens`. A model's pricing entry may say each of these; what it
leaves out comes from its family, and a model of no known family gets the safe default: `max_tokens`,
no temperature, no reasoning effort.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")
EFFORTS = ("minimal", "low", "medium", "high")
# o1, o3-mini, o4-mini, gpt-5, gpt-5-mini, gpt-5.1, … also behind a gateway's `openai/` prefix.
_REASONING_FAMILY = re.compile(r"^(?:[\w.-]+/)?(?:o\d+(?:$|[-.])|gpt-5)")
_FIXES = {
    "max_tokens": ('"token_limit": "max_completion_tokens"', "does not take `max_tokens`"),
    "max_completion_tokens": ('"token_limit": "max_tokens"', "does not take `max_completion_tokens`"),
    "temperature": ('"temperature": null', "does not take this `temperature`"),
    "reasoning_effort": ('"reasoning_effort": null', "does not take this `reasoning_effort`"),
}


@dataclass(frozen=True, slots=True)
class ModelParams:
    token_limit: str = "max_tokens"
    temperature: float | None = None
    reasoning_effort: str | None = None

    def request(self, max_out: int) -> dict[str, Any]:
        """The parameters to add to a chat completion request that may answer up to `max_out` tokens."""
        kwargs: dict[str, Any] = {self.token_limit: max_out}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.reasoning_effort is not None:
            kwargs["reasoning_effort"] = self.reasoning_effort
        return kwargs


def reasoning_family(model: str) -> bool:
    return bool(_REASONING_FAMILY.match(model))


def params_for(model: str, entry: Mapping[str, Any]) -> ModelParams:
    """The entry's parameters, its family's where it is silent; raises ValueError on a value it cannot be."""
    family = ModelParams("max_completion_tokens") if reasoning_family(model) else ModelParams()
    token_limit = entry.get("token_limit", family.token_limit)
    if token_limit not in TOKEN_LIMITS:
        raise ValueError(f"token_limit must be one of {', '.join(TOKEN_LIMITS)}, not {token_limit!r}")
    temperature = entry.get("temperature", family.temperature)
    if temperature is not None and (isinstance(temperature, bool) or not 0 <= float(temperature) <= 2):
        raise ValueError(f"temperature must be a number from 0 to 2 or null, not {temperature!r}")
    effort = entry.get("reasoning_effort", family.reasoning_effort)
    if effort is not None and effort not in EFFORTS:
        raise ValueError(f"reasoning_effort must be one of {', '.join(EFFORTS)} or null, not {effort!r}")
    return ModelParams(token_limit, None if temperature is None else float(temperature), effort)


def explain_refused_parameter(model: str, message: str, param: str | None) -> str | None:
    """One line saying which PRICING_FILE field fixes a 400 that names one of our parameters, else None."""
    named = param if param in _FIXES else next((p for p in _FIXES if f"'{p}'" in message), None)
    if named is None:
        # "Unrecognized request argument supplied: reasoning_effort" and kin name it without quotes.
        named = next((p for p in _FIXES if re.search(rf"\b{p}\b", message)), None)
    if named is None:
        return None
    fix, what = _FIXES[named]
    said = " ".join(message.split())[:200]
    return (
        f"{model} {what} ({said}); set {fix} for {model!r} in the JSON file named by PRICING_FILE "
        "(see engine/llm/pricing.py)"
    )
