import contextlib
from types import SimpleNamespace

import pytest

from arcade_pacs.bench.peers import free_port
from arcade_pacs.dicom.conformance import load_contexts
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext


@contextlib.contextmanager
def running_scp(settings, sessions):
    """The plugin's SCP running in-process on a free port with ``settings`` (receive only)."""
    settings.scp.port = free_port()
    settings.scp.host = "127.0.0.1"
    contexts = load_contexts()
    store = StoreContext(settings, sessions, contexts)
    ae = make_scp_ae(settings, contexts)
    server = start_scp(ae, settings, store)
    try:
        yield SimpleNamespace(port=settings.scp.port, settings=settings, sessions=sessions, contexts=contexts,
                              store=store, server=server)
    finally:
        server.shutdown()


@pytest.fixture
def scp(settings, sessions):
    """The plugin's SCP running in-process on a free port (receive only; no model needed)."""
    with running_scp(settings, sessions) as running:
        yield running
