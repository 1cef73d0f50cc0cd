"""Who made a change, as the API shows it on every event and history entry (`actor`)."""

from __future__ import annotations

import strawberry

from domain.actors import Actor as RecordedActor
from domain.actors import ActorKind, ActorView
from schema.context import Info
from schema.enums import described_enum

described_enum(
    ActorKind,
    name="ActorKind",
    description="What kind of actor made a change.",
    values={
        ActorKind.TOKEN: "A partner's API token.",
        ActorKind.STAFF: "A staff token.",
        ActorKind.SYSTEM: "A system job, no token (month close, dunning, Stripe webhook, ...).",
        ActorKind.UNKNOWN: "Recorded before actors were (migration 0009_attribution).",
    },
)


@strawberry.type(
    description="Who made a change: an API token (its id and its label when it acted) or a system job "
    "(month-close, dunning, stripe-webhook, ...). A partner sees its own tokens' id and label; of a staff "
    "token or another partner's token only the kind."
)
class Actor:
    kind: ActorKind = strawberry.field(
        description="A partner's token, a staff token, a system job, or unknown."
    )
    token_id: strawberry.ID | None = strawberry.field(
        description="The API token that acted (null for a system job, or when not yours to see)."
    )
    label: str | None = strawberry.field(description="That token's label when it acted.")
    job: str | None = strawberry.field(
        description="The system job that made the change, or through which the token made it "
        "(a staff token closing a month: month-close)."
    )

    @classmethod
    def of(cls, view: ActorView) -> Actor:
        return cls(
            kind=view.kind,
            token_id=None if view.token_id is None else strawberry.ID(view.token_id),
            label=view.label,
            job=view.job,
        )


# Seen by nobody in particular: what a caller without a principal may know (only kinds and jobs).
NO_ONE = "\x00"


def viewer_partner(info: Info) -> str | None:
    """Whose eyes an actor is shown to: None for staff (everything), else the caller's partner."""
    principal = info.context.principal
    if principal is None:
        return NO_ONE
    return None if principal.is_staff else (principal.partner_id or NO_ONE)


def actor_for(info: Info, actor: RecordedActor) -> Actor:
    """The recorded actor as this request's caller may see it."""
    return Actor.of(actor.seen_by(viewer_partner(info)))
