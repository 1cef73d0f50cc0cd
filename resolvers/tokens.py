"""API tokens: high-entropy secrets shown once, stored as SHA-256 hashes, each with a role. Partner
admins manage their own partner's tokens, never above their own role; staff admins manage all."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from domain.access import ApiToken, Permission, Role, TokenChange, may_grant, token_event
from domain.errors import DomainError, ErrorCode
from domain.principals import Principal
from persistence.database import Database
from persistence.reads import next_read
from persistence.tokens import principal_of
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome

TOKEN_PREFIX = "plk_"
# After rotateApiToken the old secret keeps working this long, so deployments can switch over.
ROTATION_GRACE = timedelta(hours=1)


@dataclass(frozen=True)
class IssuedToken:
    """A new token. `secret` is returned once and never stored."""

    id: str
    secret: str
    partner_id: str | None
    role: Role
    label: str
    expires_at: datetime | None = None

    @property
    def is_staff(self) -> bool:
        return self.role.is_staff


@dataclass(frozen=True)
class TokenGrant:
    """What createApiToken and rotateApiToken answer: the token, with its secret only in the call that
    minted it."""

    id: str
    secret: str | None
    partner_id: str | None
    role: Role
    label: str
    expires_at: datetime | None = None

    @property
    def is_staff(self) -> bool:
        return self.role.is_staff


def hash_token(secret: str) -> str:
    # Tokens carry 256 bits of entropy, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


async def authenticate(
    database: Database,
    secret: str,
    at: datetime,
    reader: Callable[[], AbstractAsyncContextManager[UnitOfWork]] | None = None,
) -> Principal | None:
    """The caller behind a secret, unless it is unknown, revoked or expired at `at` (looked up through
    `reader`, the request's reads, when given)."""
    async with (reader or (lambda: UnitOfWork(database, read_only=True)))() as uow:
        token = await uow.tokens.find_active(hash_token(secret), at)
    if token is None:
        return None
    if token.last_used_at is None or at - token.last_used_at >= timedelta(minutes=1):
        async with UnitOfWork(database) as uow:
            await uow.tokens.touch(token.id, at)
    return principal_of(token)


async def still_active(database: Database, token_id: str, at: datetime) -> ApiToken | None:
    """The token, if it still works at `at` (an open websocket asks this when told of a change, and
    before each operation). Callers asking at the same moment share one read (persistence.reads)."""
    token = await next_read(database).read(("token", token_id), partial(_token, database, token_id))
    return token if token is not None and token.is_active(at) else None


async def _token(database: Database, token_id: str) -> ApiToken | None:
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.tokens.get(token_id)


async def list_api_tokens(ctx: RequestContext) -> list[ApiToken]:
    """A partner admin's own partner's tokens; staff see every token."""
    caller = ctx.require(Permission.TOKENS_READ)
    async with ctx.reader() as uow:
        return await uow.tokens.listed(None if caller.is_staff else caller.require_partner())


def _granted_role(caller: Principal, partner_id: str | None, staff: bool, role: Role | None) -> Role:
    """The role of a new token: given, or admin / staff_admin; never above the caller's own."""
    chosen = role or (Role.STAFF_ADMIN if staff else Role.ADMIN)
    if chosen.is_staff != (partner_id is None):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            "A partner token needs a partner id and a partner role; a staff token neither.",
            field="role" if role is not None else "partnerId",
        )
    if not may_grant(caller.role, chosen):
        raise DomainError(
            ErrorCode.FORBIDDEN, f"A '{caller.role.value}' token may not grant the '{chosen.value}' role."
        )
    return chosen


UNKNOWN_TOKEN = "The API token is malformed, unknown, expired or revoked."


async def identify_caller(ctx: RequestContext) -> None:
    """Look up the token the request carried (once): its principal, or why it was refused."""
    token, ctx.unread_token = ctx.unread_token, None
    if token is None:
        return
    ctx.principal = await authenticate(ctx.database, token, ctx.clock.now(), ctx.reader) if token else None
    ctx.credential_problem = UNKNOWN_TOKEN if ctx.principal is None else None


