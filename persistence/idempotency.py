"""Idempotency records: the first outcome of a mutation, kept per caller and key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, PrimaryKeyConstraint, String, Table, Text, select
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.metadata import metadata
from persistence.types import UTCDateTime

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(40), nullable=False),  # partner id, or "staff:<token id>"
    Column("key", String(255), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("outcome", Text, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("scope", "key", name="pk_idempotency_keys"),
)


@dataclass(frozen=True)
class StoredOutcome:
    operation: str
    request_hash: str
    outcome: dict[str, Any]


class IdempotencyStore:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def find(self, scope: str, key: str) -> StoredOutcome | None:
        row = (
            await self._connection.execute(
                select(idempotency_keys).where(
                    idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
                )
            )
        ).one_or_none()
        if row is None:
            return None
        return StoredOutcome(row.operation, row.request_hash, json.loads(row.outcome))

    async def save(
        self, scope: str, key: str, operation: str, request_hash: str, outcome: dict[str, Any], at: datetime
    ) -> None:
        await self._connection.execute(
            idempotency_keys.insert().values(
                scope=scope,
                key=key,
                operation=operation,
                request_hash=request_hash,
                outcome=json.dumps(outcome, sort_keys=True),
                created_at=at,
            )
        )
