"""License use cases: issue, assign (or move), unassign, revoke, transfer; list, count, history.

Every write takes the partner's lock first, then reads the license row FOR UPDATE (PostgreSQL), drives
the state machine, saves with a version check and records one event per transition, all in one
transaction. Another partner's key answers exactly like an unknown key (NOT_FOUND).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.access import Permission
from domain.errors import DomainError, ErrorCode
from domain.licenses import (
    IssueItem,
    License,
    LicenseEvent,
    LicenseFilter,
    LicenseOrder,
    LicenseState,
    Transfer,
    TransferStatus,
    Transition,
    assign_or_move,
    check_acceptable,
    clean_search,
    drive,
    hash_transfer_code,
    issue_license,
    license_fact,
    receive_license,
    start_transfer,
    validate_issue_items,
)
from domain.sites import normalize_site
from domain.standing import Action
from persistence.events import RecordedEvent
from persistence.pagination import Page
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, lock_and_replay, store_outcome, stored_outcome
from resolvers.products import require_sellable
from resolvers.standing import require_standing

NOT_FOUND_MESSAGE = "No license with this key."


@dataclass(frozen=True)
class TransferOutcome:
    """A transfer with the sender's license; `code` only in the response that created it."""

    transfer: Transfer
    license: License
    code: str | None = None


@dataclass(frozen=True)
class LicenseCounts:
    issued: int
    assigned: int
    revoked: int
    transferred: int
    not_revoked: int
    all: int


# -- writes -------------------------------------------------------------------------------------


async def issue_licenses(
    ctx: RequestContext, *, items: list[IssueItem], idempotency_key: str | None = None
) -> list[License]:
    """Issue every requested license or none: billing starts now, assigned or not."""
    partner_id = ctx.partner_id(Permission.LICENSES_WRITE)
    validate_issue_items(items)
    call = idempotent_call(
        partner_id,
        idempotency_key,
        "issueLicenses",
        {"items": [[item.product_slug, item.quantity] for item in items]},
    )
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await uow.licenses.get_many(outcome["license_ids"])
        now = ctx.clock.now()
        # Input errors first: an unknown, retired or unpriced product is refused whatever the standing.
        await require_sellable(
            uow,
            partner_id,
            [item.product_slug for item in items],
            now,
            [f"items[{index}].productSlug" for index in range(len(items))],
        )
        await require_standing(uow, partner_id, Action.ISSUE)
        issued = [
            issue_license(product_slug=item.product_slug, partner_id=partner_id, at=now)
            for item in items
            for _ in range(item.quantity)
        ]
        holdings = [transition.license for transition in issued]
        await uow.licenses.add_many(holdings)
        for transition in issued:
            _record(uow, _origin(ctx), transition)
        await store_outcome(uow, call, {"license_ids": [h.id for h in holdings]}, now)
        return holdings


async def assign_license(
    ctx: RequestContext, *, key: str, site: str, idempotency_key: str | None = None
) -> License:
    """Put a license on a site; an assigned license moves there (the history keeps both sites)."""
    ctx.require(Permission.LICENSES_WRITE)
    normalized = normalize_site(site)

    async def assign(uow: UnitOfWork, holding: License, now: datetime) -> list[Transition]:
        await require_standing(uow, holding.partner_id, Action.ASSIGN)
        if not holding.is_live:
            return [assign_or_move(holding, site=normalized, at=now)]  # raises INVALID_TRANSITION
        occupant = await uow.licenses.on_site(holding.product_slug, normalized)
        if occupant is not None and occupant.id != holding.id:
            raise DomainError(
                ErrorCode.SITE_TAKEN,
                f"Another active license of {holding.product_slug} is already assigned to {normalized}.",
                "site",
            )
        return [assign_or_move(holding, site=normalized, at=now)]

    return await _change(ctx, "assignLicense", key, {"site": site}, idempotency_key, assign)


async def unassign_license(ctx: RequestContext, *, key: str, idempotency_key: str | None = None) -> License:
    """Take a license off its site. It stays issued, and billed, until revoked."""

    async def unassign(uow: UnitOfWork, holding: License, now: datetime) -> list[Transition]:
        return [drive(holding, LicenseEvent.UNASSIGN, at=now)]

    return await _change(ctx, "unassignLicense", key, {}, idempotency_key, unassign)


