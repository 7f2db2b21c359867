"""What every admin route may depend on, in one place: the service's state, a session, the token.

The running service's resources reach the app once (:class:`AdminState`, kept on
``app.state``); routes ask for them with ``Depends`` instead of importing globals.

The access policy is these dependencies, nothing else:

- :func:`require_token` guards every state-changing endpoint: 403 while no ``admin.token`` is
  configured ("set admin.token to enable"), 401 without ``Authorization: Bearer <token>``;
- :func:`require_reader` guards results, their pictures (keyframes may show burned-in patient
  data), the lists of jobs and deliveries, and ``/predict``: open on an admin without a token
  (which the service binds to loopback only: see ``service.admin_binding_problem``), otherwise
  the token or the dashboard's reading session (:class:`arcade_pacs.admin.auth.SessionStore`);
- ``/health``, ``/ready``, ``/status`` and ``/metrics`` take neither: probes and scrapers carry
  no secret.

A wrong bearer token counts against its client (:class:`arcade_pacs.admin.auth.AuthThrottle`):
past a few, the client's attempts are refused with 429 for a doubling wait.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Header, HTTPException, Path, Query, Request
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.admin.auth import AuthThrottle, SessionStore, TooManyFailures
from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.receive.stow import StowReceiver
from arcade_pacs.settings import Settings

if TYPE_CHECKING:  # the admin never imports training; the service hands it the manager
    from arcade_pacs.training.retrain import RetrainManager

RESEARCH_NOTICE = "Research use only: not clinically validated; not for diagnostic use."

DbId = Annotated[int, Path(ge=1, le=2**31 - 1, description="database id")]
"""A row id in a path: positive and within the id columns (INTEGER, 32 bits on PostgreSQL: a larger
id was a 500 there); else 422, never a database error."""
FrameNumber = Annotated[int, Path(ge=1, le=100_000, description="1-based DICOM frame number")]
Offset = Annotated[int, Query(ge=0, le=10_000_000, description="rows to skip")]
"""Where a page of a list starts: bounded for the API and the dashboard alike (else 422, never an
integer the database cannot bind)."""
Uid = Annotated[str, Path(max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$", description="a DICOM UID")]
"""A UID in a path: at most 64 characters by PS3.5 9.1 (room left for a sender's non-conformant
one), no control characters (PostgreSQL refuses NUL in a string: that was a 500)."""


@dataclass
class AdminState:
    """What the admin reads: the running service's resources."""

    settings: Settings
    sessions: sessionmaker[Session]
    model: ModelHolder | None
    retrain: RetrainManager | None = None
    started_at: float = field(default_factory=time.time)
    # The SCP as the service runs it (None where this process runs no SCP, e.g. a test app).
    scp_listening: Callable[[], bool] | None = None
    active_associations: Callable[[], int] | None = None
    # STOW-RS receipt, where this process runs the SCP (POST /dicom-web/studies; None: not served).
    stow: StowReceiver | None = None
    predict_slots: threading.Semaphore = field(init=False)
    # The dashboard's upload page has slots of its own: /predict's users cannot starve it.
    upload_slots: threading.Semaphore = field(init=False)
    logins: SessionStore = field(init=False)
    throttle: AuthThrottle = field(init=False)

    def __post_init__(self):
        admin = self.settings.admin
        self.predict_slots = threading.BoundedSemaphore(admin.predict_concurrency)
        self.upload_slots = threading.BoundedSemaphore(admin.upload_concurrency)
        self.logins = SessionStore(admin.session_hours * 3600)
        self.throttle = AuthThrottle(admin.auth_free_failures, admin.auth_max_wait_s)


def get_state(request: Request) -> AdminState:
    """The service's resources, given to :func:`arcade_pacs.admin.app.create_app`."""
    return request.app.state.admin


def get_session(state: AdminState = Depends(get_state)) -> Iterator[Session]:
    """One database session per request, closed when the response is sent."""
    with state.sessions() as session:
        yield session


SESSION_COOKIE = "arcade_session"
"""The dashboard's reading session (set by ``/ui/login``): a random id, never the token; it
never authorises a change."""


def client_address(request: Request) -> str:
    """The peer's address as the server sees it (a trusted proxy's X-Forwarded-For applied)."""
    return request.client.host if request.client else "unknown"


def _bearer_ok(token: str, authorization: str) -> bool:
    return secrets.compare_digest(authorization.encode(), f"Bearer {token}".encode())


def check_bearer(request: Request, state: AdminState, authorization: str, detail: str) -> None:
    """The presented bearer header against the token, throttled per client (429 while it must
    wait, 401 when wrong; the value is never logged)."""
    client = client_address(request)
    try:
        state.throttle.check(client)
    except TooManyFailures as exc:
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.seconds)}) from None
    if not _bearer_ok(state.settings.admin.token, authorization):
        state.throttle.failed(client, "bearer token")
        raise HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
    state.throttle.succeeded(client)


def require_token(
    request: Request, state: AdminState = Depends(get_state), authorization: str | None = Header(default=None)
) -> None:
    """State-changing endpoints: refused (403) until a token is configured, then the token is needed (401).

    Only the header counts, never a cookie, so another site cannot make a browser change
    anything (no cross-site request forgery); the dashboard's forms send the header.
    """
    if not state.settings.admin.token:
        raise HTTPException(status_code=403, detail="state-changing endpoints are disabled: set admin.token to enable")
    if not authorization:
        raise HTTPException(status_code=401, detail="admin token required", headers={"WWW-Authenticate": "Bearer"})
    check_bearer(request, state, authorization, "admin token required")


def require_reader(
    request: Request, state: AdminState = Depends(get_state), authorization: str | None = Header(default=None)
) -> None:
    """Reading results (lists, pictures, SRs, jobs, deliveries, the dashboard) and ``/predict``:
    the one place their access policy lives.

    Open when no token is configured (the service then binds the admin to loopback only); with a
    token, the bearer header, or the dashboard's session cookie (``/ui/login``: HttpOnly,
    SameSite=Strict, expiring, revoked by ``/ui/logout``).
    """
    if not state.settings.admin.token:
        return
    detail = "admin token required to read results"
    if authorization:
        check_bearer(request, state, authorization, detail)
        return
    if not state.logins.valid(request.cookies.get(SESSION_COOKIE)):
        raise HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})