async def create_api_token(
    ctx: RequestContext,
    *,
    partner_id: str | None,
    staff: bool,
    label: str = "",
    role: Role | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> TokenGrant:
    """Mint a token: staff for any partner or staff; a partner admin for its own partner. A replay
    returns it without its secret."""
    caller = ctx.require(Permission.TOKENS_MANAGE)
    if not caller.is_staff:
        partner_id = partner_id or (None if staff else caller.require_partner())
        if partner_id is not None and partner_id != caller.partner_id:
            raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{partner_id}'.", field="partnerId")
    call = idempotent_call(
        staff_scope(caller) if caller.is_staff else caller.require_partner(),
        idempotency_key,
        "createApiToken",
        {"partnerId": partner_id, "staff": staff, "label": label, "role": role and role.value},
    )
    if staff and partner_id is not None:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "Give either a partner id or staff: true, not both.", field="partnerId"
        )
    granted = _granted_role(caller, partner_id, staff, role)
    now = ctx.clock.now()
    if expires_at is not None and expires_at <= now:
        raise DomainError(ErrorCode.INVALID_INPUT, "expiresAt must be in the future.", field="expiresAt")
    async with replay_race(), ctx.unit_of_work() as uow:
        outcome = await stored_outcome(uow, call)
        if outcome is not None:
            # The secret was shown once and only its hash is kept.
            return TokenGrant(outcome["token_id"], None, partner_id, granted, outcome["label"], expires_at)
        if partner_id is not None and await uow.partners.get(partner_id) is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{partner_id}'.", field="partnerId")
        token = await mint_token(
            uow, partner_id=partner_id, role=granted, label=label, at=now, expires_at=expires_at
        )
        uow.collect(token_event(token, TokenChange.CREATED, now))
        await store_outcome(uow, call, {"token_id": token.id, "label": token.label}, now)
        return TokenGrant(token.id, token.secret, token.partner_id, token.role, token.label, expires_at)


async def _managed_token(uow: UnitOfWork, caller: Principal, token_id: str) -> ApiToken:
    """A token the caller may revoke or rotate; another partner's answers like an unknown one."""
    token = await uow.tokens.get(token_id)
    if token is None or (not caller.is_staff and token.partner_id != caller.partner_id):
        raise DomainError(ErrorCode.NOT_FOUND, f"No API token '{token_id}'.", field="id")
    if not may_grant(caller.role, token.role):
        raise DomainError(
            ErrorCode.FORBIDDEN, f"A '{caller.role.value}' token may not manage a '{token.role.value}' token."
        )
    return token


async def revoke_api_token(ctx: RequestContext, *, token_id: str) -> ApiToken:
    """Stop a token now: HTTP refuses it from the next request, open websockets close (4403)."""
    caller = ctx.require(Permission.TOKENS_MANAGE)
    now = ctx.clock.now()
    async with ctx.unit_of_work() as uow:
        await _managed_token(uow, caller, token_id)
        await uow.tokens.revoke(token_id, now)
        revoked = await uow.tokens.get(token_id)
        assert revoked is not None
        uow.collect(token_event(revoked, TokenChange.REVOKED, now))
    return revoked


async def rotate_api_token(ctx: RequestContext, *, token_id: str) -> TokenGrant:
    """A new token with the same partner, role, label and expiry; the old secret keeps working for
    ROTATION_GRACE (or until its own expiry, if sooner), then stops like a revoked one."""
    caller = ctx.require(Permission.TOKENS_MANAGE)
    now = ctx.clock.now()
    async with ctx.unit_of_work() as uow:
        old = await _managed_token(uow, caller, token_id)
        if not old.is_active(now):
            raise DomainError(ErrorCode.INVALID_INPUT, "A revoked or expired token cannot be rotated.", "id")
        token = await mint_token(
            uow, partner_id=old.partner_id, role=old.role, label=old.label, at=now, expires_at=old.expires_at
        )
        await uow.tokens.expire_by(old.id, now + ROTATION_GRACE)
        uow.collect(token_event(token, TokenChange.CREATED, now, rotated_from=old.id))
        valid_until = min(now + ROTATION_GRACE, old.expires_at or now + ROTATION_GRACE).isoformat()
        uow.collect(token_event(old, TokenChange.ROTATED, now, replaced_by=token.id, valid_until=valid_until))
    return TokenGrant(token.id, token.secret, token.partner_id, token.role, token.label, token.expires_at)


async def mint_token(
    uow: UnitOfWork,
    *,
    partner_id: str | None,
    role: Role,
    label: str,
    at: datetime,
    expires_at: datetime | None = None,
) -> IssuedToken:
    """Create and store a token inside an open unit of work (the CLI bootstraps staff tokens this way)."""
    token = IssuedToken(
        id="tok_" + secrets.token_hex(8),
        secret=TOKEN_PREFIX + secrets.token_urlsafe(32),
        partner_id=partner_id,
        role=role,
        label=(label.strip() or role.value)[:200],
        expires_at=expires_at,
    )
    await uow.tokens.add(
        token_id=token.id,
        token_hash=hash_token(token.secret),
        partner_id=partner_id,
        role=role,
        label=token.label,
        created_at=at,
        expires_at=expires_at,
    )
    return token
