"""ASGI guards around the server's app: JSON errors, upload limits, and no connection broken by an error."""
from __future__ import annotations

import traceback

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status)


class UploadLimit:
    """ASGI middleware: a request body over the limit gets a JSON 413, whether it announces its
    length or streams it in chunks, before the endpoint has read it all into memory."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_bytes
        message = f"upload is larger than the {limit / 2**20:g} MiB allowed"
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return await error(413, message)(scope, receive, send)
        received = 0

        async def counting_receive():
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:  # raised inside the endpoint's read: answered by http_error
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, counting_receive, send)


class ContainErrors:
    """ASGI middleware (inside Starlette's own): an unexpected error becomes a JSON 500 answered on
    a connection that stays usable. (Starlette's outermost handler re-raises after answering, and
    the server then drops the keep-alive connection without saying so: the next request fails.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            traceback.print_exc()
            if started:
                raise
            await error(500, f"internal error: {type(exc).__name__}")(scope, receive, send)
