"""graphql-transport-ws connections that last only as long as their API token.

A connection is authenticated once, at connection_init. Afterwards it waits on its token's wake-up key
(persistence.tokens.token_signal): revoking, rotating or otherwise shortening a token wakes it, in this
process directly (SQLite) or through every worker's NOTIFY listener (PostgreSQL). It then re-reads the
token and, if the token no longer works, closes with 4403 and cancels everything running on it. Every
new operation also re-checks the token first, so nothing runs after the revocation commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    SubscribeMessage,
)

from persistence.tokens import token_signal
from resolvers.context import RequestContext
from resolvers.tokens import still_active

REVOKED_CLOSE_CODE = 4403
# A token that did not change is re-read at least this often anyway (a missed wake-up costs this much).
RECHECK_SECONDS = 30.0


class TokenBoundHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """The graphql-transport-ws handler, closing the socket (4403) when its token stops working, and
    answering a subscription whose document does not parse with an `error` for that id only."""

    _watcher: asyncio.Task[None] | None = None
    _ended = False

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_acknowledged and self.context.principal is not None:
            self._watcher = asyncio.create_task(self._watch_token(self.context.principal.token_id))

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # An anonymous socket (no token) has nothing to revoke: what it may run needs no caller.
        anonymous = self.context.principal is None
        if self.connection_acknowledged and not anonymous and not await self._token_works():
            await self._end()
            return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await super().shutdown()

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        # A document that does not parse is that operation's problem: answer it with an `error`
        # message instead of closing the socket and every other subscription on it.
        if isinstance(error, GraphQLSyntaxError):
            return None
        return BaseGraphQLTransportWSHandler._get_pre_execution_close_reason(error)

    async def _watch_token(self, token_id: str) -> None:
        signal = self.context.database.signal
        while not self._ended:
            with signal.waiter(token_signal(token_id)) as woken:
                works, expires_at = await self._expiry()
                if not works:
                    await self._end()
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), timeout=self._seconds_until(expires_at))

    async def _expiry(self) -> tuple[bool, datetime | None]:
        """Whether the token still works, and when it expires (None: never)."""
        principal = self.context.principal
        if principal is None:
            return False, None
        token = await still_active(self.context.database, principal.token_id, self.context.clock.now())
        return token is not None, None if token is None else token.expires_at

    def _seconds_until(self, expires_at: datetime | None) -> float:
        if expires_at is None:
            return RECHECK_SECONDS
        left = (expires_at - self.context.clock.now()).total_seconds()
        return min(max(left, 0.01), RECHECK_SECONDS)

    async def _token_works(self) -> bool:
        if self._ended:
            return False
        works, _expires_at = await self._expiry()
        return works

    async def _end(self) -> None:
        """Close with 4403 and stop every operation on this socket; nothing more runs over it."""
        if self._ended:
            return
        self._ended = True
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        with contextlib.suppress(Exception):
            await self.websocket.close(
                code=REVOKED_CLOSE_CODE, reason="The API token was revoked or expired."
            )
