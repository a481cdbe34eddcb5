"""Dollars per model: the prices shipped in engine/pricing.json, overridden by PRICING_FILE."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from engine.errors import PermanentFailure
from engine.settings import Settings

BUILTIN_PRICES = Path(__file__).with_name("pricing.json")


@dataclass(frozen=True, slots=True)
class Price:
    input_per_million: float
    output_per_million: float

    def usd(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input_per_million + tokens_out * self.output_per_million) / 1_000_000


class PriceBook:
    def __init__(self, prices: dict[str, Price], sources: list[str]) -> None:
        self.prices = prices
        self.sources = sources

    @classmethod
    def load(cls, settings: Settings) -> PriceBook:
        prices = _read(BUILTIN_PRICES)
        sources = [str(BUILTIN_PRICES)]
        if settings.pricing_file is not None:
            prices.update(_read(settings.pricing_file))
            sources.append(str(settings.pricing_file))
        return cls(prices, sources)

    def price(self, model: str) -> Price:
        """The model's price; a model nobody priced fails the job rather than run unmetered."""
        found = self.prices.get(model)
        if found is None:
            raise PermanentFailure(
                f"no price for model {model!r}: add it to a JSON file named by PRICING_FILE, e.g. "
                f'{{"{model}": {{"input": 0.0, "output": 0.0}}}} (dollars per million tokens; '
                f"0 for a local model)"
            )
        return found


def _read(path: Path) -> dict[str, Price]:
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise PermanentFailure(f"pricing file {path} cannot be read: {exc}") from exc
    if not isinstance(raw, dict):
        raise PermanentFailure(f"pricing file {path} must hold an object of model → prices")
    prices: dict[str, Price] = {}
    for model, entry in raw.items():
        if model.startswith("_"):
            continue
        try:
            prices[model] = Price(float(entry["input"]), float(entry["output"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentFailure(
                f'pricing file {path}: {model!r} needs {{"input": $, "output": $}} per million tokens'
            ) from exc
    return prices
