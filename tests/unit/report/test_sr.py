"""The SR built from real XA headers: validated by dciodvfy, rendered by dsrdump, read back by highdicom."""

import io

import highdicom as hd
import pydicom
import pytest
from pydicom.uid import generate_uid

from arcade_pacs.bench.peers import run, tool
from arcade_pacs.core.findings import Finding, Region
from arcade_pacs.report import codes
from arcade_pacs.report.sr import (
    MAX_REASON_CHARS,
    FailedRun,
    InstanceResult,
    ModelIdentity,
    build_sr,
    incomplete_description,
)

MODEL = ModelIdentity("ARCADE EfficientNetB0 stenosis classifier", "effb0-test-1", generate_uid())


def _results(dicom_dir):
    cine = pydicom.dcmread(dicom_dir / "xa_rubo0002_cine96_jpegbaseline.dcm", stop_before_pixels=True)
    single = pydicom.dcmread(dicom_dir / "xa1_wg04_rle.dcm", stop_before_pixels=True)
    single.StudyInstanceUID = cine.StudyInstanceUID  # one study, two runs, of one patient
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"):
        setattr(single, keyword, cine.get(keyword, ""))
    positive = Finding(probability=0.83, threshold=0.4, frame_numbers=[40, 55, 56, 80],
                       frame_probabilities=[0.7, 0.91, 0.88, 0.7], tta_original=0.8, tta_flipped=0.86,
                       regions=[Region(55, (128.0, 0.0, 384.0, 256.0), 0.91)])
    negative = Finding(probability=0.12, threshold=0.4, frame_numbers=[1], frame_probabilities=[0.12],
                       tta_original=0.1, tta_flipped=0.14)
    return [
        InstanceResult(source=cine, finding=positive, model=MODEL),
        InstanceResult(source=single, finding=negative, model=MODEL),
    ]


def _failed(dicom_dir, reason="pixel data cannot be decoded: frame 3 is truncated"):
    """A second cine run of the same study whose analysis failed."""
    cine = pydicom.dcmread(dicom_dir / "xa_rubo0002_cine96_jpegbaseline.dcm", stop_before_pixels=True)
    cine.SeriesInstanceUID, cine.SOPInstanceUID = generate_uid(), generate_uid()
    cine.SeriesNumber, cine.InstanceNumber = 7, 1
    return FailedRun(source=cine, reason=reason)


def _save(sr, path):
    sr.save_as(path, enforce_file_format=True)
    return path


def _dciodvfy_errors(path) -> list[str]:
    out = run([tool("dciodvfy"), str(path)])
    text = out.stdout + out.stderr
    assert "Comprehensive3DSR" in text
    return [line for line in text.splitlines() if line.startswith("Error")]


