"""Where a webhook goes, and one HTTP attempt to get it there, with the SSRF guards (docs/webhooks.md).

A host name is resolved once per attempt; every address it resolves to must be public
(domain.webhooks.refused_address), and the request connects to that checked address itself (the URL's
host is replaced by the address; Host and TLS SNI keep the name, and the certificate is verified against
the name), so a DNS answer that changes between the check and the connection cannot redirect it.
Redirects are not followed, proxies from the environment are ignored, at most READ_LIMIT bytes of the
answer are read and KEEP of them kept, and the whole attempt has one deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import httpx

from domain.errors import DomainError, ErrorCode
from domain.webhooks import EndpointUrl, refused_address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
KEEP = 4096
READ_LIMIT = 65536
DEFAULT_TIMEOUT_SECONDS = 10.0
RESOLVE_TIMEOUT_SECONDS = 5.0


class AddressLookup:
    """Resolves endpoint hosts: IP literals as they are, then the operator's fixed answers
    (LICENSING_WEBHOOK_RESOLVE, like curl's --resolve), then DNS. Fixed answers are checked like DNS's."""

    def __init__(self, fixed: Mapping[str, str] | None = None) -> None:
        self._fixed = {
            host.lower().rstrip("."): ipaddress.ip_address(address) for host, address in (fixed or {}).items()
        }

    async def resolve(self, url: EndpointUrl) -> list[IPAddress]:
        if url.literal_address is not None:
            return [url.literal_address]
        if url.host in self._fixed:
            return [self._fixed[url.host]]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
                answers = await loop.getaddrinfo(url.host, url.port, type=socket.SOCK_STREAM)
        except (OSError, TimeoutError) as error:
            raise DomainError(
                ErrorCode.INVALID_INPUT, f"The host {url.host} does not resolve.", "url"
            ) from error
        found: list[IPAddress] = []
        for *_, sockaddr in answers:
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
            if address not in found:
                found.append(address)
        return found

    async def public_addresses(self, url: EndpointUrl, *, sandbox: bool) -> list[IPAddress]:
        """The addresses to connect to; INVALID_INPUT (field `url`) if any of them is not public, since a
        host that answers with one private address may answer with it next time."""
        addresses = await self.resolve(url)
        if not addresses:
            raise DomainError(ErrorCode.INVALID_INPUT, f"The host {url.host} does not resolve.", "url")
        for address in addresses:
            reason = refused_address(address, sandbox=sandbox, plain_http=url.scheme == "http")
            if reason is not None:
                raise DomainError(
                    ErrorCode.INVALID_INPUT,
                    f"Webhooks go to public addresses only: {url.host} resolves to {reason}.",
                    "url",
                )
        return addresses


@dataclass(frozen=True)
class SendResult:
    """What one attempt got: the status code and the start of the answer, or why there was none."""

    status_code: int | None
    excerpt: str | None
    error: str | None
    duration_ms: int

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and self.error is None


class WebhookSender(Protocol):
    async def send(self, url: EndpointUrl, body: bytes, headers: Mapping[str, str]) -> SendResult: ...

    async def close(self) -> None: ...


class HttpWebhookSender:
    """Sends webhooks with httpx: one POST per attempt, to a checked address, within one deadline."""

    def __init__(
        self, lookup: AddressLookup, *, sandbox: bool, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    ) -> None:
        self._lookup = lookup
        self._sandbox = sandbox
        self._timeout = timeout_seconds
        # No pooled connection is reused: a connection verified for one host name must not carry another's.
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, url: EndpointUrl, body: bytes, headers: Mapping[str, str]) -> SendResult:
        started = time.monotonic()

        def result(
            status: int | None = None, excerpt: str | None = None, error: str | None = None
        ) -> SendResult:
            return SendResult(status, excerpt, error, int((time.monotonic() - started) * 1000))

        try:
            async with asyncio.timeout(self._timeout):
                addresses = await self._lookup.public_addresses(url, sandbox=self._sandbox)
                status, excerpt, location = await self._post_to_first_answering(url, addresses, body, headers)
        except DomainError as refused:
            return result(error=refused.message)
        except (TimeoutError, httpx.TimeoutException):
            return result(error=f"No complete answer within {self._timeout:g} s.")
        except httpx.HTTPError as error:
            return result(error=f"{type(error).__name__}: {error}"[:500])
        if 300 <= status < 400:
            where = f" to {location[:200]}" if location else ""
            return result(status, excerpt, f"Redirects are not followed (HTTP {status}{where}).")
        return result(status, excerpt)

    async def _post_to_first_answering(
        self, url: EndpointUrl, addresses: list[IPAddress], body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, str, str | None]:
        """Each checked address in turn until one accepts the connection (as a browser would)."""
        for address in addresses[:-1]:
            with contextlib.suppress(httpx.ConnectError):
                return await self._post(url, address, body, headers)
        return await self._post(url, addresses[-1], body, headers)

    async def _post(
        self, url: EndpointUrl, address: IPAddress, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, str, str | None]:
        connect_to = f"[{address}]" if address.version == 6 else str(address)
        request = self._client.build_request(
            "POST",
            f"{url.scheme}://{connect_to}:{url.port}{url.target}",
            content=body,
            headers={**headers, "Host": url.host_header},
            # TLS: the name goes in SNI and the certificate is checked against it, not the address.
            extensions={} if url.literal_address is not None else {"sni_hostname": url.host},
        )
        response = await self._client.send(request, stream=True)
        try:
            kept = bytearray()
            read = 0
            # Raw bytes: a compressed answer is not inflated, so a small body cannot become a huge one.
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if len(kept) < KEEP:
                    kept += chunk[: KEEP - len(kept)]
                if read >= READ_LIMIT:
                    break
        finally:
            await response.aclose()
        return response.status_code, kept.decode("utf-8", errors="replace"), response.headers.get("location")
