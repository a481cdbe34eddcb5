"""Dollars and request parameters per model: engine/llm/pricing.json, overridden by PRICING_FILE.

An entry is `{"input": $, "output": $}` per million tokens, and optionally:

- `cached_input`: $ per million prompt tokens served from the provider's cache (default: `input`);
- `reasoning`: $ per million reasoning tokens, which are part of the completion (default: `output`);
- `token_limit`: `"max_tokens"` or `"max_completion_tokens"`, the parameter that caps the answer;
- `temperature`: the temperature to send, or null to send none (reasoning models refuse one);
- `reasoning_effort`: `"minimal"`, `"low"`, `"medium"` or `"high"`, or null to send none.

Parameters an entry leaves out come from the model's family (engine.llm.params).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import PermanentFailure
from engine.llm.params import ModelParams, params_for
from engine.settings import Settings

BUILTIN_PRICES = Path(__file__).with_name("pricing.json")


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float
    cached_per_million: float | None = None
    reasoning_per_million: float | None = None

    def usd(self, tokens_in: int, tokens_out: int, *, cached: int = 0, reasoning: int = 0) -> float:
        """What a call costs: `cached` of the `tokens_in` and `reasoning` of the `tokens_out` at their
        own prices when the entry gives them."""
        cached_price = self.input_per_million if self.cached_per_million is None else self.cached_per_million
        reasoning_price = (
            self.output_per_million if self.reasoning_per_million is None else self.reasoning_per_million
        )
        return (
            (tokens_in - cached) * self.input_per_million
            + cached * cached_price
            + (tokens_out - reasoning) * self.output_per_million
            + reasoning * reasoning_price
        ) / 1_000_000

    def worst_case(self, tokens_in: int, max_out: int) -> float:
        """The most a call can cost: nothing cached, every output token at the dearer output price."""
        out = max(self.output_per_million, self.reasoning_per_million or 0.0)
        cached = self.cached_per_million or 0.0
        return (tokens_in * max(self.input_per_million, cached) + max_out * out) / 1_000_000


@dataclass(frozen=True, slots=True)
class ModelEntry:
    price: Price
    params: ModelParams


class PriceBook:
    def __init__(self, entries: dict[str, ModelEntry], sources: list[str]) -> None:
        self.entries = entries
        self.sources = sources

    @classmethod
    def load(cls, settings: Settings) -> PriceBook:
        entries = _read(BUILTIN_PRICES)
        sources = [str(BUILTIN_PRICES)]
        if settings.pricing_file is not None:
            entries.update(_read(settings.pricing_file))
            sources.append(str(settings.pricing_file))
        return cls(entries, sources)

    def price(self, model: str) -> Price:
        """The model's price; a model nobody priced fails the job rather than run unmetered."""
        found = self.entries.get(model)
        if found is None:
            raise PermanentFailure(
                f"no price for model {model!r}: add it to a JSON file named by PRICING_FILE, e.g. "
                f'{{"{model}": {{"input": 0.0, "output": 0.0}}}} (dollars per million tokens; '
                f"0 for a local model)"
            )
        return found.price

    def params(self, model: str) -> ModelParams:
        found = self.entries.get(model)
        return found.params if found is not None else params_for(model, {})


def _read(path: Path) -> dict[str, ModelEntry]:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PermanentFailure(f"pricing file {path} cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise PermanentFailure(f"pricing file {path} must hold an object of model → prices")
    entries: dict[str, ModelEntry] = {}
    for model, entry in raw.items():
        if model.startswith("_"):
            continue
        try:
            price = Price(
                _dollars(entry["input"]),
                _dollars(entry["output"]),
                _optional_dollars(entry.get("cached_input")),
                _optional_dollars(entry.get("reasoning")),
            )
            entries[model] = ModelEntry(price, params_for(model, entry))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PermanentFailure(
                f'pricing file {path}: {model!r} needs {{"input": $, "output": $}} per million tokens '
                f"(not negative), and optional fields as engine/llm/pricing.py lists them: {exc}"
            ) from exc
    return entries


def _dollars(value: Any) -> float:
    if isinstance(value, bool) or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"{value!r} is not a price")
    return float(value)


def _optional_dollars(value: Any) -> float | None:
    return None if value is None else _dollars(value)
