"""API tokens: high-entropy secrets shown once, stored as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from domain.errors import DomainError, ErrorCode
from domain.principals import Principal
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome

TOKEN_PREFIX = "plk_"


@dataclass(frozen=True)
class IssuedToken:
    """A new token. `secret` is returned once and never stored."""

    id: str
    secret: str
    partner_id: str | None
    is_staff: bool
    label: str


@dataclass(frozen=True)
class TokenGrant:
    """What createApiToken answers: the token, with its secret only in the call that minted it."""

    id: str
    secret: str | None
    partner_id: str | None
    is_staff: bool
    label: str


def hash_token(secret: str) -> str:
    # Tokens carry 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


async def authenticate(database: Database, secret: str) -> Principal | None:
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.tokens.find_active(hash_token(secret))


UNKNOWN_TOKEN = "The API token is malformed, unknown or revoked."


async def identify_caller(ctx: RequestContext) -> None:
    """Look up the token the request carried (once): its principal, or why it was refused."""
    token, ctx.unread_token = ctx.unread_token, None
    if token is None:
        return
    ctx.principal = await authenticate(ctx.database, token) if token else None
    ctx.credential_problem = UNKNOWN_TOKEN if ctx.principal is None else None


async def create_api_token(
    ctx: RequestContext,
    *,
    partner_id: str | None,
    staff: bool,
    label: str = "",
    idempotency_key: str | None = None,
) -> TokenGrant:
    """Staff: mint a token for a partner, or a staff token. A replay returns it without its secret."""
    call = idempotent_call(
        staff_scope(ctx.require_staff()),
        idempotency_key,
        "createApiToken",
        {"partnerId": partner_id, "staff": staff, "label": label},
    )
    if staff == (partner_id is not None):
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Give either a partner id or staff: true, not both.", field="partnerId"
        )
    async with replay_race(), ctx.unit_of_work() as uow:
        outcome = await stored_outcome(uow, call)
        if outcome is not None:
            # The secret was shown once and only its hash is kept.
            return TokenGrant(outcome["token_id"], None, partner_id, staff, outcome["label"])
        if partner_id is not None and await uow.partners.get(partner_id) is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{partner_id}'.", field="partnerId")
        token = await mint_token(uow, partner_id=partner_id, staff=staff, label=label, at=ctx.clock.now())
        await store_outcome(uow, call, {"token_id": token.id, "label": token.label}, ctx.clock.now())
        return TokenGrant(token.id, token.secret, token.partner_id, token.is_staff, token.label)


async def mint_token(
    uow: UnitOfWork, *, partner_id: str | None, staff: bool, label: str, at: datetime
) -> IssuedToken:
    """Create and store a token inside an open unit of work (the CLI bootstraps staff tokens this way)."""
    token = IssuedToken(
        id="tok_" + secrets.token_hex(8),
        secret=TOKEN_PREFIX + secrets.token_urlsafe(32),
        partner_id=partner_id,
        is_staff=staff,
        label=(label.strip() or ("staff" if staff else "partner"))[:200],
    )
    await uow.tokens.add(
        token_id=token.id,
        token_hash=hash_token(token.secret),
        partner_id=partner_id,
        is_staff=staff,
        label=token.label,
        created_at=at,
    )
    return token
