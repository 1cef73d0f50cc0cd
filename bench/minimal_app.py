"""The floor for bench/http_requests.py: a minimal Strawberry app with ParserCache and ValidationCache.

It answers `{ support { email } }` from memory, with no middleware, context or database, so the
difference between it and `licensing serve` is what the service adds around the same GraphQL engine.

    .venv/bin/uvicorn --app-dir bench minimal_app:app --port 8001
"""

from __future__ import annotations

import strawberry
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache


@strawberry.type(description="How to reach support.")
class Support:
    email: str = strawberry.field(description="Support e-mail address.")


@strawberry.type(description="The floor's only root field.")
class Query:
    @strawberry.field(description="A constant, from memory.")
    def support(self) -> Support:
        return Support(email="support@example.com")


schema = strawberry.Schema(query=Query, extensions=[ParserCache, ValidationCache])
app = GraphQL(schema, graphql_ide=None)
