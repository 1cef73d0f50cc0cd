"""Site URLs: one spelling per site, and nothing that is not a public web address."""

from __future__ import annotations

import idna
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from domain.errors import DomainError, ErrorCode
from domain.sites import normalize_site

FAST = settings(max_examples=200, deadline=None)
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


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
        ("https://h.example/%73hop", "https://h.example/shop"),
        ("https://h.example/%7Eanna/%2D%5F", "https://h.example/~anna/-_"),
        ("https://h.example/caf%c3%a9", "https://h.example/caf%C3%A9"),
        ("https://h.example/100%25", "https://h.example/100%25"),
        ("https://%65xample.com/shop", "https://example.com/shop"),
        ("https://caf%C3%A9.example", "https://xn--caf-dma.example"),
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
        "https://h.example/a/%2e%2e/shop",
        "https://h.example/%2E%2E/shop",
        "https://h.example/.%2e/shop",
        "https://h.example/%2e/shop",
        "https://h.example/shop%2F",
        "https://h.example/shop%2fadmin",
        "https://h.example/shop%5C..",
        "https://h.example/shop%3F",
        "https://h.example/shop%23top",
        "https://h.example/shop;",
        "https://h.example/shop;jsessionid=1",
        "https://h.example/shop%3B",
        "https://h.example/shop%00",
        "https://h.example/%zz",
        "https://h.example/%4",
        "https://h.example/shop%",
        "https://%zzexample.com",
        "https://%31%32%37.0.0.1/",
        "https://exam%2Fple.com",
        "https://%ff.example",
    ],
)
def test_hostile_and_malformed_sites_are_refused(hostile: str) -> None:
    with pytest.raises(DomainError) as refused:
        normalize_site(hostile)
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_SITE, "site")


# Strategies: a canonical site, then spellings of it a client could send.
# IDNA reserves hyphens in the 3rd and 4th positions (as in "xn--"): such a label is no domain name.
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True).filter(
    lambda label: label[2:4] != "--"
)
_tld = st.from_regex(r"[a-z]{2,6}", fullmatch=True).filter(
    lambda tld: tld not in {"localhost", "local", "internal", "invalid", "test"}
)
_segment = st.text(alphabet=UNRESERVED + "!$&'()*+,=:@", min_size=1, max_size=8).filter(
    lambda segment: segment not in {".", ".."}
)


@st.composite
def canonical_sites(draw: st.DrawFn) -> tuple[str, str, int | None, list[str]]:
    scheme = draw(st.sampled_from(["http", "https"]))
    host = ".".join([*draw(st.lists(_label, min_size=1, max_size=3)), draw(_tld)])
    port = draw(st.none() | st.integers(1, 65535).filter(lambda port: port not in {80, 443}))
    return scheme, host, port, draw(st.lists(_segment, max_size=4))


def spelled(scheme: str, host: str, port: int | None, segments: list[str]) -> str:
    return f"{scheme}://{host}{'' if port is None else f':{port}'}{''.join('/' + s for s in segments)}"


def percent_encoded(text: str, draw: st.DrawFn, only: str = UNRESERVED) -> str:
    """Encode some of the characters of `text` (from `only`), with either case of hex digits."""
    out = []
    for char in text:
        if char in only and draw(st.booleans()):
            escape = f"%{ord(char):02X}"
            out.append(escape.lower() if draw(st.booleans()) else escape)
        else:
            out.append(char)
    return "".join(out)


def case_changed(text: str, draw: st.DrawFn) -> str:
    return "".join(char.swapcase() if draw(st.booleans()) else char for char in text)


