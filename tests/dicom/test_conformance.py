"""The conformance statement, the declared contexts file and the running SCP agree."""

import re
import tomllib
from pathlib import Path

import pytest
from pynetdicom import AE

from arcade_pacs.dicom.conformance import CONTEXTS_FILE, load_contexts

pytestmark = [pytest.mark.network]

STATEMENT = Path(__file__).resolve().parents[2] / "scp" / "CONFORMANCE.md"
UID = re.compile(r"`(1\.2\.840\.10008\.[0-9.]+)`")


def section(title: str) -> str:
    text = STATEMENT.read_text()
    start = text.index(f"### {title}")
    end = text.find("\n### ", start + 1)
    return text[start:end if end > 0 else None]


def test_statement_and_data_file_declare_the_same_contexts():
    declared = tomllib.loads(CONTEXTS_FILE.read_text())
    storage = {s["uid"] for s in declared["storage"]}
    assert set(UID.findall(section("2.3 SOP classes (SCP)"))) == storage | {declared["verification"]["uid"]}
    assert set(UID.findall(section("2.4 Transfer syntaxes (SCP"))) == {t["uid"] for t in declared["transfer_syntax"]}
    sent = {uid for send in declared["send"] for uid in (send["uid"], *send["transfer_syntaxes"])}
    assert len(declared["send"]) == 3  # the SR, the result images (SC) and the presentation states (GSPS)
    assert set(UID.findall(section("2.6 C-STORE SCU"))) == sent


def test_every_declared_transfer_syntax_is_decodable_here():
    assert load_contexts().undecodable == []


def test_running_scp_negotiates_exactly_what_is_declared(scp):
    contexts = load_contexts()
    ae = AE(ae_title="MODALITY")
    for sop_class in contexts.storage:
        for syntax in contexts.transfer_syntaxes:
            ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ARCADE")
    assert assoc.is_established
    accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
    assoc.release()
    assert accepted == {(s, t) for s in contexts.storage for t in contexts.transfer_syntaxes}

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1")  # CT: not declared
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.12.1", "1.2.840.10008.1.2.4.102")  # MPEG-4: not declared
    ae.add_requested_context("1.2.840.10008.1.1", "1.2.840.10008.1.2")
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="ARCADE")
    assert assoc.is_established
    assert {str(c.abstract_syntax) for c in assoc.accepted_contexts} == {"1.2.840.10008.1.1"}
    assert len(assoc.rejected_contexts) == 2
    assoc.release()


def test_wrong_called_ae_title_is_rejected(scp):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", scp.port, ae_title="SOMEONE")
    assert assoc.is_rejected
