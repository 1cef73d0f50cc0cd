"""Who is calling: a partner acting on its own account, or staff operating the system."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import DomainError, ErrorCode


@dataclass(frozen=True)
class Principal:
    token_id: str
    partner_id: str | None
    is_staff: bool

    def require_partner(self) -> str:
        """The partner this caller acts for; staff tokens have none."""
        if self.partner_id is None:
            raise DomainError(ErrorCode.FORBIDDEN, "This operation needs a partner token.")
        return self.partner_id

    def require_staff(self) -> None:
        if not self.is_staff:
            raise DomainError(ErrorCode.FORBIDDEN, "This operation needs a staff token.")


def require_principal(principal: Principal | None) -> Principal:
    if principal is None:
        raise DomainError(
            ErrorCode.UNAUTHENTICATED, "Send a valid API token as 'Authorization: Bearer <token>'."
        )
    return principal
