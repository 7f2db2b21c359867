"""Who may read and change through the admin: the token's strength, the dashboard's sessions, and
failed attempts slowed down per client.

- :func:`token_problem`: a token that a network client could guess is refused at start while the
  admin listens beyond loopback (``service.admin_binding_problem``).
- :class:`SessionStore`: ``/ui/login`` trades the token for a random session id kept in an
  HttpOnly cookie. The id is not the token: it only reads (every change needs the bearer token),
  it expires after ``admin.session_hours``, and ``/ui/logout`` revokes it. Ids live in the admin
  process (a restart logs everyone out) and are kept hashed (OWASP Session Management Cheat Sheet).
- :class:`AuthThrottle`: after ``admin.auth_free_failures`` failed attempts a client waits
  (1 s, 2 s, 4 s ... up to ``admin.auth_max_wait_s``) and its attempts meanwhile are refused
  with 429 before the token is even compared, so guessing goes no faster than the waits allow
  (NIST SP 800-63B 5.2.2, rate limiting). Failures are logged with the client's address, never
  the value tried.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 32
MIN_TOKEN_DISTINCT = 8
PLACEHOLDERS = ("changeme", "example", "password", "secret123")
TOKEN_ADVICE = "generate one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"


def token_problem(token: str, what: str = "admin.token") -> str | None:
    """Why ``token`` (named ``what`` in the message) is too weak for a server reachable from the
    network, or ``None``. The admin's token and every STOW-RS sender's token meet the same rule.

    At least :data:`MIN_TOKEN_LENGTH` characters with :data:`MIN_TOKEN_DISTINCT` distinct ones
    (``secrets.token_urlsafe(32)`` gives 43; 32 random hex digits have fewer than 8 distinct
    about once in 10^7 draws), and not a placeholder left from an example file.
    The value is never quoted back.
    """
    if len(token) < MIN_TOKEN_LENGTH:
        return f"{what} has {len(token)} characters; at least {MIN_TOKEN_LENGTH} are needed ({TOKEN_ADVICE})"
    if len(set(token)) < MIN_TOKEN_DISTINCT:
        return (f"{what} repeats too few characters ({len(set(token))} distinct, at least "
                f"{MIN_TOKEN_DISTINCT} needed; {TOKEN_ADVICE})")
    squashed = "".join(c for c in token.lower() if c.isalnum())
    if any(word in squashed for word in PLACEHOLDERS):
        return f"{what} is still a placeholder from an example ({TOKEN_ADVICE})"
    return None


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    """Reading sessions of the dashboard, in memory: random ids (256 bits), absolute expiry."""

    MAX_SESSIONS = 10_000

    def __init__(self, lifetime_s: float, clock: Callable[[], float] = time.time):
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self) -> str:
        """A new session id (the cookie's value), valid for ``lifetime_s``."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self._lock:
            self._drop_expired(now)
            while len(self._expiry) >= self.MAX_SESSIONS:
                self._expiry.popitem(last=False)
            self._expiry[_digest(session_id)] = now + self.lifetime_s
        return session_id

    def valid(self, session_id: str | None) -> bool:
        if not session_id:
            return False
        with self._lock:
            expiry = self._expiry.get(_digest(session_id))
            if expiry is None:
                return False
            if expiry <= self.clock():
                del self._expiry[_digest(session_id)]
                return False
            return True

    def revoke(self, session_id: str | None) -> None:
        if session_id:
            with self._lock:
                self._expiry.pop(_digest(session_id), None)

    def __len__(self) -> int:
        return len(self._expiry)

    def _drop_expired(self, now: float) -> None:
        # Expiries are in issue order (one lifetime for all), so the expired ones come first.
        while self._expiry and next(iter(self._expiry.values())) <= now:
            self._expiry.popitem(last=False)


class TooManyFailures(Exception):
    """A client must wait ``retry_after`` seconds before its next attempt."""

    def __init__(self, retry_after: float):
        super().__init__(f"too many failed attempts; try again in {math.ceil(retry_after)} s")
        self.retry_after = retry_after

    @property
    def seconds(self) -> int:
        return max(1, math.ceil(self.retry_after))


class AuthThrottle:
    """Failed authentications per client address, and how long each must wait.

    A client's count is forgotten ``forget_s`` after its last failure, or at its first success;
    at most ``MAX_CLIENTS`` addresses are remembered (the oldest forgotten first).
    """

    MAX_CLIENTS = 10_000

    def __init__(self, free_failures: int = 5, max_wait_s: float = 300.0, forget_s: float = 900.0,
                 clock: Callable[[], float] = time.monotonic):
        self.free_failures = free_failures
        self.max_wait_s = max_wait_s
        self.forget_s = forget_s
        self.clock = clock
        self._clients: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (failures, last)
        self._lock = threading.Lock()

    def _wait(self, failures: int) -> float:
        over = failures - self.free_failures
        return 0.0 if over < 0 else min(self.max_wait_s, 2.0 ** over)

    def check(self, client: str) -> None:
        """Raise :class:`TooManyFailures` while ``client`` must still wait."""
        with self._lock:
            entry = self._clients.get(client)
            if entry is None:
                return
            failures, last = entry
            now = self.clock()
            if now - last > self.forget_s:
                del self._clients[client]
                return
            left = last + self._wait(failures) - now
        if left > 0:
            raise TooManyFailures(left)

    def failed(self, client: str, kind: str) -> None:
        """Count a failure of ``client`` (``kind``: what it tried, e.g. ``bearer token``) and log it."""
        now = self.clock()
        with self._lock:
            failures, last = self._clients.pop(client, (0, now))
            failures = 1 if now - last > self.forget_s else failures + 1
            self._clients[client] = (failures, now)
            while len(self._clients) > self.MAX_CLIENTS:
                self._clients.popitem(last=False)
        wait = self._wait(failures)
        log.warning("admin authentication failed: %s from %s (%d failure(s) in a row%s)", kind, client, failures,
                    f"; its next attempt is refused for {wait:g} s" if wait else "")

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)
