"""Idempotency keys for every mutation: the first successful outcome is kept per caller and key.

The stored outcome is a set of references (license ids, a transfer id), not the response itself: a
replay rebuilds the payload from the current rows, so it shows the objects as they are now. Only
successes are stored: a refused attempt rolls back with everything else, so the client may retry
with the same key. The same key with another operation or input is refused (IDEMPOTENCY_KEY_REUSED).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from domain.errors import DomainError, ErrorCode
from domain.principals import Principal
from persistence.unit_of_work import UnitOfWork

MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class IdempotentCall:
    scope: str  # partner id, or "staff:<token id>"
    key: str
    operation: str
    request_hash: str


def idempotent_call(
    scope: str, key: str | None, operation: str, arguments: dict[str, Any]
) -> IdempotentCall | None:
    """Describe a mutation call made with `key`; None when the caller sent no key."""
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"An idempotency key has 1 to {MAX_KEY_LENGTH} characters.",
            "idempotencyKey",
        )
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    request_hash = hashlib.sha256(f"{operation}\n{canonical}".encode()).hexdigest()
    return IdempotentCall(scope, key, operation, request_hash)


async def stored_outcome(uow: UnitOfWork, call: IdempotentCall | None) -> dict[str, Any] | None:
    """The outcome kept for this key, if the call was made before. Call it under the caller's lock."""
    if call is None:
        return None
    stored = await uow.idempotency.find(call.scope, call.key)
    if stored is None:
        return None
    if (stored.operation, stored.request_hash) != (call.operation, call.request_hash):
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            f"This idempotency key was already used for another request ({stored.operation}).",
            "idempotencyKey",
        )
    return stored.outcome


async def lock_and_replay(
    uow: UnitOfWork, partner_id: str, call: IdempotentCall | None
) -> dict[str, Any] | None:
    """Take the partner's lock, then read the outcome kept for this key. Under the lock, a replay racing
    the first call waits for it to commit and then finds its outcome."""
    await uow.partners.lock(partner_id)
    return await stored_outcome(uow, call)


async def store_outcome(
    uow: UnitOfWork, call: IdempotentCall | None, outcome: dict[str, Any], at: datetime
) -> None:
    """Keep the outcome in the same transaction as the change it describes."""
    if call is not None:
        await uow.idempotency.save(call.scope, call.key, call.operation, call.request_hash, outcome, at)


def staff_scope(principal: Principal) -> str:
    """Staff keys are kept per token: two operators never collide on a key."""
    return f"staff:{principal.token_id}"


@contextlib.asynccontextmanager
async def replay_race() -> AsyncIterator[None]:
    """Around a unit of work whose only unique write is its idempotency row (the staff operations, which
    take no partner lock): a concurrent request with the same key won, so ask the caller to replay."""
    try:
        yield
    except IntegrityError as error:
        raise DomainError(
            ErrorCode.CONFLICT,
            "Another request with this idempotency key is in progress; send it again to get its response.",
            "idempotencyKey",
        ) from error
