"""Delivery into a real PACS: Orthanc stores the SR in the same study as the source images."""

import io

import pydicom
import pytest

from arcade_pacs.bench import peers
from tests.project import SHIPPED_MODEL

pytestmark = [pytest.mark.network, pytest.mark.slow]

COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
FILES = {  # file -> storescu option proposing its transfer syntax
    "xa_rubo0002_cine96_jpegbaseline.dcm": "-xy",
    "xa1_wg04_jpeglossless_sv1.dcm": "-xs",
}


def test_sr_lands_in_orthanc_in_the_source_study(tmp_path, dicom_dir, start_plugin):
    scp_port, admin_port = peers.free_port(), peers.free_port()
    with peers.Orthanc(tmp_path, modalities={"arcade": ["ARCADE", "127.0.0.1", scp_port]}) as pacs:
        config = peers.write_config(tmp_path / "arcade.toml", peers.loopback_config(
            tmp_path, scp_port, admin_port, SHIPPED_MODEL, [peers.dimse_destination(pacs.dicom_port)], ["STORESCU", "PACS"]))
        plugin = start_plugin(config, tmp_path / "plugin.log", scp_port, admin_port)
        try:
            sources = {}
            for name, option in FILES.items():
                path = dicom_dir / name
                ds = pydicom.dcmread(path, stop_before_pixels=True)
                sources[ds.StudyInstanceUID] = ds
                for port, aec in ((pacs.dicom_port, "PACS"), (scp_port, "ARCADE")):  # the PACS and the plugin
                    sent = peers.run([peers.tool("storescu"), option, "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port), str(path)])
                    assert sent.returncode == 0, sent.stdout + sent.stderr

            srs = peers.wait_until(lambda: (lambda found: found if len(found) == len(sources) else None)(
                pacs.instances_of_class(COMPREHENSIVE_3D_SR)), timeout=240, message="both SRs in Orthanc")
        finally:
            plugin.close()

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


SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"


def _run(source: pydicom.Dataset, folder, name: str, series_number: int, frames: int | None = None):
    """A copy of the cine as another run of its study (new series and instance), ``frames`` long."""
    import copy

    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import generate_uid

    ds = copy.deepcopy(source)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesNumber, ds.InstanceNumber = series_number, 1
    if frames is not None:
        kept = list(generate_frames(ds.PixelData, number_of_frames=int(ds.NumberOfFrames)))[:frames]
        ds.PixelData, ds.NumberOfFrames = encapsulate(kept), frames
    path = folder / name
    ds.save_as(path, enforce_file_format=True)
    return path, ds


def test_a_new_version_replaces_the_sr_result_images_and_presentation_states_together_in_orthanc(
        tmp_path, rubo, start_plugin):
    """The PACS is down while the study is reported (version 1), then a second run arrives (version 2);
    once the PACS is up it receives version 2 only: its SR naming version 1 as predecessor, a result
    image and a presentation state per run, all in the source study; nothing of version 1."""
    from tests.integration.reliability import query

    scp_port, admin_port = peers.free_port(), peers.free_port()
    pacs = peers.Orthanc(tmp_path / "orthanc", modalities={"arcade": ["ARCADE", "127.0.0.1", scp_port]})
    config = peers.write_config(tmp_path / "arcade.toml", peers.loopback_config(
        tmp_path, scp_port, admin_port, SHIPPED_MODEL, [peers.dimse_destination(pacs.dicom_port, objects=["sr", "sc", "gsps"])],
        ["STORESCU", "PACS"], outbox={"backoff_initial_s": 1, "backoff_cap_s": 2}))
    db = f"sqlite:///{tmp_path / 'arcade.db'}"
    source = pydicom.dcmread(rubo)
    first, _ = _run(source, tmp_path, "first.dcm", 1, frames=24)
    second, _ = _run(source, tmp_path, "second.dcm", 2, frames=12)

    def send(path, port, aec):
        sent = peers.run([peers.tool("storescu"), "-xy", "-aet", "STORESCU", "-aec", aec, "127.0.0.1", str(port), str(path)])
        assert sent.returncode == 0, sent.stdout + sent.stderr

    plugin = start_plugin(config, tmp_path / "plugin.log", scp_port, admin_port)
    try:
        send(first, scp_port, "ARCADE")
        peers.wait_until(lambda: query(db, "SELECT count(*) FROM reports")[0][0] == 1, timeout=300, message="version 1")
        send(second, scp_port, "ARCADE")
        peers.wait_until(lambda: query(db, "SELECT count(*) FROM reports")[0][0] == 2, timeout=300, message="version 2")
        version1 = {uid for (uid,) in query(db, "SELECT sop_instance_uid FROM result_objects WHERE report_id = 1")}
        old = "SELECT o.kind, d.state FROM deliveries d JOIN result_objects o ON o.id = d.object_id WHERE d.report_id = 1"
        peers.wait_until(lambda: {st for _, st in query(db, old)} == {"superseded"}, timeout=30,
                   message="version 1 superseded (an attempt in flight ends superseded too)")
        assert {k for k, _ in query(db, old)} == {"sr", "sc", "gsps"}
        with pacs:
            for path in (first, second):
                send(path, pacs.dicom_port, "PACS")  # the PACS has the images
            peers.wait_until(lambda: {st for (st,) in query(db, "SELECT state FROM deliveries WHERE report_id = 2")}
                       == {"sent"}, timeout=240, message="version 2 delivered")
            stored = {cls: pacs.instances_of_class(cls) for cls in (COMPREHENSIVE_3D_SR, SECONDARY_CAPTURE, GSPS)}
            study = pacs.post("/tools/find", {"Level": "Study", "Query": {"StudyInstanceUID": source.StudyInstanceUID}})
            sr_file = pacs.file(stored[COMPREHENSIVE_3D_SR][0]["_id"])
    finally:
        plugin.close()

    assert {cls: len(found) for cls, found in stored.items()} == {COMPREHENSIVE_3D_SR: 1, SECONDARY_CAPTURE: 2, GSPS: 2}
    received = {tags["SOPInstanceUID"] for found in stored.values() for tags in found}
    assert not received & version1  # nothing of the replaced version
    assert all(tags["_parent_study"] == study[0] for found in stored.values() for tags in found)  # the source study
    sr = pydicom.dcmread(io.BytesIO(sr_file))
    assert sr.InstanceNumber == 2
    (predecessor,) = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
    assert predecessor.ReferencedSOPInstanceUID in version1
    images = sorted(stored[SECONDARY_CAPTURE], key=lambda t: int(t["InstanceNumber"]))
    assert [int(t["InstanceNumber"]) for t in images] == [2, 3]  # version 1 had the first
    assert len({t["SeriesInstanceUID"] for t in images}) == 1
    assert all("Version 2" in t["ImageComments"] for t in images)
    assert {t["SeriesInstanceUID"] for t in stored[GSPS]} != {images[0]["SeriesInstanceUID"]}
