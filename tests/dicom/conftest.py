from types import SimpleNamespace

import pytest

from arcade_pacs.conformance import load_contexts
from arcade_pacs.receive.ae import make_scp_ae, start_scp
from arcade_pacs.receive.handlers import StoreContext
from tests.helpers import free_port


@pytest.fixture
def scp(settings, sessions):
    """The plugin's SCP running in-process on a free port (receive only; no model needed)."""
    settings.scp.port = free_port()
    settings.scp.host = "127.0.0.1"
    contexts = load_contexts()
    store = StoreContext(settings, sessions, contexts)
    ae = make_scp_ae(settings, contexts)
    server = start_scp(ae, settings, store)
    yield SimpleNamespace(port=settings.scp.port, settings=settings, sessions=sessions, contexts=contexts, store=store)
    server.shutdown()
