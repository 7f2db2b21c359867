"""Senders: one thread per destination empties that destination's part of the outbox.

A destination that is down, slow or a blackhole (accepts TCP, never answers) holds up only its
own sender; SR writing runs elsewhere (the reporter), so reporting never waits on the network.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from arcade_pacs.send import outbox
from arcade_pacs.send.scu import StoreSCU
from arcade_pacs.settings import Destination, Settings

log = logging.getLogger(__name__)


class Sender:
    """Sends due deliveries to one destination until stopped; ``wake`` cuts an idle wait short."""

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], scu: StoreSCU,
                 destination: Destination, owner: str):
        self.settings = settings
        self.sessions = sessions
        self.scu = scu
        self.destination = destination
        self.owner = f"{owner}:{destination.name}"[:64]
        self.wake = threading.Event()
        self.stopping = threading.Event()

    def send_due(self) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        attempted = 0
        while not self.stopping.is_set():
            with self.sessions() as session:
                if not outbox.send_next(self.scu, self.destination, self.owner, self.settings.outbox, session=session):
                    return attempted
            attempted += 1
        return attempted

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.send_due()
            except Exception:  # database briefly unavailable: keep the sender alive
                log.exception("sender %s loop error", self.destination.name)
            self.wake.wait(self.settings.outbox.poll_interval_s)
            self.wake.clear()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
