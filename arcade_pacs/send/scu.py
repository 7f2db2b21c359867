"""C-STORE SCU: sends a stored result object (SR, result image, presentation state) to one
destination and returns the peer's status.

A destination that accepts the association but none of the presentation contexts proposed for
the object's SOP class (PS3.8 9.3.2.2) cannot store it however often it is sent: that is
recorded at once as 0x0122, Refused: SOP Class not supported (PS3.7 C.4.2.1.4), a failure the
admin shows and an operator can retry after changing the destination or its ``objects``.

The AE is created once; each delivery opens its own association (PACS peers commonly close
idle associations, and a failed one must not affect the next delivery). A destination that
does not accept the TCP connection within ``outbox.connect_timeout_s``, or accepts it and then
says nothing (a blackhole), costs its own sender at most the configured timeouts. A destination
with ``tls.enabled`` is reached over DICOM TLS (PS3.15 B.9); its TLS context is built once.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

import pydicom
from pynetdicom import AE

from arcade_pacs.dicom.conformance import Contexts
from arcade_pacs.dicom.tls import client_context
from arcade_pacs.settings import Destination, DestinationTls, Settings

log = logging.getLogger(__name__)

SUCCESS_STATUSES = {0x0000, 0xB000, 0xB006, 0xB007}
"""Success, and the Storage warnings that still mean the object was stored (PS3.4 B.2.3)."""
SOP_CLASS_NOT_SUPPORTED = 0x0122
"""Refused: SOP Class not supported (PS3.7 C.4.2.1.4): given when the peer accepted no context for it."""


@dataclass(frozen=True)
class SendOutcome:
    """What happened: ``status`` is the peer's DIMSE status (or STOW-RS Failure/Warning Reason),
    ``None`` when none came back; ``final`` marks a refusal without a status that sending again
    cannot change (e.g. an HTTP 403), so the outbox fails it at once instead of retrying."""

    status: int | None
    error: str | None = None
    final: bool = False

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
        self.destinations = list(settings.destinations)
        self._tls: dict[tuple, ssl.SSLContext] = {}
        for dest in self.destinations:  # bad certificate files stop the start, not a delivery
            if dest.tls.enabled:
                self.tls_context(dest.tls)

    def tls_context(self, tls: DestinationTls) -> ssl.SSLContext:
        """The (cached) client context for one destination's TLS settings."""
        key = (tls.ca_certificates, tls.certificate, tls.private_key, tls.check_hostname)
        if key not in self._tls:
            self._tls[key] = client_context(tls.ca_certificates, tls.certificate, tls.private_key, tls.check_hostname)
        return self._tls[key]

    def _configured_tls(self, ae_title: str, host: str, port: int) -> DestinationTls | None:
        """The TLS settings of the configured destination at this address, if any."""
        for dest in self.destinations:
            if (dest.ae_title, dest.host, dest.port) == (ae_title, host, port) and dest.tls.enabled:
                return dest.tls
        return None

    def send_to(self, path: str, destination: Destination) -> SendOutcome:
        """C-STORE the file at ``path`` to ``destination`` (with its TLS settings); never raises."""
        return self.send(path, destination.ae_title, destination.host, destination.port, tls=destination.tls)

    def send(self, path: str, ae_title: str, host: str, port: int, tls: DestinationTls | None = None) -> SendOutcome:
        """C-STORE the Part 10 file at ``path``; never raises.

        ``tls`` defaults to that of the configured destination with this AE title and address.
        """
        tls = tls if tls is not None else self._configured_tls(ae_title, host, port)
        try:
            tls_args = (self.tls_context(tls), host) if tls is not None and tls.enabled else None
            assoc = self.ae.associate(host, port, ae_title=ae_title, tls_args=tls_args)
        except Exception as exc:  # e.g. an invalid address or unreadable certificate
            return SendOutcome(None, f"association failed: {type(exc).__name__}: {exc}")
        if not assoc.is_established:
            reason = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "no answer"
            return SendOutcome(None, f"association {reason} by {ae_title}@{host}:{port}")
        try:
            sop_class = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"]).SOPClassUID
            if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
                return SendOutcome(SOP_CLASS_NOT_SUPPORTED,
                                   f"peer accepted no presentation context for SOP class {sop_class}")
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
