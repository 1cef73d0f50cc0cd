"""Exact decimal text for integer amounts (no floats ever touch money)."""

from __future__ import annotations

from domain.products import MICROS_PER_UNIT


def format_minor_units(amount: int, exponent: int) -> str:
    """An amount in minor units as decimal text: (1234, 2) → '12.34'."""
    if exponent == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{units}.{minor:0{exponent}d}"


def format_micros(micros: int) -> str:
    """A price in micro-units as decimal text: 328767 → '0.328767'."""
    units, fraction = divmod(micros, MICROS_PER_UNIT)
    return f"{units}.{fraction:06d}"
