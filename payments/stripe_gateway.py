"""The gateway on Stripe's official SDK (`StripeClient`, async calls over an httpx client it owns).

Runs against Stripe or, in tests and the demo, against localstripe at `STRIPE_API_BASE`. localstripe
ignores idempotency keys, so keys protect us on real Stripe only (and only for 24 hours); our own
attempt rows, which store a PaymentIntent's id before it is confirmed, prevent double charges everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import stripe
from stripe.params import RefundCreateParams

from payments.gateway import (
    CardDetails,
    ChargeOutcome,
    GatewayRefused,
    GatewayUnavailable,
    PaymentGateway,
    SetupIntentRef,
    WebhookEvent,
    payment_method_declined,
    payment_method_not_found,
    payment_method_not_usable,
)
from payments.webhooks import DEFAULT_TOLERANCE_SECONDS, verify_webhook

STRIPE_API_HOST = "api.stripe.com"


class StripeGateway:
    """PaymentGateway on Stripe. Call `close()` on shutdown to release its HTTP connections."""

    def __init__(
        self,
        api_key: str,
        api_base: str,
        webhook_secret: str,
        *,
        timeout_seconds: float = 30.0,
        max_network_retries: int = 2,
        webhook_tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
        confirm_off_session: bool | None = None,
    ) -> None:
        self._http = stripe.HTTPXClient(timeout=timeout_seconds)
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base.rstrip("/")},
            http_client=self._http,
            max_network_retries=max_network_retries,
        )
        self._webhook_secret = webhook_secret
        self._webhook_tolerance = webhook_tolerance_seconds
        # Stripe takes `off_session` when a PaymentIntent is confirmed; localstripe's confirm refuses any
        # parameter. None: send it to Stripe itself only (the README names this localstripe gap).
        if confirm_off_session is None:
            confirm_off_session = urlparse(api_base).hostname == STRIPE_API_HOST
        self._confirm_off_session = confirm_off_session

    async def close(self) -> None:
        await self._http.close_async()

    async def create_customer(self, partner_id: str, name: str) -> str:
        with _unavailable_on_outage(), _refused_on_bad_request():
            customer = await self._client.v1.customers.create_async(
                {"name": name, "metadata": {"partner_id": partner_id}},
                # One customer per partner even if the first call's answer was lost.
                {"idempotency_key": f"customer-{partner_id}"},
            )
        return str(customer.id)

    async def create_setup_intent(self, customer_id: str) -> SetupIntentRef:
        with _unavailable_on_outage(), _refused_on_bad_request():
            intent = await self._client.v1.setup_intents.create_async(
                # No payment-method types: SDK 16 renamed the field and localstripe knows only the old
                # name; localstripe collects cards by default, and attach refuses anything but a card.
                {"customer": customer_id, "usage": "off_session"},
                {"idempotency_key": _fresh_key("setup")},
            )
        if not intent.client_secret:
            raise GatewayUnavailable("The payment provider returned a SetupIntent without a client secret.")
        return SetupIntentRef(id=intent.id, client_secret=intent.client_secret)

    async def attach_payment_method(self, customer_id: str, payment_method_id: str) -> CardDetails:
        method = await self._retrieve_payment_method(payment_method_id)
        if method.type != "card" or method.card is None:
            raise payment_method_not_usable(f"Payment method {payment_method_id!r} is not a card.")
        owner = _owner(method)
        if owner is not None and owner != customer_id:
            raise payment_method_not_usable(
                f"Payment method {payment_method_id!r} is already on file with another account."
            )
        if owner is None:
            try:
                with _unavailable_on_outage():
                    method = await self._client.v1.payment_methods.attach_async(
                        method.id,
                        {"customer": customer_id},
                        # Not a stable key: attach → detach → attach again must reach Stripe each time.
                        {"idempotency_key": _fresh_key("attach")},
                    )
            except stripe.CardError as error:
                raise payment_method_declined(error.user_message or "card declined") from error
            except stripe.InvalidRequestError as error:
                raise payment_method_not_found(payment_method_id) from error
        card = method.card
        assert card is not None
        return CardDetails(
            id=method.id, brand=card.brand, last4=card.last4, exp_month=card.exp_month, exp_year=card.exp_year
        )

    async def detach_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        method = await self._retrieve_payment_method(payment_method_id)
        if _owner(method) != customer_id:
            raise payment_method_not_found(payment_method_id)
        try:
            with _unavailable_on_outage():
                await self._client.v1.payment_methods.detach_async(
                    payment_method_id, options={"idempotency_key": _fresh_key("detach")}
                )
        except stripe.InvalidRequestError as error:
            raise payment_method_not_found(payment_method_id) from error

    async def set_default_payment_method(self, customer_id: str, payment_method_id: str | None) -> None:
        try:
            with _unavailable_on_outage():
                await self._client.v1.customers.update_async(
                    customer_id,
                    # Stripe clears a field given the empty string.
                    {"invoice_settings": {"default_payment_method": payment_method_id or ""}},
                    {"idempotency_key": _fresh_key("default")},
                )
        except stripe.InvalidRequestError as error:
            raise payment_method_not_found(payment_method_id or "") from error

    async def create_payment_intent(
        self,
        customer_id: str,
        payment_method_id: str,
        amount_minor: int,
        currency: str,
        invoice_id: str,
        idempotency_key: str,
    ) -> str:
        if amount_minor <= 0:
            raise ValueError("Only positive amounts are charged; a zero invoice is paid without a charge.")
        with _unavailable_on_outage(), _refused_on_bad_request():
            intent = await self._client.v1.payment_intents.create_async(
                {
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "customer": customer_id,
                    "payment_method": payment_method_id,
                    "metadata": {"invoice_id": invoice_id},
                },
                {"idempotency_key": idempotency_key},
            )
        return str(intent.id)

    async def confirm_payment_intent(self, payment_intent_id: str) -> ChargeOutcome:
        params: dict[str, Any] = {"off_session": True} if self._confirm_off_session else {}
        try:
            with _unavailable_on_outage():
                intent = await self._client.v1.payment_intents.confirm_async(
                    payment_intent_id,
                    params,  # type: ignore[arg-type]
                    # Stable: a lost answer re-sent within 24 hours is answered, not applied twice.
                    {"idempotency_key": f"confirm-{payment_intent_id}"},
                )
        except stripe.CardError as error:
            return ChargeOutcome(
                status="failed",
                payment_intent_id=payment_intent_id,
                failure_code=error.code or "card_declined",
                failure_message=error.user_message or str(error),
                decline_code=error.error.decline_code if error.error else None,
            )
        except (stripe.InvalidRequestError, stripe.IdempotencyError) as error:
            # Stripe refuses this card outright (e.g. detached outside our API): the next card may work.
            raise GatewayRefused(error.user_message or str(error), error.code or "invalid_request") from error
        return _outcome(intent)

    async def resume_payment_intent(self, payment_intent_id: str) -> ChargeOutcome:
        with _unavailable_on_outage(), _refused_on_bad_request():
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent_id)
        if intent.status == "requires_confirmation":
            return await self.confirm_payment_intent(payment_intent_id)
        if intent.status == "processing":
            raise GatewayUnavailable("The payment is still processing at the provider; ask again later.")
        return _outcome(intent)

    async def refund_payment(
        self,
        payment_intent_id: str,
        idempotency_key: str,
        *,
        amount_minor: int | None = None,
        refund_id: str | None = None,
    ) -> str:
        params: RefundCreateParams = {"payment_intent": payment_intent_id}
        if amount_minor is not None:
            params["amount"] = amount_minor
        if refund_id is not None:
            # Stripe's own `reason` is an enum (and localstripe refuses it): ours travels in metadata.
            params["metadata"] = {"refund_id": refund_id}
        with _unavailable_on_outage(), _refused_on_bad_request():
            refund = await self._client.v1.refunds.create_async(params, {"idempotency_key": idempotency_key})
        return str(refund.id)

    async def find_refund(self, payment_intent_id: str, refund_id: str) -> str | None:
        with _unavailable_on_outage(), _refused_on_bad_request():
            refunds = await self._client.v1.refunds.list_async(
                {"payment_intent": payment_intent_id, "limit": 100}
            )
            async for refund in refunds.auto_paging_iter():
                metadata: dict[str, Any] = refund.to_dict().get("metadata") or {}
                if metadata.get("refund_id") == refund_id:
                    return str(refund.id)
        return None

    def parse_webhook(self, payload: bytes, signature_header: str | None) -> WebhookEvent:
        return verify_webhook(payload, signature_header, self._webhook_secret, self._webhook_tolerance)

    async def _retrieve_payment_method(self, payment_method_id: str) -> stripe.PaymentMethod:
        if not payment_method_id.startswith("pm_"):
            raise payment_method_not_found(payment_method_id)
        try:
            with _unavailable_on_outage():
                return await self._client.v1.payment_methods.retrieve_async(payment_method_id)
        except stripe.InvalidRequestError as error:
            raise payment_method_not_found(payment_method_id) from error


def _outcome(intent: stripe.PaymentIntent) -> ChargeOutcome:
    if intent.status == "succeeded":
        return ChargeOutcome(status="succeeded", payment_intent_id=intent.id)
    if intent.status == "requires_action":
        # Off-session charges cannot ask the cardholder to authenticate.
        return ChargeOutcome(
            status="failed",
            payment_intent_id=intent.id,
            failure_code="authentication_required",
            failure_message="The card needs the cardholder to authenticate this payment.",
        )
    problem = intent.last_payment_error
    return ChargeOutcome(
        status="failed",
        payment_intent_id=intent.id,
        failure_code=(problem.code if problem else None) or intent.status,
        failure_message=(problem.message if problem else None) or f"The payment is {intent.status}.",
    )


def _owner(method: stripe.PaymentMethod) -> str | None:
    return _id_of(method.customer)


def _id_of(reference: Any) -> str | None:
    """An expandable field is an id or the object itself."""
    if reference is None:
        return None
    if isinstance(reference, str):
        return reference
    return str(reference.id)


def _fresh_key(purpose: str) -> str:
    """A key for one logical call, so the SDK's own network retries cannot apply it twice."""
    return f"{purpose}-{uuid.uuid4().hex}"


@contextmanager
def _unavailable_on_outage() -> Iterator[None]:
    """Connection failures, timeouts, rate limits, provider errors and bad credentials: retry later."""
    try:
        yield
    except stripe.APIConnectionError as error:
        raise GatewayUnavailable(
            "The payment provider could not be reached; please try again later."
        ) from error
    except (
        stripe.APIError,
        stripe.RateLimitError,
        stripe.AuthenticationError,
        stripe.PermissionError,
    ) as error:
        raise GatewayUnavailable(
            f"The payment provider failed (HTTP {error.http_status}); please try again later."
        ) from error


@contextmanager
def _refused_on_bad_request() -> Iterator[None]:
    try:
        yield
    except (stripe.InvalidRequestError, stripe.IdempotencyError) as error:
        raise GatewayRefused(error.user_message or str(error), error.code or "invalid_request") from error


if TYPE_CHECKING:
    _conforms: PaymentGateway = StripeGateway("sk_test", "http://127.0.0.1", "whsec_test")