def _imaging_measurement_groups(ds) -> list:
    """The Measurement Group containers under Imaging Measurements, as stored."""
    (container,) = [i for i in ds.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"]
    return list(container.ContentSequence)


def _scoords(item) -> list:
    """SCOORD items a viewer can place a group by: at the group's top level, or under one of its NUMs."""
    found = [c for c in item.ContentSequence if c.ValueType == "SCOORD"]
    for num in (c for c in item.ContentSequence if c.ValueType == "NUM"):
        found += [c for c in num.get("ContentSequence", []) if c.ValueType == "SCOORD"]
    return found


def _inferred_frames(measurement) -> list[int]:
    """Frames of the SCOORDs a Probability is INFERRED FROM, in order (single-frame: [1])."""
    frames = []
    for coords in measurement.referenced_coordinates:
        assert coords.RelationshipType == "INFERRED FROM"
        ref = coords.ContentSequence[0].ReferencedSOPSequence[0]
        frames.append(int(ref.get("ReferencedFrameNumber", 1)))
    return frames


@pytest.fixture
def sr_file(dicom_dir, tmp_path):
    sr = build_sr(_results(dicom_dir), model=MODEL, series_instance_uid=generate_uid(),
                  sop_instance_uid=generate_uid(), instance_number=1)
    path = tmp_path / "sr.dcm"
    sr.save_as(path, enforce_file_format=True)
    return path


def test_dciodvfy_reports_no_errors(sr_file):
    errors = _dciodvfy_errors(sr_file)
    assert not errors, "\n".join(errors)


def test_dsrdump_renders_the_findings(sr_file):
    out = run([tool("dsrdump"), str(sr_file)])
    assert out.returncode == 0, out.stderr
    assert "Imaging Measurement Report" in out.stdout
    assert "Coronary angiography" in out.stdout
    assert '(52101004,SCT,"Present")' in out.stdout
    assert '(272519000,SCT,"Absent")' in out.stdout
    assert "UNVERIFIED" in out.stdout


def test_values_round_trip_through_highdicom(sr_file, dicom_dir):
    ds = pydicom.dcmread(sr_file)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert ds.VerificationFlag == "UNVERIFIED"
    assert ds.CompletionFlag == "COMPLETE"
    cine = pydicom.dcmread(dicom_dir / "xa_rubo0002_cine96_jpegbaseline.dcm", stop_before_pixels=True)
    assert ds.StudyInstanceUID == cine.StudyInstanceUID
    assert ds.PatientID == cine.PatientID
    assert ds.SeriesInstanceUID != cine.SeriesInstanceUID
    assert "research" in ds.SeriesDescription.lower()
    equipment = ds.ContributingEquipmentSequence[0]
    assert equipment.PurposeOfReferenceCodeSequence[0].CodeValue == codes.PROCESSING_EQUIPMENT.value
    assert equipment.DeviceUID == MODEL.device_uid

    sr = hd.sr.srread(sr_file)
    report = sr.content
    groups = report.get_planar_roi_measurement_groups()
    image_groups = report.get_image_measurement_groups()
    summary, run_cine, run_single = image_groups
    assert summary.tracking_identifier == "Study summary"
    assert summary.get_qualitative_evaluations()[0].value == codes.PRESENT
    probabilities = [g.get_measurements(name=codes.PROBABILITY)[0].value for g in image_groups]
    assert probabilities == [pytest.approx(0.83), pytest.approx(0.83), pytest.approx(0.12)]
    assert run_cine.get_qualitative_evaluations()[0].value == codes.PRESENT
    assert run_single.get_qualitative_evaluations()[0].value == codes.ABSENT
    ref = run_cine.source_images[0]
    assert ref.referenced_sop_instance_uid == cine.SOPInstanceUID
    assert list(ref.ReferencedSOPSequence[0].ReferencedFrameNumber) == [40, 55, 56, 80]
    assert "ReferencedFrameNumber" not in run_single.source_images[0].ReferencedSOPSequence[0]
    from pydicom.sr.codedict import codes as dcm_codes

    versions = hd.sr.utils.find_content_items(run_cine[0], name=dcm_codes.DCM.AlgorithmVersion)
    assert versions[0].TextValue == MODEL.version
    parameters = [i.TextValue for i in hd.sr.utils.find_content_items(run_cine[0], name=dcm_codes.DCM.AlgorithmParameters)]
    assert {"threshold=0.4000", "tta_original=0.8000", "tta_flipped=0.8600"} <= set(parameters)
    assert any(p.startswith("tta=") for p in parameters)
    assert "keyframes=40,55,56,80" in parameters
    (region_group,) = groups
    region = region_group.roi
    assert region.GraphicType == "POLYLINE"
    assert [float(v) for v in region.GraphicData][:4] == [128.0, 0.0, 384.0, 0.0]
    assert int(region.ContentSequence[0].ReferencedSOPSequence[0].ReferencedFrameNumber) == 55
    assert region_group.get_qualitative_evaluations()[0].value == codes.PRESENT

    # Where a viewer draws each value: the region's Probability is INFERRED FROM a copy of the
    # region (what OHIF's measurement import reads), on the same frame...
    (region_probability,) = region_group.get_measurements(name=codes.PROBABILITY)
    assert region_probability.value == pytest.approx(0.91)
    (copy,) = region_probability.referenced_coordinates
    assert list(copy.GraphicData) == list(region.GraphicData)
    assert copy.GraphicType == "POLYLINE"
    assert _inferred_frames(region_probability) == [55]
    comments = hd.sr.utils.find_content_items(region_group[0], name=codes.COMMENT)
    assert [c.TextValue for c in comments] == ["stenosis probability 0.91 (research use)"]
    # ...a run's Probability is INFERRED FROM the whole frames it is the mean of (top 3, best
    # first), the study's from those of its best run; a single-frame image has no frame number.
    rows, cols = int(cine.Rows), int(cine.Columns)
    for group in (summary, run_cine):
        (p,) = group.get_measurements(name=codes.PROBABILITY)
        assert _inferred_frames(p) == [55, 56, 40]
        assert all(list(c.GraphicData) == [0, 0, cols, 0, cols, rows, 0, rows, 0, 0] for c in p.referenced_coordinates)
    (p_single,) = run_single.get_measurements(name=codes.PROBABILITY)
    (single_coords,) = p_single.referenced_coordinates
    assert "ReferencedFrameNumber" not in single_coords.ContentSequence[0].ReferencedSOPSequence[0]
    assert ds.CompletionFlag == "COMPLETE"
    assert "CompletionFlagDescription" not in ds


def test_every_group_can_be_placed_on_an_image(sr_file, dicom_dir, tmp_path):
    """OHIF v3 places every Measurement Group on an image frame and fails on one with no SCOORD."""
    for path in (sr_file, _save(build_sr(_results(dicom_dir), failed=[_failed(dicom_dir)], model=MODEL,
                                         series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                                         instance_number=1), tmp_path / "partial.dcm")):
        groups = _imaging_measurement_groups(pydicom.dcmread(path))
        assert len(groups) >= 4
        for group in groups:
            scoords = _scoords(group)
            assert scoords, "a Measurement Group without spatial coordinates"
            assert all(s.ContentSequence[0].RelationshipType == "SELECTED FROM" for s in scoords)
            tracking = [c.TextValue for c in group.ContentSequence if c.ValueType == "TEXT"
                        and c.ConceptNameCodeSequence[0].CodeValue == "112039"]
            assert tracking
            assert ":" not in tracking[0]  # viewers read "a:b" as a tool name


def test_a_run_that_could_not_be_analysed_is_reported_with_its_reason(dicom_dir, tmp_path):
    results = _results(dicom_dir)
    failed = _failed(dicom_dir)
    path = _save(build_sr(results, failed=[failed], model=MODEL, series_instance_uid=generate_uid(),
                          sop_instance_uid=generate_uid(), instance_number=1), tmp_path / "partial.dcm")
    assert not _dciodvfy_errors(path)
    ds = pydicom.dcmread(path)
    assert ds.CompletionFlag == "PARTIAL"
    assert ds.CompletionFlagDescription == incomplete_description(1, 3) == "incompletely assessed: 1 of 3 runs not analysed"
    evidence = {i.ReferencedSOPInstanceUID for s in ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
                for i in s.ReferencedSOPSequence}
    assert failed.source.SOPInstanceUID in evidence

    report = hd.sr.srread(path).content
    summary = report.get_image_measurement_groups()[0]
    assert summary.get_qualitative_evaluations()[0].value == codes.PRESENT  # a positive run stays positive
    comments = hd.sr.utils.find_content_items(summary[0], name=codes.COMMENT)
    assert [c.TextValue for c in comments] == [incomplete_description(1, 3)]
    (group,) = [g for g in report.get_planar_roi_measurement_groups() if g.tracking_identifier.endswith("not analysed")]
    assert group.tracking_identifier == "Run series 7 image 1 not analysed"
    assert group.get_qualitative_evaluations()[0].value == codes.NOT_EVALUATED
    assert group.get_measurements() == []  # no probability is invented for it
    comments = hd.sr.utils.find_content_items(group[0], name=codes.COMMENT)
    assert [c.TextValue for c in comments] == [f"not analysed: {failed.reason}"]
    ref = group.roi.ContentSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == failed.source.SOPInstanceUID
    assert ref.ReferencedFrameNumber == 1

    dump = run([tool("dsrdump"), str(path)])
    assert dump.returncode == 0
    assert '(373121007,SCT,"Not Evaluated")' in dump.stdout
    assert "PARTIAL" in dump.stdout


def test_a_study_without_a_positive_run_and_a_failed_one_is_indeterminate_not_absent(dicom_dir, tmp_path):
    negative = _results(dicom_dir)[1]
    sr = build_sr([negative], failed=[_failed(dicom_dir)], model=MODEL, series_instance_uid=generate_uid(),
                  sop_instance_uid=generate_uid(), instance_number=1)
    summary = hd.sr.srread(_save(sr, tmp_path / "sr.dcm")).content.get_image_measurement_groups()[0]
    assert summary.get_qualitative_evaluations()[0].value == codes.INDETERMINATE
    sr = build_sr([negative], model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                  instance_number=1)
    summary = hd.sr.srread(_save(sr, tmp_path / "complete.dcm")).content.get_image_measurement_groups()[0]
    assert summary.get_qualitative_evaluations()[0].value == codes.ABSENT


def test_a_study_whose_only_run_failed_gets_an_sr_without_a_summary(dicom_dir, tmp_path):
    failed = _failed(dicom_dir, reason="x" * 5000)
    path = _save(build_sr([], failed=[failed], model=MODEL, series_instance_uid=generate_uid(),
                          sop_instance_uid=generate_uid(), instance_number=1), tmp_path / "sr.dcm")
    assert not _dciodvfy_errors(path)
    report = hd.sr.srread(path).content
    assert report.get_image_measurement_groups() == []
    (group,) = report.get_planar_roi_measurement_groups()
    (comment,) = hd.sr.utils.find_content_items(group[0], name=codes.COMMENT)
    assert len(comment.TextValue) == MAX_REASON_CHARS
    assert pydicom.dcmread(path).CompletionFlagDescription == incomplete_description(1, 1)
    with pytest.raises(ValueError):
        build_sr([], failed=[], model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                 instance_number=1)


def test_a_replacement_names_its_predecessor(dicom_dir, sr_file):
    first = pydicom.dcmread(sr_file)
    second = build_sr(_results(dicom_dir), model=MODEL, series_instance_uid=first.SeriesInstanceUID,
                      sop_instance_uid=generate_uid(), instance_number=2, predecessor=first)
    ref = second.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert ref.ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert second.SeriesInstanceUID == first.SeriesInstanceUID
    assert second.InstanceNumber == 2
    buffer = io.BytesIO()
    second.save_as(buffer, enforce_file_format=True)
    assert buffer.getvalue()[128:132] == b"DICM"


@pytest.mark.parametrize("where", ["result", "failed run"])
def test_an_sr_never_references_an_instance_of_another_patient(dicom_dir, where):
    """Defence in depth (issue 18): whatever the caller hands it, the builder refuses two patients."""
    from arcade_pacs.dicom.identity import MixedPatients

    results = _results(dicom_dir)
    other = results[1].source
    other.PatientID, other.PatientName = "OTHERPATIENT77", "COLLIDE^BOB"
    kwargs = dict(model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(), instance_number=1)
    if where == "result":
        with pytest.raises(MixedPatients):
            build_sr(results, **kwargs)
    else:
        failed = FailedRun(source=other, reason="not decodable")
        with pytest.raises(MixedPatients):
            build_sr(results[:1], failed=[failed], **kwargs)
    other.PatientID, other.PatientName = results[0].source.PatientID, results[0].source.PatientName
    assert build_sr(results, **kwargs).PatientID == results[0].source.PatientID


def test_an_issuer_qualifies_the_patient_id(dicom_dir):
    from arcade_pacs.dicom.identity import MixedPatients

    results = _results(dicom_dir)
    kwargs = dict(model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(), instance_number=1)
    results[0].source.IssuerOfPatientID = "HOSPITAL-A"
    build_sr(results, **kwargs)  # one issuer named, the other silent: the same patient
    results[1].source.IssuerOfPatientID = "HOSPITAL-B"
    with pytest.raises(MixedPatients):
        build_sr(results, **kwargs)  # the same ID from two assigning authorities: two patients


def test_a_source_reference_is_what_highdicom_makes_and_refuses_frames_the_image_has_not(rubo):
    from arcade_pacs.report.sr import _reference

    source = pydicom.dcmread(rubo, stop_before_pixels=True)  # 96 frames
    for kind in (hd.sr.SourceImageForRegion, hd.sr.SourceImageForMeasurementGroup):
        assert _reference(kind, source, [7, 3, 7]) == kind.from_source_image(source, referenced_frame_numbers=[3, 7])
        with pytest.raises(ValueError, match="outside 1..96"):
            _reference(kind, source, [97])
