"""Money shown with enough digits to be true: a small cost or budget is never rounded to $0.00."""

from __future__ import annotations

import pytest

from engine.llm.money import usd


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "$0.00"),
        (0.0001, "$0.0001"),
        (0.00007, "$0.00007"),
        (0.0000712, "$0.000071"),
        (0.0066, "$0.0066"),
        (0.005, "$0.005"),
        (0.067, "$0.067"),
        (0.123456, "$0.1235"),
        (0.5, "$0.50"),
        (0.09, "$0.09"),
        (1, "$1.00"),
        (0.999999, "$1.00"),
        (1234.5, "$1,234.50"),
        (-0.25, "-$0.25"),
    ],
)
def test_dollars_keep_their_significant_digits(value: float, shown: str) -> None:
    assert usd(value) == shown


def test_the_budget_message_of_issue_17_no_longer_reads_zero_of_zero() -> None:
    """Regression: "$0.0000 of $0.00 spent" for a $0.001 budget after a $0.00004 call."""
    assert f"{usd(0.00004)} of {usd(0.001)} spent" == "$0.00004 of $0.001 spent"
