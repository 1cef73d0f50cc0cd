"""Who is calling: a partner acting on its own account, or staff operating the system, with a role."""

from __future__ import annotations

from dataclasses import dataclass

from domain.access import Permission, Role, allows, roles_sentence
from domain.errors import DomainError, ErrorCode


@dataclass(frozen=True)
class Principal:
    token_id: str
    partner_id: str | None
    is_staff: bool
    # Tokens made before roles existed were migrated to admin / staff_admin; None means the same here.
    role_name: str | None = None
    label: str = ""

    @property
    def role(self) -> Role:
        if self.role_name is not None:
            return Role(self.role_name)
        return Role.STAFF_ADMIN if self.is_staff else Role.ADMIN

    def require(self, permission: Permission) -> Principal:
        """Refuse (FORBIDDEN, naming the permission) unless this caller's role holds `permission`."""
        if not allows(self.role, permission):
            raise DomainError(
                ErrorCode.FORBIDDEN,
                f"A '{self.role.value}' token may not do this. {roles_sentence(permission)}",
            )
        return self

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
