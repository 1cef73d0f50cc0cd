"""The Relay `Node` interface: every object a client caches by id implements it.

Kept apart from `schema/nodes.py` (the `node`/`nodes` root fields) because the types implementing it
import this module, and the root fields import those types.
"""

from __future__ import annotations

import strawberry


@strawberry.interface(
    description="An object with a globally unique, opaque id (Relay's object identification): refetch "
    "it with `node(id:)`. Relay, Apollo and urql caches normalize on `id`."
)
class Node:
    id: strawberry.ID = strawberry.field(
        description="Globally unique and stable: no two objects of any type share it. Treat it as opaque."
    )
