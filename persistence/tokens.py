"""API tokens, stored only as SHA-256 hashes of high-entropy secrets, each with a role and an optional
expiry. Revoking or shortening a token tells every worker (see `changed`), so open websockets close."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Boolean, Column, ForeignKey, Row, String, Table, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.access import ApiToken, Role
from domain.principals import Principal
from persistence.events import FEED_CHANNEL
from persistence.metadata import metadata
from persistence.types import UTCDateTime

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=True, index=True),
    Column("is_staff", Boolean, nullable=False),
    Column("role", String(20), nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=True),
    Column("last_used_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
)

# lastUsedAt is kept to the minute: at most one write per token per minute, whatever the traffic.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# The feed channel carries token changes too, as "token:<id>" (partner ids never contain a colon).
TOKEN_SIGNAL_PREFIX = "token:"


def token_signal(token_id: str) -> str:
    """The wake-up key of one token: websockets authenticated by it wait on it."""
    return TOKEN_SIGNAL_PREFIX + token_id


class TokenRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        # Tokens revoked or shortened in this transaction: their sockets are told after commit.
        self.changed: set[str] = set()

    async def add(
        self,
        *,
        token_id: str,
        token_hash: str,
        partner_id: str | None,
        role: Role,
        label: str,
        created_at: datetime,
        expires_at: datetime | None = None,
    ) -> None:
        await self._connection.execute(
            api_tokens.insert().values(
                id=token_id,
                token_hash=token_hash,
                partner_id=partner_id,
                is_staff=role.is_staff,
                role=role.value,
                label=label,
                created_at=created_at,
                expires_at=expires_at,
            )
        )

    async def find_active(self, token_hash: str, at: datetime) -> ApiToken | None:
        """The token with this hash, unless it is revoked or expired at `at`."""
        row = (
            await self._connection.execute(select(api_tokens).where(api_tokens.c.token_hash == token_hash))
        ).one_or_none()
        token = None if row is None else _token(row)
        return token if token is not None and token.is_active(at) else None

    async def get(self, token_id: str) -> ApiToken | None:
        row = (
            await self._connection.execute(select(api_tokens).where(api_tokens.c.id == token_id))
        ).one_or_none()
        return None if row is None else _token(row)

    async def listed(self, partner_id: str | None) -> list[ApiToken]:
        """A partner's tokens, or (None) every token, newest first."""
        query = select(api_tokens).order_by(api_tokens.c.created_at.desc(), api_tokens.c.id)
        if partner_id is not None:
            query = query.where(api_tokens.c.partner_id == partner_id)
        return [_token(row) for row in await self._connection.execute(query)]

    async def revoke(self, token_id: str, at: datetime) -> bool:
        result = await self._connection.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        await self._tell(token_id)
        return bool(result.rowcount)

    async def expire_by(self, token_id: str, at: datetime) -> None:
        """Let the token work until `at` at the latest (a rotated-out secret's grace period)."""
        await self._connection.execute(
            update(api_tokens)
            .where(
                api_tokens.c.id == token_id,
                or_(api_tokens.c.expires_at.is_(None), api_tokens.c.expires_at > at),
            )
            .values(expires_at=at)
        )
        await self._tell(token_id)

    async def touch(self, token_id: str, at: datetime) -> None:
        """Record a use, unless one was recorded less than a minute before `at`."""
        await self._connection.execute(
            update(api_tokens)
            .where(
                api_tokens.c.id == token_id,
                or_(
                    api_tokens.c.last_used_at.is_(None),
                    api_tokens.c.last_used_at <= at - LAST_USED_RESOLUTION,
                ),
            )
            .values(last_used_at=at)
        )

    async def _tell(self, token_id: str) -> None:
        if self._connection.dialect.name == "postgresql" and token_id not in self.changed:
            # Delivered at commit to every worker's listener, which wakes that token's sockets.
            await self._connection.execute(select(func.pg_notify(FEED_CHANNEL, token_signal(token_id))))
        self.changed.add(token_id)


def principal_of(token: ApiToken) -> Principal:
    return Principal(
        token_id=token.id,
        partner_id=token.partner_id,
        is_staff=token.role.is_staff,
        role_name=token.role.value,
        label=token.label,
    )


def _token(row: Row) -> ApiToken:
    return ApiToken(
        id=row.id,
        partner_id=row.partner_id,
        role=Role(row.role),
        label=row.label,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )
