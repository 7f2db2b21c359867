"""What every admin route may depend on, in one place: the service's state, a session, the token.

The running service's resources reach the app once (:class:`AdminState`, kept on
``app.state``); routes ask for them with ``Depends`` instead of importing globals.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.model.holder import ModelHolder
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
    model: ModelHolder
    retrain: RetrainManager | None = None
    started_at: float = field(default_factory=time.time)
    # The SCP as the service runs it (None where this process runs no SCP, e.g. a test app).
    scp_listening: Callable[[], bool] | None = None
    active_associations: Callable[[], int] | None = None


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
    """State-changing endpoints need ``Authorization: Bearer <admin.token>`` when a token is set.

    Only the header counts, never a cookie, so another site cannot make a browser change
    anything (no cross-site request forgery); the dashboard's forms send the header.
    """
    token = state.settings.admin.token
    if token and not _bearer_ok(token, authorization):
        raise HTTPException(status_code=401, detail="admin token required")


def require_reader(
    request: Request, state: AdminState = Depends(get_state), authorization: str | None = Header(default=None)
) -> None:
    """Reading results (lists, pictures, SRs, the dashboard): the one place their access policy lives.

    Now: open when no token is configured; with a token, the bearer header or the dashboard's
    cookie (``/ui/login``, HttpOnly, SameSite=Strict) must carry it.
    """
    token = state.settings.admin.token
    if not token:
        return
    cookie = request.cookies.get(TOKEN_COOKIE, "")
    if not (_bearer_ok(token, authorization) or secrets.compare_digest(cookie.encode(), token.encode())):
        raise HTTPException(status_code=401, detail="admin token required to read results")
