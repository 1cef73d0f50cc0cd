"""A development tool: localstripe (a stateful fake Stripe from PyPI, in the dev extras) on a local port.

`python -m app.devstripe --port N --from-scratch` serves it from memory only (and
`python -m app.devstripe wait N` waits until it answers; `make run` uses both): stock
localstripe pickles its whole store to the fixed path /tmp/localstripe.pickle after every write, which
engineers and CI runs on one machine would share. `make run` and the test fixtures start it; nothing in
the service's runtime imports this module (it ships in the package so that `make run` needs nothing
from tests/).

What localstripe 1.15 does (checked against it; tests/integration/test_stripe_gateway.py pins most):
- Idempotency-Key is ignored: the same key twice makes two PaymentIntents. Our attempt rows are the guard.
- PaymentIntents: create with amount>0, currency, customer, payment_method, off_session=true,
  confirm=true, metadata — succeeds at once (status "succeeded"). `off_session` needs `confirm=true`
  on create; /confirm accepts neither `off_session` nor `payment_method`. Unknown params (description,
  statement_descriptor, ...) are a 400. It does not check that the card belongs to the customer.
- Declines: 4000000000000341 attaches, every charge → 402 card_declined naming the charge, not the
  PaymentIntent (GET /v1/charges/<id> gives it); the PI is left "requires_payment_method".
  4000000000000002 (and 9995, 9987, 9979, 0069, 0127, 0119) are declined on attach, not on charge.
  4000002500003155 needs 3-D Secure: an off-session PI is left "requires_action" (real Stripe: 402).
- Test tokens pm_card_visa, pm_card_visa_chargeDeclined, pm_card_chargeCustomerFail make a new card
  on every GET/attach, with a new id.
- SetupIntents: create(customer, usage); only the old `payment_method_types` name is known. Confirming
  (as Stripe.js does, with the publishable key and client secret) does not attach the card to the
  customer, unlike Stripe: attach it explicitly.
- Attach does not refuse a card on file with another customer; detach of a detached card is a 200; the
  customer's invoice default is not cleared on detach. The gateway checks these itself.
- No PaymentIntent list filters (customer=... is a 400) and no search; GET /v1/events lists events.
- Webhooks: POST /_config/webhooks/<name> with url, secret and events[]; payment_intent.succeeded and
  payment_intent.payment_failed (and customer.*) are POSTed about a second later, once, no retries,
  signed Stripe's way with the event's `created`. No payment_method.* events at all.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalStripe:
    """A running localstripe: its base address, and its `/_config` routes."""

    def __init__(self, port: int, log: IO[bytes] | None = None) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "app.devstripe", "--port", str(port), "--from-scratch"],
            cwd=ROOT,
            stdout=log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def wait_until_ready(self, attempts: int = 150) -> None:
        for _ in range(attempts):
            if self._process.poll() is not None:
                raise RuntimeError(f"localstripe exited with code {self._process.returncode}")
            try:
                # The Stripe.js stand-in is served without an API key: a cheap liveness probe.
                if httpx.get(f"{self.base_url}/js.stripe.com/v3/", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("localstripe did not answer")

    def register_webhook(self, name: str, url: str, secret: str, events: list[str] | None = None) -> None:
        """localstripe POSTs matching events to `url`, signed with `secret` (about a second later)."""
        data: dict[str, str] = {"url": url, "secret": secret}
        data.update({f"events[{i}]": event for i, event in enumerate(events or [])})
        httpx.post(f"{self.base_url}/_config/webhooks/{name}", data=data, timeout=5).raise_for_status()

    def stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)


def serve() -> None:
    """Run localstripe in this process without its disk snapshots (argv as for `localstripe`)."""
    from localstripe import resources, server

    resources.Store.dump_to_disk = lambda self: None  # type: ignore[method-assign]
    server.start()


def wait_for(port: int, attempts: int = 100) -> None:
    """Block until a localstripe answers on `port` (`make run` starts one in the background)."""
    for _ in range(attempts):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/js.stripe.com/v3/", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"localstripe did not answer on port {port}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["wait"]:
        wait_for(int(sys.argv[2]))
    else:
        serve()
