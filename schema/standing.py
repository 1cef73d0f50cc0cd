"""Account standing in the API: `viewer { standing { … } }`."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain.standing import Action, StandingState
from domain.standing import Standing as DomainStanding
from resolvers import standing
from schema.context import Info
from schema.enums import described_enum
from schema.errors import ErrorCode
from schema.invoices import Invoice

described_enum(
    StandingState,
    name="StandingState",
    description="Whether the partner may issue and assign licenses: GOOD, NO_PAYMENT_METHOD or PAST_DUE.",
    values={
        StandingState.NO_PAYMENT_METHOD: "No card on file (a new partner starts here): issue and assign "
        "are blocked.",
        StandingState.GOOD: "A card on file and nothing past due: everything is allowed.",
        StandingState.PAST_DUE: "An invoice is past due: issue and assign are blocked until it is paid.",
    },
)
described_enum(
    Action,
    name="StandingAction",
    description="What a partner does to licenses, as far as standing is concerned.",
    values={
        Action.ISSUE: "issueLicenses.",
        Action.ASSIGN: "assignLicense (also moving a license to another site).",
        Action.ACCEPT_TRANSFER: "acceptLicenseTransfer (the receiver starts holding, and paying for, it).",
        Action.REVOKE: "revokeLicense (always allowed).",
        Action.UNASSIGN: "unassignLicense (always allowed).",
        Action.TRANSFER_OUT: "startLicenseTransfer (always allowed).",
    },
)


@strawberry.type(description="An action the current standing blocks, with the error it fails with.")
class BlockedAction:
    action: Action = strawberry.field(description="The blocked action.")
    code: ErrorCode = strawberry.field(description="The error the action fails with while blocked.")


@strawberry.type(description="The partner's account standing, explained.")
class Standing:
    state: StandingState = strawberry.field(description="The current standing.")
    since: datetime | None = strawberry.field(description="When the standing last changed.")
    reason_invoice_id: str | None = strawberry.field(
        description="The past-due invoice that caused the standing, when PAST_DUE."
    )
    allowed_actions: list[Action] = strawberry.field(description="Actions the partner may take now.")
    blocked_actions: list[BlockedAction] = strawberry.field(
        description="Actions refused now, each with its error code."
    )
    partner_id: strawberry.Private[str]

    @strawberry.field(
        description="The oldest invoice still past due: pay it to restore standing (when PAST_DUE)."
    )
    async def reason_invoice(self, info: Info) -> Invoice | None:
        if self.reason_invoice_id is None:
            return None
        reason = await standing.reason_invoice(
            info.context, partner_id=self.partner_id, invoice_id=self.reason_invoice_id
        )
        return None if reason is None else Invoice.from_domain(reason)

    @classmethod
    def from_domain(cls, value: DomainStanding, partner_id: str) -> Standing:
        return cls(
            partner_id=partner_id,
            state=value.state,
            since=value.since,
            reason_invoice_id=value.reason_invoice_id,
            allowed_actions=value.allowed_actions(),
            blocked_actions=[BlockedAction(action=a, code=c) for a, c in value.blocked_actions()],
        )


async def standing_of(info: Info, partner_id: str) -> Standing:
    return Standing.from_domain(await standing.standing_of(info.context, partner_id=partner_id), partner_id)
