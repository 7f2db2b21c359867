"""The SCP's Application Entity: created once, configured from settings and the declared contexts."""

from __future__ import annotations

from pynetdicom import AE, evt
from pynetdicom.transport import ThreadedAssociationServer

from arcade_pacs.conformance import Contexts
from arcade_pacs.receive.audit import AssociationAudit
from arcade_pacs.receive.handlers import StoreContext, handle_echo, handle_store
from arcade_pacs.settings import Settings


def make_scp_ae(settings: Settings, contexts: Contexts) -> AE:
    """An AE accepting exactly the declared contexts and, unless ``"*"``, the allowed calling AEs.

    An association from a calling AE title that is not allowed is rejected by pynetdicom with
    A-ASSOCIATE-RJ, result "rejected-permanent", reason "calling AE title not recognized"
    (PS3.8 9.3.4).
    """
    scp = settings.scp
    ae = AE(ae_title=scp.ae_title)
    ae.maximum_associations = scp.max_associations
    ae.network_timeout = scp.network_timeout_s
    ae.acse_timeout = scp.network_timeout_s
    ae.dimse_timeout = scp.network_timeout_s
    ae.maximum_pdu_size = scp.max_pdu
    ae.require_called_aet = True
    if not scp.accepts_any():
        ae.require_calling_aet = [a.strip() for a in scp.allowed_calling_aets]
    transfer_syntaxes = list(contexts.transfer_syntaxes)
    ae.add_supported_context(contexts.verification)
    for sop_class in contexts.storage:
        ae.add_supported_context(sop_class, transfer_syntaxes)
    return ae


def start_scp(ae: AE, settings: Settings, store: StoreContext) -> ThreadedAssociationServer:
    """Start listening in background threads; returns the server (``.shutdown()`` to stop)."""
    handlers = [
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [store]),
    ]
    handlers.extend(AssociationAudit(store.sessions).handlers())  # GET /associations
    return ae.start_server(
        (settings.scp.host, settings.scp.port), block=False, evt_handlers=handlers
    )
