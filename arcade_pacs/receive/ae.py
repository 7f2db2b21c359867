"""The SCP's Application Entity: created once, configured from settings and the declared contexts."""

from __future__ import annotations

import logging

from pynetdicom import AE, evt

from arcade_pacs.dicom.conformance import Contexts
from arcade_pacs.dicom.tls import server_context
from arcade_pacs.receive.audit import AssociationAudit
from arcade_pacs.receive.handlers import StoreContext, handle_echo, handle_requested, handle_store
from arcade_pacs.receive.transport import ArcadeAssociationServer, AssociationSlots, ChunkedReceipt
from arcade_pacs.settings import Settings
from arcade_pacs.store.files import incoming_dir, sweep_temporary_files

log = logging.getLogger(__name__)


def make_scp_ae(settings: Settings, contexts: Contexts) -> AE:
    """An AE accepting exactly the declared contexts and, unless ``"*"``, the allowed calling AEs.

    An association from a calling AE title that is not allowed is rejected by pynetdicom with
    A-ASSOCIATE-RJ, result "rejected-permanent", reason "calling AE title not recognized"
    (PS3.8 9.3.4). ``scp.max_pdu`` is the Maximum Length Received we announce (PS3.8 D.1).

    pynetdicom's ``maximum_associations`` counts every connection's thread, associated or not;
    it is set to the limit of open connections (``scp.max_connections``: what the server admits
    anyway), and the SCP's own limit of established associations is
    :class:`~arcade_pacs.receive.transport.AssociationSlots`.
    """
    scp = settings.scp
    ae = AE(ae_title=scp.ae_title)
    ae.maximum_associations = scp.connection_limit()
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


def start_scp(ae: AE, settings: Settings, store: StoreContext) -> ArcadeAssociationServer:
    """Start listening in background threads; returns the server (``.shutdown()`` to stop).

    Before listening, temporary files a crash left in the store are removed (nothing in them
    was acknowledged), and data sets are set to arrive as files under the storage root
    (:class:`~arcade_pacs.receive.transport.ChunkedReceipt`). With ``scp.tls`` configured the
    port speaks TLS only.
    """
    scp, root = settings.scp, settings.storage.root
    swept = sweep_temporary_files(root)
    if swept:
        log.info("removed %d temporary files left by an earlier process", swept)
    store.receipt = ChunkedReceipt(incoming_dir(root), scp.max_instance_bytes)
    store.receipt.install()
    store.slots = AssociationSlots(scp.max_associations)
    store.audit = AssociationAudit(store.sessions)
    ssl_context = None
    if scp.tls.enabled:
        ssl_context = server_context(scp.tls.certificate, scp.tls.private_key, scp.tls.ca_certificates)
    handlers = [
        (evt.EVT_REQUESTED, handle_requested, [store]),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store, [store]),
    ]
    handlers.extend(store.slots.handlers())
    handlers.extend(store.audit.handlers())  # GET /associations
    server = ae.make_server(
        (scp.host, scp.port),
        ssl_context=ssl_context,
        evt_handlers=handlers,
        server_class=ArcadeAssociationServer,
        max_pdu=scp.max_pdu,
        handshake_timeout_s=scp.tls.handshake_timeout_s,
        deadline_s=scp.network_timeout_s,
        max_connections_per_peer=scp.peer_connection_limit(),
        max_connections=scp.connection_limit(),
    )
    server.start()
    return server
