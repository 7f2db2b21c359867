"""The one private use of pynetdicom (where chunked data sets are written) fails loudly on a
pynetdicom it was not checked against, in this test and when the SCP starts."""

import inspect
from importlib.metadata import version

import pytest
from pynetdicom import dimse_messages

from arcade_pacs.receive import pynetdicom_adapter
from arcade_pacs.receive.pynetdicom_adapter import CALL, TESTED_VERSIONS, UnsupportedPynetdicom


def test_the_installed_pynetdicom_is_a_tested_release():
    installed = version("pynetdicom")
    assert installed.startswith(TESTED_VERSIONS), (
        f"pynetdicom {installed} is new: read how pynetdicom.dimse_messages opens received data sets, "
        f"update arcade_pacs/receive/pynetdicom_adapter.py and its TESTED_VERSIONS, and scp/CONFORMANCE.md"
    )


def test_pynetdicom_still_opens_received_data_sets_through_the_replaced_name():
    source = inspect.getsource(dimse_messages)
    assert CALL in source
    assert "STORE_RECV_CHUNKED_DATASET" in source
    pynetdicom_adapter.check()


def test_an_untested_release_stops_the_scp(monkeypatch):
    monkeypatch.setattr(pynetdicom_adapter, "version", lambda name: "4.0.0")
    with pytest.raises(UnsupportedPynetdicom, match="not a tested release"):
        pynetdicom_adapter.check()


def test_a_changed_call_stops_the_scp(monkeypatch):
    monkeypatch.setattr(pynetdicom_adapter, "CALL", 'NamedTemporaryFile(delete=True)')
    with pytest.raises(UnsupportedPynetdicom, match="no longer opens"):
        pynetdicom_adapter.check()
