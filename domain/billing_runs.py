"""A billing run: one month close for every partner, carried out by background jobs, a batch of
partners per job, and counted as each batch is done. The run is finished when no partner is left to do
(a partner that keeps failing is given up after `MAX_PARTNER_TRIES` and reported with its reason)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.actors import OPERATOR_CLI, Actor

# A partner's close is tried this many times (the job engine retries it with a growing pause) before
# the run reports it failed for good and finishes without it.
MAX_PARTNER_TRIES = 3


class RunStatus(StrEnum):
    RUNNING = "running"  # some partners are still to do
    FINISHED = "finished"  # every partner is done or given up


class PartnerState(StrEnum):
    PENDING = "pending"  # not tried yet
    RETRYING = "retrying"  # failed at least once; the job engine tries again
    DONE = "done"
    FAILED = "failed"  # failed MAX_PARTNER_TRIES times: reported, not retried by this run

    @property
    def is_open(self) -> bool:
        return self in (PartnerState.PENDING, PartnerState.RETRYING)


class CloseResult(StrEnum):
    CLOSED = "closed"  # invoiced by this run
    ALREADY_CLOSED = "already_closed"  # invoiced before this run started
    NOT_OVER = "not_over"  # the month has not ended yet in the partner's zone


class ChargeResult(StrEnum):
    PAID = "paid"
    PAST_DUE = "past_due"  # every card failed, or none on file: the invoice is in dunning
    UNCOLLECTED = "uncollected"  # Stripe unreachable or a charge already in flight: dunning retries it


@dataclass(frozen=True)
class RunPartner:
    """One partner's part in a run, as stored."""

    partner_id: str
    state: PartnerState
    close: CloseResult | None
    charge: ChargeResult | None
    tries: int
    reason: str | None
    updated_at: datetime | None


@dataclass(frozen=True)
class RunProgress:
    """How many of a run's partners are no longer open, and whether this look finished the run."""

    done: int
    total: int
    finished_now: bool


def after_failure(tries_before: int) -> PartnerState:
    """The state of a partner whose close just failed, having been tried `tries_before` times before."""
    return PartnerState.FAILED if tries_before + 1 >= MAX_PARTNER_TRIES else PartnerState.RETRYING


@dataclass(frozen=True)
class RunCounts:
    """How far a run is: every partner is counted once in `pending` or `done` or `failed`."""

    partners_total: int = 0
    pending: int = 0  # still to do (retrying included)
    failed: int = 0  # failing now (retrying) or given up
    closed: int = 0
    already_closed: int = 0
    not_over: int = 0
    paid: int = 0
    past_due: int = 0
    uncollected: int = 0

    @classmethod
    def of(
        cls, partners: Iterable[tuple[PartnerState, CloseResult | None, ChargeResult | None, int]]
    ) -> RunCounts:
        """Counts from (state, close result, charge result, how many partners) groups."""
        tally: dict[str, int] = dict.fromkeys(cls.__dataclass_fields__, 0)
        for state, close, charge, number in partners:
            tally["partners_total"] += number
            if state.is_open:
                tally["pending"] += number
            if state in (PartnerState.RETRYING, PartnerState.FAILED):
                tally["failed"] += number
            if state is PartnerState.DONE and close is not None:
                tally[close.value] += number
            if state is PartnerState.DONE and charge is not None:
                tally[charge.value] += number
        return cls(**tally)


@dataclass(frozen=True)
class BillingRun:
    id: str
    month: str
    status: RunStatus
    # The instant the run closes the month as of (the clock of whoever started it, so a sandbox clock
    # moved forward is honoured by workers in other processes).
    as_of: datetime
    started_at: datetime
    finished_at: datetime | None
    started_by: str | None  # the staff token, if a person started it
    counts: RunCounts
    started_by_label: str | None = None  # that token's label

    @property
    def started_as(self) -> Actor:
        """Who started the run: a staff token, or (no token) an operator at the command line."""
        if self.started_by is None:
            return Actor.system(OPERATOR_CLI)
        return Actor.token(self.started_by, self.started_by_label or "", None)
