"""What a change tells the world: the event a state machine transition (or a recorded fact) produces.

Transitions return their event; the use case hands it to its unit of work, which stores every event it
collected in the same transaction as the change (the event feed and each object's history read them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class DomainEvent:
    """One change of one subject (a license key, a partner's standing, an invoice, a card)."""

    partner_id: str
    stream: str  # license | standing | invoice | payment_method
    subject: str
    action: str
    at: datetime
    from_state: str | None = None
    to_state: str | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
