"""The floor for bench/subscriptions.py: a bare Starlette websocket broadcast, no GraphQL, no database.

It speaks just enough graphql-transport-ws for the bench's subscribers (connection_init → ack,
subscribe → registered) and, on `POST /fire`, sends one message, serialized once, to every subscriber
in turn under uvicorn with the same websocket implementation as `licensing serve`. What the service
needs beyond this to deliver an event is what it adds around the transport.

    .venv/bin/uvicorn --app-dir bench broadcast_app:app --port 8002 --ws-per-message-deflate false
"""

from __future__ import annotations

import json
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

# Each subscriber's operation id and group (the `since` it subscribed with: one per bench partner).
subscribers: dict[WebSocket, tuple[str, str]] = {}


async def graphql(websocket: WebSocket) -> None:
    await websocket.accept(subprotocol="graphql-transport-ws")
    try:
        while True:
            message = json.loads(await websocket.receive_text())
            if message["type"] == "connection_init":
                await websocket.send_text('{"type":"connection_ack"}')
            elif message["type"] == "subscribe":
                variables = message["payload"].get("variables") or {}
                subscribers[websocket] = (message["id"], str(variables.get("since")))
    except WebSocketDisconnect:
        pass
    finally:
        subscribers.pop(websocket, None)


async def fire(request: Request) -> JSONResponse:
    """Send one new event to every subscriber of the group named in `?group=`."""
    group = request.query_params["group"]
    key = f"floor_{uuid.uuid4().hex}"
    event = {"licenseEvents": {"key": key, "seq": 1, "action": "issue", "toState": "ISSUED"}}
    payload = json.dumps({"data": event}, separators=(",", ":"))
    sent = 0
    for websocket, (operation_id, its_group) in list(subscribers.items()):
        if its_group != group:
            continue
        sent += 1
        try:
            await websocket.send_text(
                f'{{"id":{json.dumps(operation_id)},"type":"next","payload":{payload}}}'
            )
        except (WebSocketDisconnect, RuntimeError):
            subscribers.pop(websocket, None)
    return JSONResponse({"key": key, "sent": sent})


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        WebSocketRoute("/graphql", graphql),
        Route("/fire", fire, methods=["POST"]),
        Route("/healthz", healthz),
    ]
)
