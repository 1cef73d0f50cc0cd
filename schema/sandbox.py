"""Sandbox mode in the API: staff move the clock forward."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from resolvers import sandbox
from schema.context import Info
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt


@strawberry.input(description="Where to move the sandbox clock.")
class AdvanceSandboxClockInput:
    to: datetime = strawberry.field(description="The new instant (with offset); never earlier than now.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="The result of advanceSandboxClock.")
class AdvanceSandboxClockPayload:
    now: datetime | None = strawberry.field(description="The clock after the move.")
    errors: list[UserError] = strawberry.field(description="Why the clock did not move, if it did not.")


@strawberry.type
class SandboxMutation:
    @strawberry.mutation(description="Staff, sandbox mode only: move the service clock forward.")
    async def advance_sandbox_clock(
        self, info: Info, input: Annotated[AdvanceSandboxClockInput, MUTATION_INPUT]
    ) -> AdvanceSandboxClockPayload:
        now, errors = await attempt(
            sandbox.advance_sandbox_clock(info.context, to=input.to, idempotency_key=input.idempotency_key)
        )
        return AdvanceSandboxClockPayload(now=now, errors=errors)