async def revoke_license(ctx: RequestContext, *, key: str, idempotency_key: str | None = None) -> License:
    """Revoke for good: billing stops (the revoke day is billed); a pending transfer is cancelled."""

    async def revoke(uow: UnitOfWork, holding: License, now: datetime) -> list[Transition]:
        return await _revoke(uow, _origin(ctx), holding, now)

    return await _change(ctx, "revokeLicense", key, {}, idempotency_key, revoke)


async def revoke_for_nonpayment(
    uow: UnitOfWork,
    *,
    partner_id: str,
    invoice_id: str,
    at: datetime,
    request_id: str | None = None,
    limit: int | None = None,
) -> list[License]:
    """Dunning's last step: revoke the partner's live licenses (the oldest `limit` of them, or all), the
    way revokeLicense does.

    Call it inside an open unit of work that holds the partner's lock.
    """
    origin = Origin(request_id)
    revoked = []
    for holding in await uow.licenses.live(partner_id, for_update=True, limit=limit):
        transitions = await _revoke(uow, origin, holding, at)
        await uow.licenses.save(holding)
        for transition in transitions:
            _record(uow, origin, transition, {"reason": "nonpayment", "invoice_id": invoice_id})
        revoked.append(holding)
    return revoked


async def _revoke(uow: UnitOfWork, origin: Origin, holding: License, now: datetime) -> list[Transition]:
    if holding.is_live:
        await _cancel_pending(uow, origin, holding, now)
    return [drive(holding, LicenseEvent.REVOKE, at=now)]


async def start_license_transfer(
    ctx: RequestContext, *, key: str, idempotency_key: str | None = None
) -> TransferOutcome:
    """Offer a license to another partner: a one-time code, valid 7 days, replaces any earlier code.

    A replay with the idempotency key returns the transfer without the code: only its hash is stored.
    """
    partner_id = ctx.partner_id(Permission.LICENSES_WRITE)
    call = idempotent_call(partner_id, idempotency_key, "startLicenseTransfer", {"key": key})
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_transfer(uow, outcome)
        holding = await _held(uow, partner_id, key)
        now = ctx.clock.now()
        started = start_transfer(holding, at=now)
        await _cancel_pending(uow, _origin(ctx), holding, now)
        await uow.transfers.add(started.transfer)
        _note(uow, _origin(ctx), holding, "transfer_started", now, {"transfer_id": started.transfer.id})
        await store_outcome(uow, call, {"transfer_id": started.transfer.id}, now)
        return TransferOutcome(started.transfer, holding, started.code)


@dataclass(frozen=True)
class TransferPreview:
    """What a receiver may know before accepting: the product and until when the code works."""

    product_slug: str
    expires_at: datetime


async def transfer_preview(ctx: RequestContext, *, code: str) -> TransferPreview:
    """Check a code as acceptLicenseTransfer would, without accepting it; nothing else of the sender's."""
    receiver_id = ctx.partner_id()
    async with ctx.reader() as uow:
        transfer = check_acceptable(
            await uow.transfers.by_code_hash(hash_transfer_code(code)),
            receiver_id=receiver_id,
            at=ctx.clock.now(),
        )
        sent = await _offered_license(uow, transfer)
    return TransferPreview(sent.product_slug, transfer.expires_at)


async def _offered_license(uow: UnitOfWork, transfer: Transfer, *, for_update: bool = False) -> License:
    """The license a pending transfer offers, if it is still live."""
    sent = await uow.licenses.get(transfer.license_id, for_update=for_update)
    if sent is None or not sent.is_live:
        raise DomainError(
            ErrorCode.TRANSFER_CODE_INVALID,
            "This transfer code is unknown, already used or cancelled.",
            "code",
        )
    return sent


async def pending_transfers(ctx: RequestContext, license_ids: list[str]) -> list[Transfer | None]:
    """Each license's pending transfer, if any, in the order asked (for batching loaders)."""
    async with ctx.reader() as uow:
        found = await uow.transfers.pending_for_many(license_ids)
    return [found.get(license_id) for license_id in license_ids]


