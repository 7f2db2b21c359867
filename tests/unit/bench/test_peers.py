"""The peers the bench and the tests share: the one TOML writer reads back as written, and
DCMTK's storescp started through :class:`StoreSCP` receives what storescu sends."""

import tomllib

import pydicom
import pytest

from arcade_pacs.bench import peers
from tests.factory import real_frame, xa_dataset

HOSTILE = 'C:\\store\\"quoted"\n\ttab\x01\x7f é 漢字 \U0001F600'


def test_the_config_written_reads_back_as_it_was_given(tmp_path):
    values = {
        "data_dir": str(tmp_path / HOSTILE),
        "scp": {"port": 11112, "allowed_calling_aets": ["STORESCU", "A\"B"], "max_associations": 40},
        "pipeline": {"lease_s": 2.5, "study_quiet_seconds": 0},
        "model": {"path": tmp_path / "m.keras", "check_images": False},
        "faults": {"kill_at": "stored"},
        "scp_tls": {"ciphers": [], "nested": {"depth": 2}},
        "dicomweb_senders": [{"name": "modality", "token": HOSTILE}],
        "destinations": [{"name": "a", "objects": ["sr"]}, {"name": "b", "port": 104}],
    }
    read = tomllib.loads(peers.write_config(tmp_path / "arcade.toml", values).read_text())
    assert read == {**values, "model": {"path": str(tmp_path / "m.keras"), "check_images": False}}


def test_an_empty_destinations_list_stays_an_empty_array(tmp_path):
    text = peers.write_config(tmp_path / "a.toml", {"scp": {"port": 1}, "destinations": []}).read_text()
    assert tomllib.loads(text) == {"scp": {"port": 1}, "destinations": []}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None, {1, 2}])
def test_a_value_toml_cannot_hold_is_refused(tmp_path, value):
    with pytest.raises((TypeError, ValueError)):
        peers.write_config(tmp_path / "a.toml", {"scp": {"x": value}})


def test_loopback_config_merges_sections_into_its_tables(tmp_path):
    values = peers.loopback_config(tmp_path, 1, 2, "m.keras", [peers.dimse_destination(3, objects=["sr"])],
                                   ["STORESCU", "PACS"], pipeline={"lease_s": 4}, outbox={"backoff_cap_s": 2},
                                   model={"engine": "keras"})
    assert values["model"] == {"path": "m.keras", "engine": "keras"}
    assert values["pipeline"] == {"study_quiet_seconds": 1, "lease_s": 4}
    assert values["outbox"] == {"backoff_cap_s": 2}
    assert values["scp"]["allowed_calling_aets"] == ["STORESCU", "PACS"]
    assert values["database"]["url"] == f"sqlite:///{tmp_path / 'arcade.db'}"
    assert values["destinations"] == [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1", "port": 3,
                                       "objects": ["sr"]}]


@pytest.mark.network
def test_storescp_receives_each_transmission_as_its_own_file_and_stops(tmp_path, rubo):
    ds = xa_dataset(real_frame(rubo, 20))
    path = tmp_path / "one.dcm"
    ds.save_as(path, enforce_file_format=True)
    with peers.StoreSCP(tmp_path / "pacs", unique_names=True) as pacs:
        for _ in range(2):
            sent = peers.storescu(pacs.port, path, called="PACS", options=["-v"])
            assert peers.acknowledged(sent), sent.stdout + sent.stderr
        arrivals = [pacs.arrivals.get(timeout=30)[1] for _ in range(2)]
    assert not pacs.running
    assert len(set(arrivals)) == 2
    assert set(arrivals) == set(pacs.folder.iterdir())
    assert {pydicom.dcmread(p).SOPInstanceUID for p in arrivals} == {ds.SOPInstanceUID}


def test_a_missing_peer_is_a_failure_that_names_it():
    with pytest.raises(peers.PeerMissing, match="no-such-peer-xyz"):
        peers.tool("no-such-peer-xyz")
