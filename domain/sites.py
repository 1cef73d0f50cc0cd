"""Client site URLs: validated and normalized so one site has exactly one spelling.

`HTTPS://Café.Example.COM:443/blog/?utm=x#top` becomes `https://xn--caf-dma.example.com/blog`:
scheme kept (https when missing), host lower-cased and IDN-encoded (punycode), default port, query,
fragment and trailing slash dropped. A path is kept because WordPress multisite installs live in
sub-directories. Anything that is not a public web address is refused with INVALID_SITE.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import urlsplit

import idna

from domain.errors import DomainError, ErrorCode

MAX_SITE_LENGTH = 255
DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_PATH_SEGMENT = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@%-]+$")
_Refusal = Callable[[str], DomainError]


def normalize_site(raw: str, field: str = "site") -> str:
    """Return the canonical form of a site URL, or raise INVALID_SITE naming what is wrong."""

    def refuse(reason: str) -> DomainError:
        # The input is not echoed back: it may be hostile markup.
        return DomainError(ErrorCode.INVALID_SITE, f"The site URL is not valid: {reason}.", field)

    text = raw.strip()
    if not text:
        raise refuse("it is empty")
    if len(text) > 2 * MAX_SITE_LENGTH:
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


def _normalize_host(host: str, refuse: _Refusal) -> str:
    host = host.rstrip(".")
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
    segments = [segment for segment in path.split("/") if segment]
    for segment in segments:
        if segment in {".", ".."} or not _PATH_SEGMENT.match(segment):
            raise refuse("its path is not a plain site path")
    return "".join("/" + segment for segment in segments)