async def cancel_license_transfer(
    ctx: RequestContext, *, key: str, idempotency_key: str | None = None
) -> TransferOutcome:
    """Withdraw the pending transfer of a license; its code stops working."""
    partner_id = ctx.partner_id(Permission.LICENSES_WRITE)
    call = idempotent_call(partner_id, idempotency_key, "cancelLicenseTransfer", {"key": key})
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_transfer(uow, outcome)
        holding = await _held(uow, partner_id, key)
        now = ctx.clock.now()
        transfer = await _cancel_pending(uow, _origin(ctx), holding, now)
        if transfer is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"License {holding.key} has no pending transfer.", "key")
        await store_outcome(uow, call, {"transfer_id": transfer.id}, now)
        return TransferOutcome(transfer, holding)


async def accept_license_transfer(
    ctx: RequestContext, *, code: str, idempotency_key: str | None = None
) -> License:
    """The receiver takes the license under the same key, still on its site; the sender's holding ends.

    Accepting acquires a license, so the receiver's standing gates it like issuing.
    """
    receiver_id = ctx.partner_id(Permission.LICENSES_WRITE)
    code_hash = hash_transfer_code(code)
    call = idempotent_call(receiver_id, idempotency_key, "acceptLicenseTransfer", {"code": code_hash})
    async with ctx.unit_of_work() as uow:
        # Learn the sender first (a plain read), then lock both partners in id order: no deadlocks.
        peek = await uow.transfers.by_code_hash(code_hash)
        for partner_id in sorted({receiver_id} | ({peek.from_partner_id} if peek else set())):
            await uow.partners.lock(partner_id)
        outcome = await stored_outcome(uow, call)
        if outcome is not None:
            return (await uow.licenses.get_many(outcome["license_ids"]))[0]
        now = ctx.clock.now()
        transfer = check_acceptable(
            await uow.transfers.by_code_hash(code_hash, for_update=True), receiver_id=receiver_id, at=now
        )
        await require_standing(uow, receiver_id, Action.ACCEPT_TRANSFER)
        sent = await _offered_license(uow, transfer, for_update=True)
        # The receiver is billed in its own currency: the product needs a price there.
        await require_sellable(uow, receiver_id, [sent.product_slug], now, ["code"], issuing=False)
        # The sender's holding ends first, so the key and the site are free for the receiver's.
        out = drive(sent, LicenseEvent.TRANSFER, at=now)
        await uow.licenses.save(sent)
        received = receive_license(sent, partner_id=receiver_id, at=now)
        await uow.licenses.add_many([received.license])
        transfer.status = TransferStatus.ACCEPTED.value
        transfer.accepted_by_partner_id, transfer.accepted_at = receiver_id, now
        await uow.transfers.save(transfer)
        _record(uow, _origin(ctx), out, {"transfer_id": transfer.id})
        _record(uow, _origin(ctx), received, {"transfer_id": transfer.id})
        await store_outcome(uow, call, {"license_ids": [received.license.id]}, now)
        return received.license


# -- reads ----------------------------------------------------------------------------------------


async def get_license(ctx: RequestContext, *, key: str) -> License:
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        holding = await uow.licenses.held_by(partner_id, key)
    if holding is None:
        raise DomainError(ErrorCode.NOT_FOUND, NOT_FOUND_MESSAGE, "key")
    return holding


async def list_licenses(
    ctx: RequestContext,
    *,
    where: LicenseFilter,
    order: LicenseOrder,
    first: int | None = None,
    after: str | None = None,
    count_total: bool = True,
) -> Page[License]:
    """A page of the caller's licenses; the whole list is counted only when `count_total` asks."""
    partner_id = ctx.partner_id()
    where = LicenseFilter(where.states, where.product_slugs, clean_search(where.search))
    async with ctx.reader() as uow:
        return await uow.licenses.page(
            partner_id, where=where, order=order, first=first, after=after, count_total=count_total
        )


async def license_counts(ctx: RequestContext, partner_id: str | None = None) -> LicenseCounts:
    """How many of the partner's licenses are in each state; `not_revoked` is all but revoked. Staff
    name the partner."""
    partner_id = ctx.readable_partner(partner_id)
    async with ctx.reader() as uow:
        counts = await uow.licenses.counts_by_state(partner_id)
    total = sum(counts.values())
    revoked = counts.get(LicenseState.REVOKED, 0)
    return LicenseCounts(
        issued=counts.get(LicenseState.ISSUED, 0),
        assigned=counts.get(LicenseState.ASSIGNED, 0),
        revoked=revoked,
        transferred=counts.get(LicenseState.TRANSFERRED, 0),
        not_revoked=total - revoked,
        all=total,
    )


