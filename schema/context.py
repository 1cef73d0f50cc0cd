"""The Strawberry `Info` type bound to our request context."""

from __future__ import annotations

from strawberry.types import Info as StrawberryInfo

from resolvers.context import RequestContext

Info = StrawberryInfo[RequestContext, None]
