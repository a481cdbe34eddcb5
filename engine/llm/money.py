"""Dollars as people read them: cents from $1 up, and below it as many digits as it takes to stay true.

A job of a few cheap calls costs fractions of a cent, and a budget may be a fraction of a cent too;
rounding either to "$0.00" tells the reader something false ("$0.0000 of $0.00 spent").
"""

from __future__ import annotations

import math


def usd(value: float) -> str:
    """`$1,234.50`, `$0.50`, `$0.0066`, `$0.0001`, `$0.00007`: at least two significant digits under $1
    (four decimals when there is room), never a non-zero amount shown as zero."""
    if value < 0:
        return "-" + usd(-value)
    if value == 0 or not math.isfinite(value):
        return "$0.00" if value == 0 else f"${value}"
    if value >= 1 or round(value, 2) >= 1:
        return f"${value:,.2f}"
    decimals = max(4, 1 - math.floor(math.log10(value)))
    text = f"{value:.{decimals}f}"
    whole, _, fraction = text.partition(".")
    fraction = fraction.rstrip("0").ljust(2, "0")
    return f"${whole}.{fraction}"
