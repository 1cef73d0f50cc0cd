"""graphql-transport-ws connections that last only as long as their API token.

A connection is authenticated once, at connection_init. Afterwards it is watched through its token's
wake-up key (persistence.tokens.token_signal): revoking, rotating or otherwise shortening a token wakes
the watch, in this process directly (SQLite) or through every worker's NOTIFY listener (PostgreSQL). It
then re-reads the token and, if the token no longer works, closes each of its sockets with 4403 and
cancels everything running on them. One watch serves every socket of a token in this worker (a
thousand dashboards on one token cost one task and one read per change, not a thousand). Every new
operation also re-checks the token first, so nothing runs after the revocation commits.

A subscription result shared by several subscribers (schema.fanout) is serialized once: each socket
gets the same JSON, framed with its own operation id. A subscription caught up with its partner's feed
is handed to the partner's live tail (app.live_tail): its pipeline ends and the operation stays open,
delivered by the tail until the client completes it or the socket ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import datetime
from functools import partial
from typing import Any

from graphql import ExecutionResult, GraphQLError, GraphQLSyntaxError
from starlette.websockets import WebSocketDisconnect
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    CompleteMessage,
    ConnectionInitMessage,
    Message,
    NextMessage,
    NextMessagePayload,
    SubscribeMessage,
)

from app.live_tail import LiveEntry, PartnerTails
from domain.clock import Clock
from domain.principals import Principal
from persistence.database import Database
from persistence.tokens import token_signal
from resolvers.context import RequestContext
from resolvers.feed import LIVE_TAIL, LiveFollower
from resolvers.tokens import still_active
from schema.errors import mask_errors
from schema.fanout import (
    FanoutExecutor,
    SharedData,
    forget_subscription_executor,
    subscription_executor,
)

REVOKED_CLOSE_CODE = 4403
# A watch that could not read its token (database unavailable) tries again after this.
RETRY_SECONDS = 1.0
# A token that did not change is re-read at least this often anyway (a missed wake-up costs this much).
RECHECK_SECONDS = 30.0
log = logging.getLogger("licensing.sockets")


class TokenWatches:
    """One watch per API token in this worker, shared by every open socket authenticated by it."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock
        self._sockets: dict[str, set[TokenBoundHandler]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # One caller object per token, shared by its sockets (a thousand dashboards keep one, not 1,000).
        self._principals: dict[str, Principal] = {}

    def join(self, token_id: str, socket: TokenBoundHandler) -> None:
        sockets = self._sockets.setdefault(token_id, set())
        if not sockets:
            self._principals.pop(token_id, None)
        sockets.add(socket)
        principal = socket.context.principal
        if principal is not None:
            shared = self._principals.setdefault(token_id, principal)
            if shared == principal:  # equal now (a token's label or role may have changed since)
                socket.context.principal = shared
        if token_id not in self._tasks:
            task = asyncio.create_task(self._watch(token_id, sockets), name=f"token-watch {token_id}")
            self._tasks[token_id] = task
            task.add_done_callback(lambda _task: self._done(token_id, task))

    def leave(self, token_id: str, socket: TokenBoundHandler) -> None:
        sockets = self._sockets.get(token_id)
        if sockets is None:
            return
        sockets.discard(socket)
        if not sockets:
            del self._sockets[token_id]
            self._principals.pop(token_id, None)
            task = self._tasks.pop(token_id, None)
            if task is not None:
                task.cancel()

    def watching(self) -> int:
        """Tokens watched now (one task each)."""
        return len(self._tasks)

    def _done(self, token_id: str, task: asyncio.Task[None]) -> None:
        if self._tasks.get(token_id) is task:
            del self._tasks[token_id]
        if not task.cancelled():
            task.exception()  # logged by the watch itself; never "never retrieved"

    async def _watch(self, token_id: str, sockets: set[TokenBoundHandler]) -> None:
        signal = self.database.signal
        while sockets:
            # The waiter is registered before the read: a change committing after the read wakes it.
            with signal.waiter(token_signal(token_id)) as woken:
                try:
                    token = await still_active(self.database, token_id, self.clock.now())
                except Exception:
                    log.warning("could not re-read token %s; retrying", token_id, exc_info=True)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if token is None:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._seconds_until(token.expires_at)):
                        await woken.wait()
        # The token stopped working. A socket joining from now on starts a new watch (which finds the
        # token revoked); every socket of this one is closed (each leaves as it ends).
        if self._sockets.get(token_id) is sockets:
            del self._sockets[token_id]
            self._principals.pop(token_id, None)
        if self._tasks.get(token_id) is asyncio.current_task():
            del self._tasks[token_id]
        await asyncio.gather(*(socket.end() for socket in list(sockets)), return_exceptions=True)

    def _seconds_until(self, expires_at: datetime | None) -> float:
        if expires_at is None:
            return RECHECK_SECONDS
        left = (expires_at - self.clock.now()).total_seconds()
        return min(max(left, 0.01), RECHECK_SECONDS)


class TokenBoundHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """The graphql-transport-ws handler, closing the socket (4403) when its token stops working,
    answering a subscription whose document does not parse with an `error` for that id only, and
    sending a shared subscription result's JSON as serialized once."""

    _watched_token: str | None = None
    _ended = False
    # Operations handed to their partner's live tail, by id (made on the first one).
    _live: dict[str, LiveEntry] | None = None

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        # Cancelled once the init arrived: a done task kept for the socket's life costs ~1 KiB.
        self.connection_init_timeout_task = None
        if self.connection_acknowledged and self.context.principal is not None:
            self._watched_token = self.context.principal.token_id
            self._watches().join(self._watched_token, self)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        # An anonymous socket (no token) has nothing to revoke: what it may run needs no caller.
        anonymous = self.context.principal is None
        if self.connection_acknowledged and not anonymous and not await self._token_works():
            await self.end()
            return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        self._leave_watch()
        await super().shutdown()

    async def run_operation(self, operation: Operation[RequestContext, None]) -> None:
        # A feed subscription that catches up is offered to its partner's live tail (resolvers.feed).
        LIVE_TAIL.set(partial(self._go_live, operation))
        try:
            await super().run_operation(operation)
        finally:
            # The finished task keeps its context: it must not keep the executor or this handler alive.
            LIVE_TAIL.set(None)
            executor = subscription_executor()
            forget_subscription_executor()
            self._pipeline_ended(operation, executor)

    def _pipeline_ended(
        self, operation: Operation[RequestContext, None], executor: FanoutExecutor | None
    ) -> None:
        """Free what an operation's finished pipeline held (an idle live subscription keeps its entry
        only): its task, and its executor unless its entry executes its events with it."""
        entry = None if self._live is None else self._live.get(operation.id)
        if entry is not None and self.operations.get(operation.id) is operation:
            operation.task = None  # a done task keeps its coroutine and context
        if executor is not None and (entry is None or entry.executor is not executor):
            executor.retire()

    def _go_live(self, operation: Operation[RequestContext, None], follower: LiveFollower) -> bool:
        executor = subscription_executor()
        if executor is None or self._ended or self.operations.get(operation.id) is not operation:
            return False
        entry = LiveEntry(self, operation.id, follower, executor)
        # Its pipeline now ends without `complete`; the operation stays registered (limit, duplicate id),
        # without its request (the entry has what its events are executed with).
        operation.completed = True
        operation.query = ""
        operation.variables = None
        if self._live is None:
            self._live = {}
        self._live[operation.id] = entry
        self._tails().join(entry)
        return True

    async def cleanup_operation(self, operation_id: str) -> None:
        self._leave_tail(operation_id)
        operation = self.operations.get(operation_id)
        if operation is not None and operation.task is None:
            del self.operations[operation_id]  # a live one: its pipeline has ended, nothing to cancel
            return
        await super().cleanup_operation(operation_id)

    async def send_live(self, entry: LiveEntry, text: str) -> None:
        """A live tail's ready `next` frame; a socket that is gone leaves the tail."""
        try:
            await self._send_text(text)
        except Exception:
            # The reader of this socket sees it closed and shuts it down; the tail just stops here.
            self._leave_tail(entry.operation_id)

    async def send_live_result(self, operation_id: str, result: ExecutionResult) -> None:
        """A live result that is not shared (it has errors): presented as Strawberry presents it."""
        payload: NextMessagePayload = {"data": result.data}
        if result.errors:
            self.schema.process_errors(list(result.errors))
            mask_errors(result, self.context.request_id)
            payload["errors"] = [error.formatted for error in result.errors or ()]
        with contextlib.suppress(Exception):
            await self.send_message(NextMessage(id=operation_id, type="next", payload=payload))

    async def end_live(self, operation_id: str, result: ExecutionResult) -> None:
        """A live subscription whose stream failed: its error, then `complete`, as from the pipeline."""
        self._leave_tail(operation_id)
        self.operations.pop(operation_id, None)
        await self.send_live_result(operation_id, result)
        with contextlib.suppress(Exception):
            await self.send_message(CompleteMessage(id=operation_id, type="complete"))

    def _leave_tail(self, operation_id: str) -> None:
        entry = None if self._live is None else self._live.pop(operation_id, None)
        if entry is not None:
            self._tails().leave(entry)

    def _tails(self) -> PartnerTails:
        tails: PartnerTails = self.view.live_tails  # type: ignore[attr-defined]
        return tails

    async def send_message(self, message: Message) -> None:
        if message["type"] == "next":
            payload: Any = message["payload"]
            data = payload.get("data")
            if type(data) is SharedData and len(payload) == 1:
                if data.encoded is None:
                    data.encoded = json.dumps(payload, separators=(",", ":"))
                operation_id = json.dumps(message["id"])
                await self._send_text(f'{{"id":{operation_id},"type":"next","payload":{data.encoded}}}')
                return
        await super().send_message(message)

    async def _send_text(self, text: str) -> None:
        try:
            await self.websocket.ws.send_text(text)  # type: ignore[attr-defined]
        except WebSocketDisconnect as gone:
            raise WebSocketDisconnected from gone

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        # A document that does not parse is that operation's problem: answer it with an `error`
        # message instead of closing the socket and every other subscription on it.
        if isinstance(error, GraphQLSyntaxError):
            return None
        return BaseGraphQLTransportWSHandler._get_pre_execution_close_reason(error)

    def _watches(self) -> TokenWatches:
        watches: TokenWatches = self.view.token_watches  # type: ignore[attr-defined]
        return watches

    def _leave_watch(self) -> None:
        if self._watched_token is not None:
            self._watches().leave(self._watched_token, self)
            self._watched_token = None

    async def _token_works(self) -> bool:
        principal = self.context.principal
        if self._ended or principal is None:
            return False
        token = await still_active(self.context.database, principal.token_id, self.context.clock.now())
        return token is not None

    async def end(self) -> None:
        """Close with 4403 and stop every operation on this socket; nothing more runs over it."""
        if self._ended:
            return
        self._ended = True
        self._leave_watch()
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        with contextlib.suppress(Exception):
            await self.websocket.close(
                code=REVOKED_CLOSE_CODE, reason="The API token was revoked or expired."
            )
