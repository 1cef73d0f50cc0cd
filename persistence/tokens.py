"""API tokens, stored only as SHA-256 hashes of high-entropy secrets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Column, ForeignKey, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.principals import Principal
from persistence.metadata import metadata
from persistence.types import UTCDateTime

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=True, index=True),
    Column("is_staff", Boolean, nullable=False),
    Column("label", String(200), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
)


class TokenRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(
        self,
        *,
        token_id: str,
        token_hash: str,
        partner_id: str | None,
        is_staff: bool,
        label: str,
        created_at: datetime,
    ) -> None:
        await self._connection.execute(
            api_tokens.insert().values(
                id=token_id,
                token_hash=token_hash,
                partner_id=partner_id,
                is_staff=is_staff,
                label=label,
                created_at=created_at,
            )
        )

    async def find_active(self, token_hash: str) -> Principal | None:
        row = (
            await self._connection.execute(
                select(api_tokens.c.id, api_tokens.c.partner_id, api_tokens.c.is_staff).where(
                    api_tokens.c.token_hash == token_hash, api_tokens.c.revoked_at.is_(None)
                )
            )
        ).one_or_none()
        if row is None:
            return None
        return Principal(token_id=row.id, partner_id=row.partner_id, is_staff=row.is_staff)

    async def revoke(self, token_id: str, at: datetime) -> bool:
        result = await self._connection.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        return bool(result.rowcount)
