"""Support contact in the API."""

from __future__ import annotations

import strawberry

from resolvers import support
from schema.context import Info


@strawberry.type(description="Who to contact for help with licenses or billing.")
class SupportContact:
    message: str = strawberry.field(description="Guidance shown to partners.")
    email: str = strawberry.field(description="Support e-mail address.")
    url: str = strawberry.field(description="Support page.")


@strawberry.type
class SupportQuery:
    @strawberry.field(description="How to reach support (no token needed).")
    def support(self, info: Info) -> SupportContact:
        # From settings: nothing to await, so no coroutine per request.
        contact = support.support(info.context)
        return SupportContact(message=contact.message, email=contact.email, url=contact.url)
