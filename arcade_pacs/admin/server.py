"""The admin's HTTP server (uvicorn), bounded against slow and greedy clients, logging without PHI.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) but not the time a
request takes to arrive: twenty uploads at one byte a second, or fifty connections sending
their headers slowly, were all held open indefinitely (slowloris). :class:`GuardedH11Protocol`
adds Apache mod_reqtimeout's rule to uvicorn's h11 protocol:

- a request's headers must arrive within ``admin.header_timeout_s`` of its first byte (of the
  connection, for a new one);
- its body within ``admin.body_timeout_s``, extended by one second for every
  ``admin.body_min_rate`` bytes received (time the server itself stops reading, while the
  application is busy with what it has, is not held against the client);
- one address holds at most ``admin.max_connections_per_client`` connections (further ones are
  closed at once), and the server at most ``admin.max_connections`` (uvicorn's
  ``limit_concurrency``: 503 beyond).

A connection that misses a deadline is closed and the drop is logged (the client's address and
which deadline, never request content). uvicorn's own loggers pass the same
:class:`arcade_pacs.core.phi.PhiFilter` as the plugin's (an application error's traceback printed
the exception's message, values included), and uvicorn leaves logging to the process
(``log_config=None``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from arcade_pacs.core.phi import PhiFilter
from arcade_pacs.settings import Settings

log = logging.getLogger(__name__)

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@dataclass(frozen=True)
class ClientLimits:
    """The deadlines and caps of :class:`GuardedH11Protocol` (from ``[admin]``)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 20.0
    body_min_rate: int = 500
    max_connections_per_client: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientLimits:
        a = settings.admin
        return cls(a.header_timeout_s, a.body_timeout_s, a.body_min_rate, a.max_connections_per_client)


class _DropLog:
    """One warning per reason every few seconds, with a count: an attack must not flood the log."""

    EVERY_S = 5.0

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.last: dict[str, float] = {}

    def report(self, reason: str, client: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self.last.get(reason, -self.EVERY_S) >= self.EVERY_S:
            log.warning("admin HTTP: closed %d connection(s): %s (last from %s)", self.counts[reason], reason, client)
            self.last[reason], self.counts[reason] = now, 0


DROPS = _DropLog()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with request deadlines and a per-client connection cap (module docstring)."""

    limits = ClientLimits()

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = None
        self._phase = ""
        self._body_started = 0.0
        self._body_bytes = 0
        cap = self.limits.max_connections_per_client
        if cap and self.client is not None:
            same = sum(1 for c in self.connections if getattr(c, "client", None) and c.client[0] == self.client[0])
            if same > cap:
                DROPS.report(f"more than {cap} connections from one address", self.client[0])
                transport.close()
                return
        self._watch(0)

    def connection_lost(self, exc) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch(len(data))

    # What the client owes now, and by when.
    def _watch(self, received: int) -> None:
        if self.transport.is_closing():
            return self._cancel()
        state = self.conn.their_state
        if state is h11.IDLE:  # a request's headers are (partly) due
            if self._phase != "headers":
                self._phase = "headers"
                self._arm(self.limits.header_timeout_s)
        elif state is h11.SEND_BODY:
            now = time.monotonic()
            if self._phase != "body":
                self._phase, self._body_started, self._body_bytes = "body", now, 0
            self._body_bytes += received
            self._arm(self._body_due() - now)
        else:
            self._phase = ""
            self._cancel()

    def _body_due(self) -> float:
        return self._body_started + self.limits.body_timeout_s + self._body_bytes / self.limits.body_min_rate

    def _arm(self, delay: float) -> None:
        self._cancel()
        self._deadline = self.loop.call_later(max(delay, 0.0), self._expired)

    def _cancel(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if self._phase == "headers" and state is h11.IDLE:
            reason = f"request headers not received within {self.limits.header_timeout_s:g} s"
        elif self._phase == "body" and state is h11.SEND_BODY:
            if self.flow.read_paused:  # the application is behind, not the client: wait for it
                self._body_started += self.limits.body_timeout_s
                return self._arm(self.limits.body_timeout_s)
            reason = (f"request body slower than {self.limits.body_min_rate} bytes/s "
                      f"(after {self.limits.body_timeout_s:g} s)")
        else:
            return
        DROPS.report(reason, self.client[0] if self.client else "?")
        self.transport.close()


def protocol_class(limits: ClientLimits) -> type[GuardedH11Protocol]:
    """:class:`GuardedH11Protocol` with ``limits`` (uvicorn instantiates the class it is given)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


def filter_uvicorn_logs() -> None:
    """uvicorn's loggers pass :class:`~arcade_pacs.core.phi.PhiFilter` (a logger's filter sees its own
    records, before any handler: each logger gets one)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PhiFilter) for f in logger.filters):
            logger.addFilter(PhiFilter())


GRACEFUL_SHUTDOWN_S = 10
"""Seconds the admin HTTP server waits for requests in flight once told to stop."""


def server_config(app, settings: Settings) -> uvicorn.Config:
    """How ``serve`` runs the admin app: bounded clients, HTTPS when configured, no PHI in logs."""
    admin = settings.admin
    filter_uvicorn_logs()
    tls = {}
    if admin.tls_certificate is not None and str(admin.tls_certificate):
        tls = {"ssl_certfile": str(admin.tls_certificate),
               "ssl_keyfile": str(admin.tls_private_key) if admin.tls_private_key else None}
    return uvicorn.Config(
        app, host=admin.host, port=admin.port, log_level="warning", log_config=None,
        http=protocol_class(ClientLimits.from_settings(settings)),
        limit_concurrency=admin.max_connections, timeout_keep_alive=5,
        # On SIGTERM, requests in flight get this long, then the loops' own deadline
        # (service.STOP_WAIT_S) follows: together inside the 60-s grace of compose and Kubernetes.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        proxy_headers=True, forwarded_allow_ips=admin.forwarded_allow_ips, server_header=False, **tls)
