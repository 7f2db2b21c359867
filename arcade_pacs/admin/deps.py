"""What every admin route may depend on, in one place: the service's state, a session, the token.

The running service's resources reach the app once (:class:`AdminState`, kept on
``app.state``); routes ask for them with ``Depends`` instead of importing globals.

The access policy is these dependencies, nothing else:

- :func:`require_token` guards every state-changing endpoint: 403 while no ``admin.token`` is
  configured ("set admin.token to enable"), 401 without ``Authorization: Bearer <token>``;
- :func:`require_reader` guards results, their pictures (keyframes may show burned-in patient
  data) and the lists of jobs and deliveries: open on an admin without a token (which the
  service binds to loopback only: see ``service.admin_binding_problem``), the token otherwise;
- ``/health``, ``/ready`` and ``/metrics`` take neither: probes and scrapers carry no secret.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.receive.stow import StowReceiver
from arcade_pacs.settings import Settings
from arcade_pacs.training.retrain import RetrainManager

RESEARCH_NOTICE = "Research use only: not clinically validated; not for diagnostic use."

DbId = Annotated[int, Path(ge=1, le=2**63 - 1, description="database id")]
"""A row id in a path: positive and within a 64-bit column (else 422, never a database error)."""
FrameNumber = Annotated[int, Path(ge=1, le=100_000, description="1-based DICOM frame number")]


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

    def __post_init__(self):
        self.predict_slots = threading.BoundedSemaphore(self.settings.admin.predict_concurrency)


def get_state(request: Request) -> AdminState:
    """The service's resources, given to :func:`arcade_pacs.admin.app.create_app`."""
    return request.app.state.admin


def get_session(state: AdminState = Depends(get_state)) -> Iterator[Session]:
    """One database session per request, closed when the response is sent."""
    with state.sessions() as session:
        yield session


TOKEN_COOKIE = "arcade_token"
"""The dashboard's reading cookie (set by ``/ui/login``); it never authorises a change."""


def _bearer_ok(token: str, authorization: str | None) -> bool:
    return secrets.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def require_token(
    state: AdminState = Depends(get_state), authorization: str | None = Header(default=None)
) -> None:
    """State-changing endpoints: refused (403) until a token is configured, then the token is needed (401).

    Only the header counts, never a cookie, so another site cannot make a browser change
    anything (no cross-site request forgery); the dashboard's forms send the header.
    """
    token = state.settings.admin.token
    if not token:
        raise HTTPException(status_code=403, detail="state-changing endpoints are disabled: set admin.token to enable")
    if not _bearer_ok(token, authorization):
        raise HTTPException(status_code=401, detail="admin token required", headers={"WWW-Authenticate": "Bearer"})


def require_reader(
    request: Request, state: AdminState = Depends(get_state), authorization: str | None = Header(default=None)
) -> None:
    """Reading results (lists, pictures, SRs, jobs, deliveries, the dashboard): the one place their
    access policy lives.

    Open when no token is configured (the service then binds the admin to loopback only); with a
    token, the bearer header or the dashboard's cookie (``/ui/login``, HttpOnly, SameSite=Strict)
    must carry it.
    """
    token = state.settings.admin.token
    if not token:
        return
    cookie = request.cookies.get(TOKEN_COOKIE, "")
    if not (_bearer_ok(token, authorization) or secrets.compare_digest(cookie.encode(), token.encode())):
        raise HTTPException(status_code=401, detail="admin token required to read results",
                            headers={"WWW-Authenticate": "Bearer"})