@FAST
@given(canonical_sites(), st.data())
def test_every_spelling_of_a_site_normalizes_to_the_same_site(
    site: tuple[str, str, int | None, list[str]], data: st.DataObject
) -> None:
    scheme, host, port, segments = site
    stored = normalize_site(spelled(scheme, host, port, segments))
    draw = data.draw
    default_port = {"http": 80, "https": 443}[scheme]
    netloc = percent_encoded(case_changed(host, draw), draw, only="abcdefghijklmnopqrstuvwxyz0123456789")
    netloc += f":{port}" if port is not None else draw(st.sampled_from(["", f":{default_port}"]))
    path = "".join("/" + percent_encoded(segment, draw) for segment in segments)
    path += draw(st.sampled_from(["", "/", "//"]))
    query = draw(st.sampled_from(["", "?", "?utm_source=x&a=%7A"]))
    fragment = draw(st.sampled_from(["", "#", "#top"]))
    variant = f"{case_changed(scheme, draw)}://{netloc}{path}{query}{fragment}"
    assert normalize_site(variant) == stored
    assert stored == spelled(scheme, host, port, segments)


def test_a_site_of_the_longest_length_fully_percent_encoded_is_the_same_site() -> None:
    stored = "https://h.example/" + "s" * (255 - len("https://h.example/"))
    encoded = "https://h.example/" + "%73" * (255 - len("https://h.example/"))
    assert normalize_site(encoded) == normalize_site(stored) == stored


@FAST
@given(
    canonical_sites(),
    st.lists(st.text(alphabet=UNRESERVED + "%/;?#:@!$&'()*+,=", max_size=12), max_size=3),
    st.lists(st.integers(0, 255), max_size=4),
)
def test_normalizing_a_stored_site_again_changes_nothing(
    site: tuple[str, str, int | None, list[str]], extra: list[str], octets: list[int]
) -> None:
    scheme, host, port, segments = site
    escapes = "".join(f"%{octet:02x}" for octet in octets)
    raw = spelled(scheme, host, port, segments) + "".join("/" + part for part in extra) + "/" + escapes
    try:
        stored = normalize_site(raw)
    except DomainError:
        return  # refused input has no normal form
    assert normalize_site(stored) == stored


@FAST
@given(st.text(max_size=60))
def test_whatever_is_stored_is_already_normal(raw: str) -> None:
    try:
        stored = normalize_site(raw)
    except DomainError:
        return
    assert normalize_site(stored) == stored


_dot_segment = (
    st.sampled_from([".", ".."])
    .flatmap(
        lambda dots: st.lists(st.sampled_from([".", "%2e", "%2E"]), min_size=len(dots), max_size=len(dots))
    )
    .map("".join)
)
# An encoded separator alone, or before, after or inside a segment.
_with_encoded_separator = st.tuples(
    st.sampled_from(["", "shop"]),
    st.sampled_from(["%2F", "%2f", "%5C", "%5c"]),
    st.sampled_from(["", "admin"]),
).map("".join)


@FAST
@given(canonical_sites(), st.integers(0, 4), _dot_segment | _with_encoded_separator)
def test_dot_segments_and_encoded_separators_are_never_stored(
    site: tuple[str, str, int | None, list[str]], at: int, hostile: str
) -> None:
    scheme, host, port, segments = site
    index = min(at, len(segments))
    with pytest.raises(DomainError) as refused:
        normalize_site(spelled(scheme, host, port, [*segments[:index], hostile, *segments[index:]]))
    assert refused.value.code is ErrorCode.INVALID_SITE


@FAST
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüéèçñßåøæ", min_size=1, max_size=12), _tld, st.data())
def test_an_idn_host_is_the_same_site_as_its_punycode(label: str, tld: str, data: st.DataObject) -> None:
    try:
        punycode = idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError:
        assume(False)
    unicode_site = normalize_site(f"https://{label}.{tld}/shop")
    assert (
        unicode_site == normalize_site(f"https://{punycode}.{tld}/shop") == f"https://{punycode}.{tld}/shop"
    )
    utf8_escapes = "".join(f"%{byte:02X}" for byte in f"{label}.{tld}".encode())
    assert normalize_site(f"https://{utf8_escapes}/shop") == unicode_site
