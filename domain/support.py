"""Where partners turn for help (from the FAQ: support, or the Agency & Pro manager)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SupportContact:
    message: str
    email: str
    url: str
