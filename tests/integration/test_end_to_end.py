"""The walking skeleton, end to end with real peers and the shipped model.

modality (DCMTK storescu) -> `arcade-pacs serve` -> SR -> PACS (DCMTK storescp);
the SR is checked with dsrdump and dciodvfy.
"""

import json
import urllib.request

import pydicom
import pytest

from arcade_pacs.bench.peers import dimse_destination, free_port, loopback_config, run, tool, wait_until, write_config
from tests.project import SHIPPED_MODEL

pytestmark = [pytest.mark.network, pytest.mark.slow]


def test_cine_in_sr_out(tmp_path, storescp, start_plugin, rubo):
    scp_port, admin_port = free_port(), free_port()
    config = write_config(tmp_path / "arcade.toml", loopback_config(
        tmp_path, scp_port, admin_port, SHIPPED_MODEL, [dimse_destination(storescp.port)]))
    log = tmp_path / "plugin.log"
    plugin = start_plugin(config, log, scp_port, admin_port)
    try:
        sent = run([tool("storescu"), "-xy", "-aet", "STORESCU", "-aec", "ARCADE", "127.0.0.1", str(scp_port), str(rubo)])
        assert sent.returncode == 0, sent.stdout + sent.stderr

        # storescp writes the file as the data arrives, so the file is complete only once the
        # plugin has the peer's success status for it: wait for that, not for the file name.
        def sent():
            status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status"))
            return status["deliveries"].get("sent", 0) >= 2

        wait_until(sent, timeout=180, message="SR and result image delivered to the PACS (the default kinds)")
        srs = list(storescp.folder.glob("SR*"))
        assert len(srs) == 1
        sr = pydicom.dcmread(srs[0])
        source = pydicom.dcmread(rubo, stop_before_pixels=True)
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
        assert sr.StudyInstanceUID == source.StudyInstanceUID
        assert sr.PatientID == source.PatientID
        assert sr.SeriesInstanceUID != source.SeriesInstanceUID
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID

        dump = run([tool("dsrdump"), str(srs[0])])
        assert dump.returncode == 0
        assert "Imaging Measurement Report" in dump.stdout
        check = run([tool("dciodvfy"), str(srs[0])])
        errors = [line for line in (check.stdout + check.stderr).splitlines() if line.startswith("Error")]
        assert not errors, "\n".join(errors)

        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/status"))
        assert status["instances_received"] == 1
        assert status["jobs"]["done"] == 1
        assert status["deliveries"]["sent"] == 2
        (image,) = [d for d in map(pydicom.dcmread, storescp.folder.iterdir())
                    if d.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"]
        assert image.StudyInstanceUID == source.StudyInstanceUID
        assert image.BurnedInAnnotation == "YES"
        # the shipped int8 form passed its own validation: it serves, under its own version, and the SR names it
        version = json.loads(SHIPPED_MODEL.with_suffix(".json").read_text())["version"] + "-int8"
        assert (status["model"]["engine"], status["model"]["version"]) == ("litert-int8", version)
        assert version in {str(e.value) for e in sr.iterall() if isinstance(e.value, str)}
        health = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/health"))
        assert health["status"] == "ok"
        assert health["model_loaded"] is True
    finally:
        plugin.close()
    assert plugin.returncode in (0, -15), log.read_text()[-3000:]
    # No patient data in the logs.
    text = log.read_text()
    assert "Rubo" not in text
    assert source.PatientID not in text
