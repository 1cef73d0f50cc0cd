"""The HTTP edge: every request gets a request id, a capped body and a time budget.

These run before routing, so a hostile body (50 MB, never-ending, or slow) costs at most
`max_body_bytes` of memory and `timeout_seconds` of time, and every refusal answers in the one error
model: `{"errors": [{"message", "extensions": {"code", "requestId"}}]}` with `X-Request-Id`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
from collections.abc import Awaitable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import ErrorCode

log = logging.getLogger("licensing.http")

# A caller's own X-Request-Id is kept when it is short and plain (it is written to logs).
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
MAX_JSON_DEPTH = 32


def new_request_id() -> str:
    """32 random hex digits, like a UUID4's. Request ids only tell requests apart in logs and events, so
    they come from the (per-process, reseeded after fork) Mersenne Twister, not from a system call."""
    return f"{random.getrandbits(128):032x}"


def request_id_for(scope: Scope) -> str:
    """The request id of a request that went through `RequestEdge` (a new one otherwise)."""
    state = scope.get("state") or {}
    request_id = state.get("request_id")
    return request_id if isinstance(request_id, str) else new_request_id()


def error_body(code: ErrorCode, message: str, request_id: str) -> bytes:
    """The error model for a request refused as a whole (no field ran)."""
    error = {"message": message, "extensions": {"code": code.value, "requestId": request_id}}
    return json.dumps({"errors": [error]}).encode()


def json_depth_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether arrays and objects nest deeper than `limit` (iterative: no recursion to exhaust)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return False


class BodyTooLarge(Exception):
    pass


class RequestEdge:
    """ASGI middleware: request id, body cap (413) and time budget for every HTTP request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, timeout_seconds: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.timeout_seconds = timeout_seconds

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: what it only passes on (a websocket, lifespan) keeps no frame of
        # this middleware for the connection's life (a few hundred bytes per open socket).
        if scope["type"] not in ("http", "websocket"):
            return self.app(scope, receive, send)
        request_id = self._request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        if scope["type"] == "websocket":
            return self.app(scope, receive, send)
        return self._http(scope, receive, send, request_id)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = False
        budget: asyncio.Timeout | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
                if budget is not None and not any(k.lower() == b"content-length" for k, _ in headers):
                    # A streamed body (the audit log export) reads in short batches of its own; the
                    # budget covers the time to its first byte, not how fast the client reads.
                    budget.reschedule(None)
            await send(message)

        try:
            async with asyncio.timeout(self.timeout_seconds) as budget:
                body = await self._read_body(scope, receive)
                await self.app(scope, _replay(body, receive), send_with_id)
        except BodyTooLarge:
            await self._refuse(send_with_id, 413, ErrorCode.REQUEST_TOO_LARGE, self._too_large(), request_id)
        except TimeoutError:
            log.warning("request %s cut off after %s s", request_id, self.timeout_seconds)
            if not started:
                message = (
                    f"The request took longer than {self.timeout_seconds:g} s and was stopped; its "
                    "transaction was rolled back. Retry with the same idempotencyKey to be safe."
                )
                await self._refuse(send_with_id, 503, ErrorCode.REQUEST_TIMEOUT, message, request_id)

    def _too_large(self) -> str:
        return f"The request body is larger than {self.max_body_bytes} bytes."

    @staticmethod
    def _request_id(scope: Scope) -> str:
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                if _REQUEST_ID.match(text):
                    return text
        return new_request_id()

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The whole body, refused as soon as it is (or says it will be) over the cap."""
        for name, value in scope.get("headers", []):
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_body_bytes):
                raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away; the app sees an empty body and the disconnect
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _refuse(send: Send, status: int, code: ErrorCode, message: str, request_id: str) -> None:
        body = error_body(code, message, request_id)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that hands the app the body already read, then waits on the real one."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
