"""Partner webhooks' rules on plain values: which URLs and addresses are refused, the event filter, the
signature (and the receiver's snippet in docs/webhooks.md, run as written) and the retry schedule."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from domain.errors import DomainError, ErrorCode
from domain.webhooks import RetryPolicy, endpoint_url, event_filter, refused_address, sign, signed_by

DOCS = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
SECRET = "whsec_test_secret"
BODY = b'{"id":"evt_1","type":"license.issue"}'
T = 1_782_900_000


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "255.255.255.255",
        "192.0.2.10",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",
        "ff02::1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::ffff:127.0.0.1",
        "2002:a00:1::",
        "64:ff9b::a9fe:a9fe",
        "2001:db8::1",
    ],
)
def test_webhooks_never_go_to_loopback_private_link_local_or_metadata_addresses(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address), sandbox=False) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "1.1.1.1", "2606:4700:4700::1111", "::ffff:1.1.1.1"])
def test_public_addresses_receive_webhooks(address: str) -> None:
    assert refused_address(ipaddress.ip_address(address), sandbox=False) is None


def test_sandbox_mode_lets_loopback_through_but_nothing_else_private() -> None:
    assert refused_address(ipaddress.ip_address("127.0.0.1"), sandbox=True) is None
    assert refused_address(ipaddress.ip_address("127.0.0.1"), sandbox=True, plain_http=True) is None
    assert refused_address(ipaddress.ip_address("1.1.1.1"), sandbox=True, plain_http=True) is not None
    assert refused_address(ipaddress.ip_address("::1"), sandbox=True) is None
    for address in ("10.0.0.1", "169.254.169.254", "192.168.0.1", "::ffff:10.0.0.1"):
        assert refused_address(ipaddress.ip_address(address), sandbox=True) is not None


@pytest.mark.parametrize(
    ("url", "sandbox"),
    [
        ("http://hooks.example.com/in", False),
        ("http://127.0.0.1:8080/in", False),
        ("ftp://hooks.example.com/in", False),
        ("https://user:pw@hooks.example.com/in", False),
        ("https://hooks.example.com/in#frag", False),
        ("https:///in", False),
        ("https://hooks example.com/in", False),
        ("https://hooks.example.com:99999/in", False),
        ("https://hooks.example.com:0/in", False),
        ("https://" + "a" * 2100 + ".com/", False),
    ],
)
def test_endpoint_urls_must_be_https_without_credentials(url: str, sandbox: bool) -> None:
    with pytest.raises(DomainError) as refused:
        endpoint_url(url, sandbox=sandbox)
    assert refused.value.code is ErrorCode.INVALID_INPUT and refused.value.field == "url"


def test_an_endpoint_url_keeps_its_name_for_host_and_sni() -> None:
    url = endpoint_url("https://Hooks.Example.com:8443/in?x=1", sandbox=False)
    assert (url.host, url.port, url.target, url.host_header) == (
        "hooks.example.com",
        8443,
        "/in?x=1",
        "hooks.example.com:8443",
    )
    assert endpoint_url("http://127.0.0.1:9000/hook", sandbox=True).host_header == "127.0.0.1:9000"
    assert endpoint_url("https://[::1]/", sandbox=True).host_header == "[::1]"


def test_an_event_filter_names_streams_or_stream_actions() -> None:
    assert event_filter(["invoice", "license.revoke", "invoice"]) == ("invoice", "license.revoke")
    assert event_filter(["*"]) == ("*",)
    for wrong in ([], ["licence"], ["invoice.bad action"], ["*" for _ in range(51)]):
        with pytest.raises(DomainError) as refused:
            event_filter(wrong)
        assert refused.value.field == "events"


def test_a_signature_is_an_hmac_of_the_timestamp_and_body_checked_within_five_minutes() -> None:
    header = sign(SECRET, T, BODY)
    assert re.fullmatch(r"t=1782900000,v1=[0-9a-f]{64}", header)
    assert signed_by(SECRET, header, BODY, now=T + 299)
    assert not signed_by(SECRET, header, BODY, now=T + 301)
    assert not signed_by(SECRET, header, BODY + b" ", now=T)
    assert not signed_by("whsec_other", header, BODY, now=T)
    assert not signed_by(SECRET, header.replace("t=1782900000", "t=1782900001"), BODY, now=T)


def documented_verifier(clock_seconds: float) -> Any:
    """The receiver's snippet from docs/webhooks.md, run as written; its `time.time()` is `clock_seconds`."""
    snippet = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    assert snippet is not None
    namespace: dict[str, Any] = {}
    exec(snippet.group(1), namespace)
    namespace["time"] = SimpleNamespace(time=lambda: clock_seconds)
    return namespace["verify_licensing_signature"]


def test_the_documented_receiver_snippet_accepts_our_signature_and_refuses_tampering() -> None:
    verify = documented_verifier(T + 10)
    header = sign(SECRET, T, BODY)
    assert verify(SECRET, header, BODY)
    assert not verify(SECRET, header, BODY.replace(b"issue", b"revoke"))
    assert not verify("whsec_wrong", header, BODY)
    assert not verify(SECRET, "v1=" + header.partition("v1=")[2], BODY)  # no timestamp
    # During a rotation a second v1 may come along: either one matching is enough.
    assert verify(SECRET, f"{header},v1={'0' * 64}", BODY)
    assert not documented_verifier(T + 301)(SECRET, header, BODY)


def test_retries_back_off_exponentially_and_stop_after_three_days() -> None:
    policy = RetryPolicy()
    first = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    now, failures, delays = first, 0, []
    while True:
        failures += 1
        following = policy.next_attempt(first, failures, now)
        if following is None:
            break
        delays.append(following - now)
        now = following
    assert delays[:4] == [
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=8),
    ]
    assert max(delays) == timedelta(hours=8)
    assert now == first + timedelta(days=3)  # the last attempt is at the window's end, then it gives up
    assert failures < 30
