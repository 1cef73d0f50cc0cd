"""Site URLs: one spelling per site, and nothing that is not a public web address."""

from __future__ import annotations

import pytest

from domain.errors import DomainError, ErrorCode
from domain.sites import normalize_site


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("example.com", "https://example.com"),
        ("HTTPS://Example.COM/", "https://example.com"),
        ("http://example.com:80/blog//?utm_source=x#top", "http://example.com/blog"),
        ("https://example.com:8443", "https://example.com:8443"),
        ("https://bücher.de", "https://xn--bcher-kva.de"),
        ("https://shop.example.com.", "https://shop.example.com"),
        ("  https://example.com/Blog  ", "https://example.com/Blog"),
    ],
)
def test_sites_are_normalized(given: str, stored: str) -> None:
    assert normalize_site(given) == stored


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "mailto:someone@example.com",
        "ftp://example.com",
        "https://user:pass@example.com",
        "https://evil.com@example.com",
        "http://127.0.0.1",
        "http://[::1]/",
        "http://localhost",
        "https://intranet",
        "https://exa mple.com",
        "https://example.com/\x00",
        "https://example.com/../secret",
        "https://-bad-.example.com",
        "https://example.com:99999",
        "https://" + "a" * 64 + ".com",
        "https://example.com/" + "p" * 300,
    ],
)
def test_hostile_and_malformed_sites_are_refused(hostile: str) -> None:
    with pytest.raises(DomainError) as refused:
        normalize_site(hostile)
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_SITE, "site")
