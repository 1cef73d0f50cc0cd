"""What the use cases tell operators about, as it happens: charge answers, event deliveries, month-close
progress. The app turns it into metrics (app.observability.MetricsObserver); `Observer()` itself does
nothing, which is what the CLI and use cases called without one get."""

from __future__ import annotations

from enum import StrEnum


class ChargeAnswer(StrEnum):
    """How one charge (one card tried on one invoice) ended."""

    SUCCEEDED = "succeeded"
    DECLINED = "declined"  # the card was declined (Stripe's failure code is on the attempt)
    FAILED = "failed"  # Stripe refused the request (an unknown card or customer, a reused key, ...)
    UNKNOWN = "unknown"  # the answer was lost (Stripe unreachable): the attempt is resumed later


class Observer:
    """Hooks the use cases call; every one does nothing here."""

    def charge_answered(self, answer: ChargeAnswer) -> None:
        """A charge's answer came (or was lost), after it was recorded."""

    def feed_delivered(self, lag_seconds: float) -> None:
        """A subscription took an event, `lag_seconds` after the wake-up its commit caused."""

    def month_close_progress(self, done: int, total: int) -> None:
        """A month close has finalized `done` of its `total` partners (0 of total when it starts)."""


NO_OBSERVER = Observer()
