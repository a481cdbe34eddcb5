"""How many tokens a model really counts for what engine.llm.tokens estimates, learned per model.

The estimate errs high on purpose (a budget guard must not undercount), so a context pack fitted to it fills
only part of what it could. Every request records both the estimate and the prompt tokens the provider
reported (`cost_entries`); the ratio of the two, taken over a model's latest requests, turns a budget in
real tokens into the larger number of estimated tokens a pack may fill. The highest recent ratio is the one
used, so a pack that fits it fits every prompt seen lately, and a small margin covers the prompts not seen
yet: the estimate's ratio to the real count still differs by a few percent between repositories (Go, Java,
Python, prose), and a model's latest requests may all have been about one of them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from engine.store.models import CostEntry

SAMPLES = 20  # the model's latest requests that count
MIN_SAMPLES = 10  # fewer: the estimate as it is (with 5, packs went over: docs/benchmarks.md, sessions 5, 6)
# A ratio outside these is a provider that lies or an estimate gone wrong; it is clamped, never trusted.
MIN_RATIO = 0.3
MAX_RATIO = 2.0
MIN_PROMPT_TOKENS = 200  # tiny prompts are mostly per-message overhead, which says little about text
# Calibrated on one repository's requests, another's packs went up to 2% over their limit without it.
MARGIN = 0.03


@dataclass(frozen=True, slots=True)
class Calibration:
    model: str
    ratio: float  # reported / estimated, the highest of the samples (1.0: not calibrated)
    samples: int
    margin: float = 0.0  # the share of the budget left unfilled for prompts unlike the samples
    scope: str = "model"  # "repository": from requests about the repository the pack is for

    def limit(self, budget_tokens: int) -> int:
        """The estimated tokens that stay within `budget_tokens` of the model's own."""
        return int(budget_tokens / (self.ratio * (1 + self.margin)))

    def describe(self) -> dict[str, object]:
        return {
            "model": self.model,
            "ratio": round(self.ratio, 3),
            "samples": self.samples,
            "scope": self.scope,
            "margin": self.margin,
        }


def calibrate(model: str, pairs: list[tuple[int, int]]) -> Calibration:
    """From (reported, estimated) prompt tokens of a model's requests."""
    ratios = [
        reported / estimated
        for reported, estimated in pairs
        if estimated >= MIN_PROMPT_TOKENS and reported > 0
    ]
    if len(ratios) < MIN_SAMPLES:
        return Calibration(model, 1.0, len(ratios))
    return Calibration(model, min(MAX_RATIO, max(MIN_RATIO, max(ratios))), len(ratios), MARGIN)


async def token_calibration(
    sessions: async_sessionmaker[AsyncSession], model: str, repo: str | None = None
) -> Calibration:
    """The model's calibration from its latest requests the provider reported usage for: those about `repo`
    when there are enough of them (the estimate errs by a few percent more or less on one repository's
    languages than on another's: docs/benchmarks.md), else all of the model's."""
    if repo is not None:
        own = calibrate(model, await _reported(sessions, model, repo))
        if own.samples >= MIN_SAMPLES:
            return replace(own, scope="repository")
    return calibrate(model, await _reported(sessions, model, None))


async def _reported(
    sessions: async_sessionmaker[AsyncSession], model: str, repo: str | None
) -> list[tuple[int, int]]:
    query = (
        select(CostEntry.tokens_in, CostEntry.tokens_in_estimate)
        .where(
            CostEntry.model == model,
            CostEntry.billed_on == "usage",
            CostEntry.tokens_in_estimate.is_not(None),
        )
        .order_by(CostEntry.id.desc())
        .limit(SAMPLES)
    )
    if repo is not None:
        query = query.where(CostEntry.repo == repo)
    async with sessions() as session:
        rows = (await session.execute(query)).all()
    return [(int(r.tokens_in), int(r.tokens_in_estimate)) for r in rows]
