"""The Strawberry `Info` type bound to our request context."""

from __future__ import annotations

from functools import partial
from typing import Any, cast

from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from resolvers.context import RequestContext

Info = StrawberryInfo[RequestContext, None]


def request_loader(info: Info, name: str, load: Any) -> DataLoader[Any, Any]:
    """One batching loader per request and name: every `.load` in the same tick is one call."""
    context: RequestContext = info.context
    if name not in context.loaders:
        context.loaders[name] = DataLoader(load_fn=partial(load, context))
    return cast(DataLoader[Any, Any], context.loaders[name])
