"""Client site URLs: validated and normalized so one site has exactly one spelling.

`HTTPS://Café.Example.COM:443/blog/?utm=x#top` becomes `https://xn--caf-dma.example.com/blog`:
scheme kept (https when missing), host lower-cased and IDN-encoded (punycode), default port, query,
fragment, empty segments and trailing slash dropped. A path is kept because WordPress multisite
installs live in sub-directories. Anything that is not a public web address is refused with INVALID_SITE.

Percent-encoding is normalized before comparison (RFC 3986 §6.2.2), so `/%73hop` is `/shop`:
- escapes of unreserved characters (letters, digits, `-._~`) are decoded; the hex of every other
  escape is upper-cased (`%c3%a9` → `%C3%A9`); a `%` that does not start two hex digits is refused;
- in the host, every escape is decoded (as browsers do) and the result must be a domain name, so
  `%65xample.com` is `example.com`;
- refused rather than normalized, because a web server may read them as structure and serve another
  path (or the same one) than the text says: dot segments, also once decoded (`%2e%2e`, `.%2E`);
  encoded separators and delimiters (`%2F`, `%5C`, `%3F`, `%23`); path parameters (`;`, `%3B`), which
  servers such as Tomcat strip (`/shop;x` is served as `/shop`); escapes of control characters.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote_to_bytes, urlsplit

import idna

from domain.errors import DomainError, ErrorCode

MAX_SITE_LENGTH = 255
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,=:@%-]+$")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Escapes a server may decode into path structure (separators, query, fragment, parameters).
_STRUCTURAL_ESCAPES = frozenset({"2F", "5C", "3F", "23", "3B"})
_MALFORMED_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_Refusal = Callable[[str], DomainError]


def normalize_site(raw: str, field: str = "site") -> str:
    """Return the canonical form of a site URL, or raise INVALID_SITE naming what is wrong."""

    def refuse(reason: str) -> DomainError:
        # The input is not echoed back: it may be hostile markup.
        return DomainError(ErrorCode.INVALID_SITE, f"The site URL is not valid: {reason}.", field)

    text = raw.strip()
    if not text:
        raise refuse("it is empty")
    if len(text) > 3 * MAX_SITE_LENGTH:  # every character of a stored site may come as a %XX escape
        raise refuse("it is too long")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text):
        raise refuse("it contains spaces or control characters")
    if any(ch in text for ch in '<>"`\\{}|^'):
        raise refuse("it contains characters a URL cannot have")
    if "://" not in text:
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:(?!\d)", text):
            raise refuse("only http and https sites can hold a license")
        text = "https://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as error:
        raise refuse("its host or port is malformed") from error
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise refuse("only http and https sites can hold a license")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise refuse("it must not contain a user name or password")
    host = _normalize_host(parts.hostname or "", refuse)
    netloc = host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _normalize_path(parts.path, refuse)
    site = f"{scheme}://{netloc}{path}"
    if len(site) > MAX_SITE_LENGTH:
        raise refuse(f"it is longer than {MAX_SITE_LENGTH} characters")
    return site


def _decode_host(host: str, refuse: _Refusal) -> str:
    """Decode a percent-encoded host (`%65xample.com`), as a browser would before looking it up."""
    if "%" not in host:
        return host
    if _MALFORMED_ESCAPE.search(host):
        raise refuse("its host has a malformed percent-escape")
    try:
        return unquote_to_bytes(host).decode("utf-8")
    except UnicodeDecodeError as error:
        raise refuse("its host is not a valid domain name") from error


def _normalize_host(host: str, refuse: _Refusal) -> str:
    host = _decode_host(host, refuse).rstrip(".")
    if not host:
        raise refuse("it has no host")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise refuse("a site is a domain name, not an IP address")
    try:
        ascii_host = idna.encode(host, uts46=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as error:
        raise refuse("its host is not a valid domain name") from error
    labels = ascii_host.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise refuse("its host is not a public domain name")
    if labels[-1].isdigit() or labels[-1] in {"localhost", "local", "internal", "invalid", "test"}:
        raise refuse("its host is not a public domain name")
    if len(ascii_host) > 253:
        raise refuse("its host is too long")
    return ascii_host


def _normalize_path(path: str, refuse: _Refusal) -> str:
    if _MALFORMED_ESCAPE.search(path):
        raise refuse("its path has a malformed percent-escape")

    def normalize_escape(escape: re.Match[str]) -> str:
        hex_digits = escape.group(1).upper()
        octet = int(hex_digits, 16)
        if chr(octet) in _UNRESERVED:
            return chr(octet)
        if hex_digits in _STRUCTURAL_ESCAPES:
            raise refuse("its path has an encoded separator, query, fragment or parameter")
        if octet < 0x20 or octet == 0x7F:
            raise refuse("its path has an encoded control character")
        return "%" + hex_digits

    segments = []
    for raw in path.split("/"):
        if not raw:
            continue  # empty segments and the trailing slash name the same site
        if ";" in raw:
            raise refuse("its path has parameters (;), which are not part of a site")
        if not _PATH_SEGMENT.match(raw):
            raise refuse("its path is not a plain site path")
        segment = _ESCAPE.sub(normalize_escape, raw)
        if segment in {".", ".."}:
            raise refuse("its path has a dot segment")
        segments.append(segment)
    return "".join("/" + segment for segment in segments)
