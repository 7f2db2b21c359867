"""Request bodies counted while they arrive: refused with 413 past the limit, never spooled whole.

Starlette spools an uploaded file to disk before a route sees it; without a bound, one request
could fill the disk before any size check ran. This ASGI middleware refuses a declared
``Content-Length`` over the limit at once, and counts the bytes of a body without one (chunked
transfer), stopping the read at the limit.
"""

from __future__ import annotations

import json

from fastapi import HTTPException


class BodyLimit:
    """Wraps an ASGI app: request bodies larger than ``max_bytes`` get 413."""

    def __init__(self, app, max_bytes: int, exempt: tuple[str, ...] = ()):
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt  # path prefixes whose routes bound their bodies themselves

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path", "").startswith(self.exempt):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _refuse(send, self.max_bytes)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises an HTTPException raised while it reads the body.
                    raise HTTPException(413, f"request body larger than {self.max_bytes} bytes")
            return message

        return await self.app(scope, counted, send)


async def _refuse(send, max_bytes: int) -> None:
    body = json.dumps({"detail": f"request body larger than {max_bytes} bytes"}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
