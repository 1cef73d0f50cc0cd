"""The license operations as the portal sends them, and small helpers the license tests share."""

from __future__ import annotations

import secrets
from typing import Any

from tests.integration.conftest import Api

LICENSE_FIELDS = "id key state site issuedAt assignedAt revokedAt transferredAt heldFrom heldUntil"
ERRORS = "errors { code message field }"

ISSUE = f"""
mutation($input: IssueLicensesInput!) {{
  issueLicenses(input: $input) {{ licenses {{ {LICENSE_FIELDS} product {{ slug }} }} {ERRORS} }}
}}"""
ASSIGN = f"""
mutation($input: AssignLicenseInput!) {{
  assignLicense(input: $input) {{ license {{ {LICENSE_FIELDS} }} {ERRORS} }}
}}"""
UNASSIGN = f"""
mutation($input: LicenseKeyInput!) {{
  unassignLicense(input: $input) {{ license {{ {LICENSE_FIELDS} }} {ERRORS} }}
}}"""
REVOKE = f"""
mutation($input: LicenseKeyInput!) {{
  revokeLicense(input: $input) {{ license {{ {LICENSE_FIELDS} }} {ERRORS} }}
}}"""
START_TRANSFER = f"""
mutation($input: LicenseKeyInput!) {{
  startLicenseTransfer(input: $input) {{
    code transfer {{ id status createdAt expiresAt acceptedAt license {{ key state }} }} {ERRORS}
  }}
}}"""
ACCEPT_TRANSFER = f"""
mutation($input: AcceptLicenseTransferInput!) {{
  acceptLicenseTransfer(input: $input) {{ license {{ {LICENSE_FIELDS} }} {ERRORS} }}
}}"""
CANCEL_TRANSFER = f"""
mutation($input: LicenseKeyInput!) {{
  cancelLicenseTransfer(input: $input) {{ transfer {{ id status license {{ key state }} }} {ERRORS} }}
}}"""
LICENSE = f"""
query($key: String!) {{
  license(key: $key) {{
    {LICENSE_FIELDS} product {{ slug name }}
    events {{ seq action fromState toState at site previousSite actorTokenId requestId }}
  }}
}}"""
COUNTS = "{ licenseCounts { issued assigned revoked transferred notRevoked all } }"


async def issue(api: Api, token: str, product: str = "jetpack-backup", quantity: int = 1) -> list[str]:
    """Issue licenses and return their keys (asserting it worked)."""
    body = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": product, "quantity": quantity}]}}, token
    )
    payload = body["issueLicenses"]
    assert payload["errors"] == [], payload
    return [license["key"] for license in payload["licenses"]]


async def mutate(api: Api, token: str, operation: str, **input: Any) -> dict[str, Any]:
    """Run one of the license mutations and return its payload."""
    body = await api.data(operation, {"input": input}, token)
    payload: dict[str, Any] = next(iter(body.values()))
    return payload


async def assign(api: Api, token: str, key: str, site: str) -> dict[str, Any]:
    return await mutate(api, token, ASSIGN, key=key, site=site)


def fresh_site(name: str = "client") -> str:
    """A site no other test uses (the database is shared and sites are unique per product)."""
    return f"https://{name}-{secrets.token_hex(4)}.example.com"
