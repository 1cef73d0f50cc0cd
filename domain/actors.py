"""Who did it: every event records its actor, an API token (its id and label) or a system job.

A system job is a small value any background work passes when it opens its unit of work
(`UnitOfWork(database, actor=Actor.system(DUNNING))`); a new job needs only a new name, e.g.
`SystemJob("partner-webhooks")`. Work a token starts in the background (a staff token starting a billing
run) is recorded as the job that does it; the run itself keeps who started it.

Who may see which part of an actor is decided here too (`Actor.seen_by`): a partner sees its own tokens'
ids and labels, but of a staff token or another partner's token (a transfer accepted by the receiver
shows in the sender's history) only that it was one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

JOB_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
MAX_JOB_NAME = 32


@dataclass(frozen=True)
class SystemJob:
    """Work the system does on its own (a cron run, a webhook delivery): a lower-case, hyphenated name."""

    name: str

    def __post_init__(self) -> None:
        if len(self.name) > MAX_JOB_NAME or not JOB_NAME.fullmatch(self.name):
            raise ValueError(
                f"a system job is named like 'month-close', at most {MAX_JOB_NAME}: {self.name!r}"
            )

    def __str__(self) -> str:
        return self.name


MONTH_CLOSE = SystemJob("month-close")
DUNNING = SystemJob("dunning")
STRIPE_WEBHOOK = SystemJob("stripe-webhook")
DEMO_SEED = SystemJob("demo-seed")
PARTNER_WEBHOOKS = SystemJob("partner-webhooks")  # delivering feed events to partners' endpoints
OPERATOR_CLI = SystemJob("operator-cli")  # an operator at the `licensing` command line


class ActorKind(StrEnum):
    TOKEN = "token"  # a partner's API token
    STAFF = "staff"  # a staff token
    SYSTEM = "system"  # a system job, no token
    UNKNOWN = "unknown"  # recorded before actors were (migration 0009_attribution)


@dataclass(frozen=True)
class Actor:
    """The token or the job behind a change, as recorded with its event.

    `token_partner_id` is the partner the token belongs to (None for a staff token); the label is the
    token's label when it acted, so a later rename or revocation does not rewrite history.
    """

    token_id: str | None = None
    label: str | None = None
    token_partner_id: str | None = None
    job: str | None = None

    @classmethod
    def token(cls, token_id: str, label: str, partner_id: str | None) -> Actor:
        return cls(token_id=token_id, label=label, token_partner_id=partner_id)

    @classmethod
    def system(cls, job: SystemJob) -> Actor:
        return cls(job=job.name)

    @property
    def kind(self) -> ActorKind:
        if self.token_id is not None:
            return ActorKind.STAFF if self.token_partner_id is None else ActorKind.TOKEN
        return ActorKind.SYSTEM if self.job is not None else ActorKind.UNKNOWN

    def seen_by(self, viewer_partner_id: str | None) -> ActorView:
        """What a viewer may know of this actor: staff (None) everything; a partner its own tokens'
        ids and labels, and of a staff token or another partner's token only its kind (and the job,
        which names no one)."""
        shown = viewer_partner_id is None or self.token_partner_id == viewer_partner_id
        return ActorView(
            kind=self.kind,
            token_id=self.token_id if shown else None,
            label=self.label if shown else None,
            job=self.job,
        )


@dataclass(frozen=True)
class ActorView:
    """An actor as one viewer may see it (see `Actor.seen_by`)."""

    kind: ActorKind
    token_id: str | None
    label: str | None
    job: str | None


UNKNOWN_ACTOR = Actor()
