"""Presentation states (GSPS) on the real samples: valid (dciodvfy), on the right instance and frames,
their graphics exactly the SR's regions, and applied by DCMTK (dcmp2pgm renders the run's frames
at the grey levels the model saw and lists the graphics; dcmpsprt prints the run through them)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from arcade_pacs.bench.peers import run, tool
from arcade_pacs.core.findings import Finding, Region
from arcade_pacs.report import presentation
from arcade_pacs.report.drawing import load_keyframes
from arcade_pacs.report.identity import MANUFACTURER, MODEL_NAME
from arcade_pacs.report.marks import clipped_box, selected_regions, shown_frames
from arcade_pacs.report.objects import Numbering, build_objects
from arcade_pacs.report.sr import build_sr
from arcade_pacs.settings import ObjectKind
from tests.factory import real_frame, xa_dataset
from tests.unit.report.runs import MODEL, SAMPLES, analysed, dciodvfy, reread, saved, source_box, unexplained
from tests.unit.report.test_result_image import _sr_regions

GSPS = "1.2.840.10008.5.1.4.1.1.11.1"


def _state(result):
    built = build_objects([result], [], model=MODEL, images=Numbering(generate_uid(), 1),
                          states=Numbering(generate_uid(), 1), version=1)
    (gsps,) = [b.dataset for b in built if b.kind is ObjectKind.GSPS]
    return gsps


def _annotations(ds) -> dict[int, dict[str, list]]:
    """Frame -> {"boxes": [(x0, y0, x1, y1)], "texts": [...], "layers": {...}} as stored."""
    found: dict[int, dict[str, list]] = {}
    for annotation in ds.GraphicAnnotationSequence:
        (ref,) = annotation.ReferencedImageSequence
        frame = int(ref.get("ReferencedFrameNumber", 1))
        entry = found.setdefault(frame, {"boxes": [], "texts": [], "layers": [], "sops": set()})
        entry["layers"].append(annotation.GraphicLayer)
        entry["sops"].add(ref.ReferencedSOPInstanceUID)
        for g in annotation.get("GraphicObjectSequence", []):
            assert g.GraphicType == "POLYLINE"
            assert g.GraphicAnnotationUnits == "PIXEL"
            xs, ys = g.GraphicData[0::2], g.GraphicData[1::2]
            assert (xs[0], ys[0]) == (xs[-1], ys[-1])  # closed
            entry["boxes"].append((min(xs), min(ys), max(xs), max(ys)))
        entry["texts"] += [t.UnformattedTextValue for t in annotation.get("TextObjectSequence", [])]
    return found


@pytest.mark.parametrize("name", SAMPLES)
def test_the_presentation_state_of_every_sample_passes_dciodvfy(name, dicom_dir, tmp_path):
    result = analysed(dicom_dir / name)
    errors, warnings = dciodvfy(saved(_state(result), tmp_path / "ps.dcm"), "GrayscaleSoftcopyPresentationState")
    assert not errors, "\n".join(errors)
    assert not unexplained(warnings), "\n".join(warnings)
    dumped = run([tool("dcmdump"), str(tmp_path / "ps.dcm")])  # DCMTK reads it too
    assert dumped.returncode == 0, dumped.stderr
    assert "GraphicAnnotationSequence" in dumped.stdout, dumped.stderr
    ds = pydicom.dcmread(tmp_path / "ps.dcm")
    assert ds.SOPClassUID == GSPS
    assert ds.Modality == "PR"
    assert ds.StudyInstanceUID == result.source.StudyInstanceUID
    assert ds.SeriesNumber == presentation.SERIES_NUMBER
    assert "research use" in ds.SeriesDescription
    assert ds.Manufacturer == MANUFACTURER
    assert ds.ManufacturerModelName == MODEL_NAME
    assert [e.DeviceUID for e in ds.ContributingEquipmentSequence if e.get("DeviceUID")] == [MODEL.device_uid]


@pytest.mark.parametrize("name", ["xa_rubo0002_cine96_jpegbaseline.dcm", "rf_siemens_karstenhilbert_uncompressed.dcm"])
def test_it_references_the_run_and_draws_the_sr_regions_on_their_frames(name, dicom_dir):
    result = analysed(dicom_dir / name)
    ds = reread(_state(result))
    (series,) = ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == result.source.SeriesInstanceUID
    (image,) = series.ReferencedImageSequence
    assert image.ReferencedSOPInstanceUID == result.source.SOPInstanceUID
    assert "ReferencedFrameNumber" not in image  # the grey levels apply to the whole run

    marks = _annotations(ds)
    assert sorted(marks) == sorted(shown_frames(result.finding))
    assert all(m["sops"] == {result.source.SOPInstanceUID} for m in marks.values())
    sr = reread(build_sr([result], model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                         instance_number=1))
    from_sr: dict[int, list] = {}
    for _, frame, box in _sr_regions(sr):
        from_sr.setdefault(frame, []).append(box)
    for frame, m in marks.items():  # the very coordinates of the SR's SCOORDs, frame by frame
        assert sorted(m["boxes"]) == sorted(from_sr.get(frame, [])), frame
        assert any("RESEARCH USE ONLY" in t and f"run probability {result.finding.probability:.2f}" in t
                   for t in m["texts"]), m["texts"]
    for region in selected_regions(result.finding):
        assert f"stenosis p={region.probability:.2f}" in marks[region.frame_number]["texts"]
        box = clipped_box(int(result.source.Rows), int(result.source.Columns), region.box)
        assert box in marks[region.frame_number]["boxes"]


def _pgm(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float64)


def test_dcmp2pgm_renders_each_marked_frame_at_the_grey_levels_the_model_saw(rubo, tmp_path):
    """DCMTK applies the GSPS's Modality LUT, VOI and Presentation LUT to the run: the bitmap is the
    frame the classifier saw, within one grey level (the cine is 512x512, so no resampling)."""
    result = analysed(rubo)
    state = saved(_state(result), tmp_path / "ps.dcm")
    plain = tmp_path / "run.dcm"  # dcmp2pgm decodes no JPEG: the same instance, decompressed by DCMTK
    assert run([tool("dcmdjpeg"), str(rubo), str(plain)]).returncode == 0
    frames = shown_frames(result.finding)
    loaded = load_keyframes(rubo, frames)
    for number in frames:
        out = tmp_path / f"f{number}.pgm"
        done = run([tool("dcmp2pgm"), "-p", str(state), "-f", str(number), str(plain), str(out)])
        assert done.returncode == 0, done.stderr
        frame = loaded.frames[number]
        difference = np.abs(_pgm(out) - frame.data * 255)[frame.valid]
        assert difference.max() <= 1.01, (number, difference.max())


def test_dcmp2pgm_lists_the_graphics_and_texts_dcmtk_read(dicom_dir, tmp_path):
    """DCMTK's presentation-state reader finds our graphics on the image (dcmp2pgm -v dumps the
    annotations of frame 1, so a single-frame sample shows them all)."""
    source = dicom_dir / "xa1_wg04_uncompressed_reference.dcm"
    result = analysed(source)
    state = saved(_state(result), tmp_path / "ps.dcm")
    done = run([tool("dcmp2pgm"), "-v", "-p", str(state), str(source), str(tmp_path / "out.pgm")])
    assert done.returncode == 0, done.stderr
    dump = done.stdout + done.stderr
    assert 'description="ARCADE: ' in dump
    drawn = re.findall(r"coordinates: ([\d.\\, ]+)", dump)
    boxes = []
    for line in drawn:
        points = [tuple(float(v) for v in p.split("\\")) for p in line.strip().rstrip(",").split(", ")]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        boxes.append((min(xs), min(ys), max(xs), max(ys)))
    sr = reread(build_sr([result], model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                         instance_number=1))
    assert sorted(boxes) == sorted(box for _, _, box in _sr_regions(sr))
    for region in selected_regions(result.finding):
        assert f'"stenosis p={region.probability:.2f}"' in dump
    assert "RESEARCH USE ONLY - NOT FOR DIAGNOSIS" in dump


def test_dcmpsprt_prints_the_run_through_its_presentation_state(rubo, tmp_path):
    """DCMTK's print renderer makes a hardcopy image of the run with the GSPS's grey levels."""
    result = analysed(rubo)
    state = saved(_state(result), tmp_path / "ps.dcm")
    plain = tmp_path / "run.dcm"
    assert run([tool("dcmdjpeg"), str(rubo), str(plain)]).returncode == 0
    work = tmp_path / "print"
    for folder in ("spool", "database", "log", "lut", "reports"):
        (work / folder).mkdir(parents=True)
    config = work / "dcmpstat.cfg"
    shutil.copy("/etc/dcmtk/dcmpstat.cfg", config)
    done = subprocess.run([tool("dcmpsprt"), "-c", str(config), "+p", str(state), str(plain)], cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (hardcopy,) = (work / "database").glob("HG_*.dcm")
    printed = pydicom.dcmread(hardcopy).pixel_array.astype(np.float64)
    frame = load_keyframes(rubo, [1]).frames[1]  # the print shows the first frame
    small = np.asarray(Image.fromarray(printed).resize((512, 512), Image.Resampling.BOX))
    assert np.corrcoef(small[frame.valid], frame.data[frame.valid])[0, 1] > 0.99


def test_a_monochrome1_run_is_presented_inverse_as_the_model_saw_it(rubo, tmp_path):
    """MONOCHROME1 (bright = low values): the plugin shows it bright-is-bright; so does its GSPS."""
    pixels = np.stack([255 - real_frame(rubo, i) for i in (30, 55)])
    ds = xa_dataset(pixels, photometric="MONOCHROME1")
    path = tmp_path / "mono1.dcm"
    ds.save_as(path, enforce_file_format=True)
    result = analysed(path, lambda header: Finding(
        probability=0.8, threshold=0.4, frame_numbers=[1, 2], frame_probabilities=[0.8, 0.3], tta_original=0.8,
        tta_flipped=0.8, regions=[Region(1, source_box(header, 4), 0.8)]))
    state = reread(_state(result))
    assert state.PresentationLUTShape == "INVERSE"
    saved(_state(result), tmp_path / "ps.dcm")
    loaded = load_keyframes(path, [1])
    out = tmp_path / "f1.pgm"
    done = run([tool("dcmp2pgm"), "-p", str(tmp_path / "ps.dcm"), "-f", "1", str(path), str(out)])
    assert done.returncode == 0, done.stderr
    frame = loaded.frames[1]
    assert np.abs(_pgm(out) - frame.data * 255)[frame.valid].max() <= 1.01
