"""C-STORE SCU: sends a stored SR file to one destination and returns the peer's status.

The AE is created once; each delivery opens its own association (PACS peers commonly close
idle associations, and a failed one must not affect the next delivery). A destination that
does not accept the TCP connection within ``outbox.connect_timeout_s``, or accepts it and then
says nothing (a blackhole), costs its own sender at most the configured timeouts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pynetdicom import AE

from arcade_pacs.conformance import Contexts
from arcade_pacs.settings import Settings

log = logging.getLogger(__name__)

SUCCESS_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}
"""Success, and the Storage warnings that still mean the object was stored (PS3.4 B.2.3)."""


@dataclass(frozen=True)
class SendOutcome:
    """What happened: ``status`` is the peer's DIMSE status, ``None`` when none came back."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in SUCCESS_STATUSES


class StoreSCU:
    """The SCU side of the plugin (calling AE title = the SCP's AE title)."""

    def __init__(self, settings: Settings, contexts: Contexts):
        self.ae = AE(ae_title=settings.scp.ae_title)
        cfg = settings.outbox
        self.ae.connection_timeout = cfg.connect_timeout_s
        self.ae.network_timeout = cfg.network_timeout_s
        self.ae.acse_timeout = cfg.network_timeout_s
        self.ae.dimse_timeout = cfg.network_timeout_s
        for sop_class, syntaxes in contexts.send.items():
            self.ae.add_requested_context(sop_class, syntaxes)

    def send(self, path: str, ae_title: str, host: str, port: int) -> SendOutcome:
        """C-STORE the Part 10 file at ``path``; never raises."""
        try:
            assoc = self.ae.associate(host, port, ae_title=ae_title)
        except Exception as exc:  # e.g. an invalid address
            return SendOutcome(None, f"association failed: {type(exc).__name__}: {exc}")
        if not assoc.is_established:
            reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no answer"
            return SendOutcome(None, f"association {reason} by {ae_title}@{host}:{port}")
        try:
            response = assoc.send_c_store(path)
            if response is None or "Status" not in response:
                return SendOutcome(None, "no valid C-STORE response (timeout or abort)")
            status = int(response.Status)
            comment = response.get("ErrorComment")
            return SendOutcome(status, None if status in SUCCESS_STATUSES else f"peer status 0x{status:04X} {comment or ''}".strip())
        except Exception as exc:
            return SendOutcome(None, f"C-STORE failed: {type(exc).__name__}: {exc}")
        finally:
            assoc.release()
