"""What every admin route may depend on, in one place: the service's state, a session, the token.

The running service's resources reach the app once (:class:`AdminState`, kept on
``app.state``); routes ask for them with ``Depends`` instead of importing globals.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from fastapi import Depends, Header, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.model.holder import ModelHolder
from arcade_pacs.settings import Settings
from arcade_pacs.training.retrain import RetrainManager

RESEARCH_NOTICE = "Research use only: not clinically validated; not for diagnostic use."


@dataclass
class AdminState:
    """What the admin reads: the running service's resources."""

    settings: Settings
    sessions: sessionmaker[Session]
    model: ModelHolder
    retrain: RetrainManager | None = None
    started_at: float = field(default_factory=time.time)


def get_state(request: Request) -> AdminState:
    """The service's resources, given to :func:`arcade_pacs.admin.app.create_app`."""
    return request.app.state.admin


def get_session(state: AdminState = Depends(get_state)) -> Iterator[Session]:
    """One database session per request, closed when the response is sent."""
    with state.sessions() as session:
        yield session


def require_token(
    state: AdminState = Depends(get_state), authorization: str | None = Header(default=None)
) -> None:
    """State-changing endpoints need ``Authorization: Bearer <admin.token>`` when a token is set."""
    token = state.settings.admin.token
    if token and not secrets.compare_digest(authorization or "", f"Bearer {token}"):
        raise HTTPException(status_code=401, detail="admin token required")
