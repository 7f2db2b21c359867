"""Every admin response is hardened here, in one ASGI middleware (:class:`Guard`).

- **Trusted hosts.** A DNS-rebinding page (its own name, re-pointed at this host) would be
  same-origin with the admin and could read ``/reports/{sop}.dcm``, which carries the patient's
  header. Its requests carry its own name in ``Host``, so only the names of
  :func:`trusted_hosts` are answered (400 otherwise); an IP address is always accepted, since a
  rebinding page cannot send one.
- **Security headers** on every response, refusals included: a Content-Security-Policy that
  allows only the admin's own scripts, styles and pictures (``data:`` pictures for the upload
  page) and no framing (``frame-ancestors 'none'``, with ``X-Frame-Options: DENY`` for older
  browsers), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin`` (no address,
  with its study UID, reaches another site; ``no-referrer`` would make Chromium send
  ``Origin: null`` with the dashboard's own forms), and HSTS over HTTPS (OWASP Secure Headers
  Project). The API documentation pages get the same policy
  except inline styles and ``blob:`` workers, which Swagger UI and ReDoc need.
- **Cross-origin writes.** A POST (or other unsafe method) whose ``Origin`` is not this host is
  refused (403): a second line behind the SameSite=Strict session cookie and the bearer header
  that changes need (OWASP CSRF Prevention Cheat Sheet, "Verifying origin with standard headers").
"""

from __future__ import annotations

import ipaddress
import json
import socket
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders

from arcade_pacs.settings import Settings

POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
          "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
               "connect-src 'self'; font-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
               "form-action 'self'; frame-ancestors 'none'")
DOCS_PATHS = ("/docs", "/redoc")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def trusted_hosts(settings: Settings) -> list[str]:
    """The names the admin answers to: ``localhost``, ``admin.host`` when it is a name, this
    machine's name, and ``admin.trusted_hosts`` (``*.example.org`` matches subdomains; ``*`` all)."""
    names = ["localhost", socket.gethostname()]
    host = settings.admin.host.strip()
    if host and not _is_ip(host):
        names.append(host)
    names += settings.admin.trusted_hosts
    return sorted({n.strip().lower().rstrip(".") for n in names if n.strip()})


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def host_name(host_header: str) -> str:
    """The name (or address) of a ``Host`` header, without its port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


class Guard:
    """ASGI middleware: trusted ``Host``, same-origin writes, security headers (module docstring)."""

    def __init__(self, app, allowed_hosts: list[str]):
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.names = {h for h in allowed_hosts if not h.startswith("*")}
        self.suffixes = tuple(h[1:] for h in allowed_hosts if h.startswith("*.") and len(h) > 2)

    def host_ok(self, host_header: str | None) -> bool:
        if self.any_host or host_header is None:  # no Host (HTTP/1.0): not a browser's request
            return True
        name = host_name(host_header)
        return _is_ip(name) or name in self.names or name.endswith(self.suffixes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_headers = Headers(scope=scope)
        host = request_headers.get("host")
        path = scope.get("path", "")
        policy = DOCS_POLICY if path in DOCS_PATHS else POLICY
        https = scope.get("scheme") == "https"

        async def hardened(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", policy)
                headers["x-frame-options"] = "DENY"
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = "same-origin"
                if https:
                    headers["strict-transport-security"] = "max-age=31536000"
            await send(message)

        if not self.host_ok(host):
            return await _refuse(hardened, 400, "invalid Host header: add the name to admin.trusted_hosts")
        origin = request_headers.get("origin")
        if scope["method"] not in SAFE_METHODS and origin is not None and not _same_origin(origin, host):
            return await _refuse(hardened, 403, "cross-origin request refused")
        return await self.app(scope, receive, hardened)


def _same_origin(origin: str, host: str | None) -> bool:
    if host is None:
        return False
    netloc = urlsplit(origin).netloc.lower()
    return bool(netloc) and netloc == host.strip().lower()


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
