"""The policy table and license checks for sites, on plain domain objects."""

from __future__ import annotations

import pytest

from domain.access import PARTNER_ROLES, POLICY, Permission, Role, allows, may_grant
from domain.errors import DomainError, ErrorCode
from domain.license_checks import CheckReason, check_license
from domain.licenses import License
from domain.principals import Principal

SITE = "https://client.example.com"


def holding(state: str, site: str | None = None) -> License:
    return License(
        id="lic_1", key="backup_abc", partner_id="ptr_1", product_slug="backup", state=state, site=site
    )


def test_every_permission_is_in_the_policy_table_and_staff_support_moves_no_money() -> None:
    assert set(POLICY) == set(Permission)
    reads = {"public", "read", "list"}
    writes = [p for p in Permission if p.value.rpartition(":")[2] not in reads]
    assert [p for p in writes if allows(Role.STAFF_SUPPORT, p)] == []
    assert [role for role in Role if allows(role, Permission.INVOICE_ADJUST)] == [Role.STAFF_ADMIN]


def test_a_partner_admin_grants_partner_roles_only_and_other_roles_grant_nothing() -> None:
    assert [role for role in Role if may_grant(Role.ADMIN, role)] == [r for r in Role if r in PARTNER_ROLES]
    assert all(may_grant(Role.STAFF_ADMIN, role) for role in Role)
    assert not any(may_grant(granter, Role.READ_ONLY) for granter in (Role.LICENSES, Role.STAFF_SUPPORT))


def test_tokens_from_before_roles_act_as_admin_and_staff_admin() -> None:
    assert Principal("tok_1", "ptr_1", False).role is Role.ADMIN
    assert Principal("tok_2", None, True).role is Role.STAFF_ADMIN
    with pytest.raises(DomainError) as refused:
        Principal("tok_3", "ptr_1", False, role_name="billing").require(Permission.LICENSES_WRITE)
    assert refused.value.code is ErrorCode.FORBIDDEN
    assert "`licenses:write` (roles: admin, licenses)" in refused.value.message


@pytest.mark.parametrize(
    ("found", "asked", "reason"),
    [
        (None, "backup_abc", CheckReason.NOT_FOUND),
        (holding("assigned", SITE), "backup_abd", CheckReason.NOT_FOUND),
        (holding("revoked"), "backup_abc", CheckReason.REVOKED),
        (holding("transferred"), "backup_abc", CheckReason.REVOKED),
        (holding("issued"), "backup_abc", CheckReason.NOT_ASSIGNED),
        (holding("assigned", "https://other.example.com"), "backup_abc", CheckReason.WRONG_SITE),
        (holding("assigned", SITE), "backup_abc", None),
    ],
)
def test_a_license_check_names_one_reason_and_never_the_partner_or_site(
    found: License | None, asked: str, reason: CheckReason | None
) -> None:
    check = check_license(found, asked, SITE)
    assert (check.valid, check.reason) == (reason is None, reason)
    assert "ptr_1" not in repr(check) and "other.example.com" not in repr(check)
