"""Delivery into a real PACS: Orthanc stores the SR in the same study as the source images."""

import io

import pydicom
import pytest

from tests.conftest import SHIPPED_MODEL
from tests.helpers import free_port, run, stop, tool, wait_until
from tests.integration.conftest import plugin_config, start_plugin
from tests.integration.orthanc import Orthanc

pytestmark = [pytest.mark.network, pytest.mark.slow]

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
FILES = {  # file -> storescu option proposing its transfer syntax
    "xa_rubo0002_cine96_jpegbaseline.dcm": "-xy",
    "xa1_wg04_jpeglossless_sv1.dcm": "-xs",
}


def test_sr_lands_in_orthanc_in_the_source_study(tmp_path, dicom_dir):
    scp_port, admin_port = free_port(), free_port()
    with Orthanc(tmp_path, modalities={"arcade": ["ARCADE", "127.0.0.1", scp_port]}) as pacs:
        config = plugin_config(tmp_path, scp_port, admin_port, pacs.dicom_port, ["STORESCU", "PACS"], SHIPPED_MODEL)
        plugin = start_plugin(config, tmp_path / "plugin.log", scp_port, admin_port)
        try:
            sources = {}
            for name, option in FILES.items():
                path = dicom_dir / name
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                sources[ds.StudyInstanceUID] = ds
                for port, aec in ((pacs.dicom_port, "PACS"), (scp_port, "ARCADE")):  # the PACS and the plugin
                    sent = run([tool("storescu"), option, "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port), str(path)])
                    assert sent.returncode == 0, sent.stdout + sent.stderr

            srs = wait_until(lambda: (lambda found: found if len(found) == len(sources) else None)(
                pacs.instances_of_class(COMPREHENSIVE_3D_SR)), timeout=240, message="both SRs in Orthanc")
        finally:
            stop(plugin)

        for sr_tags in srs:
            study_uid = sr_tags["StudyInstanceUID"]
            source = sources[study_uid]
            study = pacs.get(f"/studies/{sr_tags['_parent_study']}")
            assert study["MainDicomTags"]["StudyInstanceUID"] == study_uid
            series_sop_classes = set()
            for series_id in study["Series"]:
                for iid in pacs.get(f"/series/{series_id}")["Instances"]:
                    series_sop_classes.add(pacs.get(f"/instances/{iid}/simplified-tags")["SOPClassUID"])
            assert {COMPREHENSIVE_3D_SR, source.SOPClassUID} <= series_sop_classes
            sr = pydicom.dcmread(io.BytesIO(pacs.file(sr_tags["_id"])))
            refs = {
                item.ReferencedSOPInstanceUID
                for series in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence
            }
            assert refs == {source.SOPInstanceUID}
            # The referenced image is there too, as a viewer would need it.
            assert pacs.post("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": source.SOPInstanceUID}})