async def license_histories(
    ctx: RequestContext, holdings: list[tuple[str, str]]
) -> list[list[RecordedEvent]]:
    """The license events of many (partner id, key) pairs, one statement per partner (for loaders)."""
    caller = ctx.caller()
    by_partner: dict[str, list[str]] = {}
    for partner_id, key in holdings:
        by_partner.setdefault(partner_id, []).append(key)
    found: dict[tuple[str, str], list[RecordedEvent]] = {}
    async with ctx.reader() as uow:
        for partner_id, keys in by_partner.items():
            if not caller.is_staff and caller.partner_id != partner_id:
                continue
            for event in await uow.events.for_subjects(partner_id, "license", keys):
                found.setdefault((partner_id, event.subject), []).append(event)
    return [found.get(holding, []) for holding in holdings]


# -- shared steps -------------------------------------------------------------------------------

Change = Callable[[UnitOfWork, License, datetime], Awaitable[list[Transition]]]


async def _change(
    ctx: RequestContext,
    operation: str,
    key: str,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    change: Change,
) -> License:
    """The frame of every single-license write: lock, replay, load, change, save, record, remember."""
    partner_id = ctx.partner_id(Permission.LICENSES_WRITE)
    call = idempotent_call(partner_id, idempotency_key, operation, {"key": key, **arguments})
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return (await uow.licenses.get_many(outcome["license_ids"]))[0]
        holding = await _held(uow, partner_id, key)
        now = ctx.clock.now()
        transitions = await change(uow, holding, now)
        await uow.licenses.save(holding)
        for transition in transitions:
            _record(uow, _origin(ctx), transition)
        await store_outcome(uow, call, {"license_ids": [holding.id]}, now)
        return holding


async def _held(uow: UnitOfWork, partner_id: str, key: str) -> License:
    holding = await uow.licenses.held_by(partner_id, key, for_update=True)
    if holding is None:
        raise DomainError(ErrorCode.NOT_FOUND, NOT_FOUND_MESSAGE, "key")
    return holding


async def _cancel_pending(
    uow: UnitOfWork, origin: Origin, holding: License, now: datetime
) -> Transfer | None:
    transfer = await uow.transfers.pending_for(holding.id)
    if transfer is None:
        return None
    transfer.status = TransferStatus.CANCELLED.value
    await uow.transfers.save(transfer)
    _note(uow, origin, holding, "transfer_cancelled", now, {"transfer_id": transfer.id})
    return transfer


async def _stored_transfer(uow: UnitOfWork, outcome: dict[str, Any]) -> TransferOutcome:
    transfer = await uow.transfers.get(outcome["transfer_id"])
    holding = None if transfer is None else await uow.licenses.get(transfer.license_id)
    if transfer is None or holding is None:
        raise DomainError(ErrorCode.NOT_FOUND, "The transfer of this idempotency key no longer exists.")
    return TransferOutcome(transfer, holding)


def _record(
    uow: UnitOfWork, origin: Origin, transition: Transition, extra: dict[str, Any] | None = None
) -> None:
    uow.collect(transition.event(extra), request_id=origin.request_id)


def _note(
    uow: UnitOfWork, origin: Origin, holding: License, action: str, at: datetime, extra: dict[str, Any]
) -> None:
    """Record something that happened to a license without changing its state (transfer offers)."""
    uow.collect(license_fact(holding, action, at, extra), request_id=origin.request_id)


@dataclass(frozen=True)
class Origin:
    """In which request a change was made (None for the system's own work); who made it is the unit of
    work's actor."""

    request_id: str | None = None


def _origin(ctx: RequestContext) -> Origin:
    return Origin(ctx.request_id)


async def licenses_by_ids(ctx: RequestContext, license_ids: list[str]) -> list[License | None]:
    """The caller's holdings by id, in the order asked, None where not its own (staff: anyone's; for
    loaders)."""
    owner = ctx.records_owner()
    async with ctx.reader() as uow:
        found = {holding.id: holding for holding in await uow.licenses.get_many(license_ids)}
    return [
        holding if holding is not None and owner in (None, holding.partner_id) else None
        for holding in map(found.get, license_ids)
    ]
