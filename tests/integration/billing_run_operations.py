"""Closing a month over GraphQL: closeBillingMonth answers its billing run at once, and the run goes on
in the background (in-process on SQLite, procrastinate workers on PostgreSQL); these helpers wait for it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.integration.conftest import Api

RUN_FIELDS = """id month status partnersTotal closed alreadyClosed notOver pending failed paid pastDue
uncollected startedAt finishedAt failures { partnerId state tries reason }"""
RUN = "run { " + RUN_FIELDS + " }"
START_CLOSE = (
    "mutation($input: CloseBillingMonthInput!) { closeBillingMonth(input: $input) {"
    " month closed alreadyClosed pending paid pastDue uncollected "
    + RUN
    + " errors { code message field } } }"
)
BILLING_RUN = "query($id: ID!) { billingRun(id: $id) { " + RUN_FIELDS + " } }"


async def start_close(
    api: Api, month: str, token: str, *, idempotency_key: str | None = None
) -> dict[str, Any]:
    """closeBillingMonth's payload, as answered (the run has just started)."""
    sent: dict[str, Any] = {"month": month}
    if idempotency_key is not None:
        sent["idempotencyKey"] = idempotency_key
    payload: dict[str, Any] = (await api.data(START_CLOSE, {"input": sent}, token))["closeBillingMonth"]
    return payload


async def finished_run(api: Api, run_id: str, token: str, *, timeout: float = 240) -> dict[str, Any]:
    """Poll billingRun until the run has finished (every partner done or given up)."""
    deadline = time.monotonic() + timeout
    while True:
        run: dict[str, Any] = (await api.data(BILLING_RUN, {"id": run_id}, token))["billingRun"]
        if run["status"] == "FINISHED":
            return run
        assert time.monotonic() < deadline, f"billing run still running after {timeout}s: {run}"
        await asyncio.sleep(0.05)


async def close_month(
    api: Api, month: str, token: str, *, idempotency_key: str | None = None
) -> dict[str, Any]:
    """Close `month` and wait for its run: the payload's counts as the finished run has them (`pending`
    keeps its old meaning: partners whose month is not over in their zone), with `run` and `errors`."""
    payload = await start_close(api, month, token, idempotency_key=idempotency_key)
    if payload["errors"]:
        return payload
    run = await finished_run(api, payload["run"]["id"], token)
    return {
        "month": run["month"],
        "closed": run["closed"],
        "alreadyClosed": run["alreadyClosed"],
        "pending": run["notOver"],
        "paid": run["paid"],
        "pastDue": run["pastDue"],
        "uncollected": run["uncollected"],
        "run": run,
        "errors": [],
    }
