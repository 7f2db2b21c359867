"""Result images (Secondary Capture) from the real samples: valid (dciodvfy), readable (pydicom),
drawn where the SR says, captioned legibly (tesseract reads the caption), and drawn by the
dashboard's own code."""

import io
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from arcade_pacs.admin import pictures
from arcade_pacs.bench.peers import run, tool
from arcade_pacs.report import result_image
from arcade_pacs.report.drawing import OUTLINE, OUTLINE_WIDTH, load_keyframes
from arcade_pacs.report.identity import MANUFACTURER, MODEL_NAME, NOTICE
from arcade_pacs.report.marks import selected_regions, shown_frames
from arcade_pacs.report.objects import Numbering, build_objects
from arcade_pacs.report.sr import FailedRun, build_sr
from arcade_pacs.settings import ObjectKind
from tests.unit.report.runs import (
    MODEL,
    SAMPLES,
    analysed,
    dciodvfy,
    negative_finding,
    reread,
    saved,
    unexplained,
)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def _objects(results, failed=(), version=1):
    return build_objects(list(results), list(failed), model=MODEL, images=Numbering(generate_uid(), 1),
                         states=Numbering(generate_uid(), 1), version=version)


def _image(result):
    (sc,) = [b.dataset for b in _objects([result]) if b.kind is ObjectKind.SC]
    return sc


def _sr_regions(sr) -> list[tuple[str, int, tuple[float, float, float, float]]]:
    """Every TID 1410 image region of the SR as read back: (SOP Instance UID, frame, box)."""
    (container,) = [i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"]
    found = []
    for group in container.ContentSequence:
        for item in group.ContentSequence:
            if item.ValueType == "SCOORD" and item.ConceptNameCodeSequence[0].CodeValue == "111030":
                ref = item.ContentSequence[0].ReferencedSOPSequence[0]
                xs, ys = item.GraphicData[0::2], item.GraphicData[1::2]
                found.append((ref.ReferencedSOPInstanceUID, int(ref.get("ReferencedFrameNumber", 1)),
                              (min(xs), min(ys), max(xs), max(ys))))
    return found


def _ocr(pixels: np.ndarray) -> str:
    """What tesseract (Debian's tesseract-ocr) reads in an image, on one line."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    done = subprocess.run([tool("tesseract"), "-", "-"], input=buffer.getvalue(), capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return " ".join(done.stdout.decode(errors="replace").split())


@pytest.mark.parametrize("name", SAMPLES)
def test_the_result_image_of_every_sample_passes_dciodvfy_and_reads_back(name, dicom_dir, tmp_path):
    result = analysed(dicom_dir / name)
    sc = _image(result)
    errors, warnings = dciodvfy(saved(sc, tmp_path / "sc.dcm"), "SCImage")
    assert not errors, "\n".join(errors)
    assert not unexplained(warnings), "\n".join(warnings)

    dumped = run([tool("dcmdump"), str(tmp_path / "sc.dcm")])  # DCMTK reads it too
    assert dumped.returncode == 0, dumped.stderr
    assert "BurnedInAnnotation" in dumped.stdout, dumped.stderr
    ds = pydicom.dcmread(tmp_path / "sc.dcm")
    source = result.source
    assert ds.SOPClassUID == SECONDARY_CAPTURE
    assert ds.Modality == "OT"
    assert ds.StudyInstanceUID == source.StudyInstanceUID
    assert ds.PatientID == source.PatientID
    assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert ds.SeriesNumber == result_image.SERIES_NUMBER
    assert "research use" in ds.SeriesDescription
    assert ds.BurnedInAnnotation == "YES"
    assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.pixel_array.shape == (ds.Rows, ds.Columns, 3)
    assert ds.pixel_array.std() > 10  # not blank
    (ref,) = ds.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert ref.PurposeOfReferenceCodeSequence[0].CodeValue == "121329"  # Source image for montage
    frames = shown_frames(result.finding)
    if int(source.get("NumberOfFrames", 1) or 1) > 1:
        assert sorted(int(n) for n in ref.ReferencedFrameNumber) == sorted(frames)
    else:
        assert "ReferencedFrameNumber" not in ref
    assert ", ".join(str(n) for n in frames) in ds.DerivationDescription
    if name.endswith("jpegbaseline.dcm"):
        assert ds.LossyImageCompression == "01"  # derived from lossy JPEG: marked lossy (PS3.3 C.7.6.1.1.5)
    # The equipment identity the SR has.
    sr = reread(build_sr([result], model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                         instance_number=1))
    for keyword in ("Manufacturer", "ManufacturerModelName", "SoftwareVersions"):
        assert ds[keyword].value == sr[keyword].value, keyword
    assert ds.Manufacturer == MANUFACTURER
    assert ds.ManufacturerModelName == MODEL_NAME
    ours = [e for e in ds.ContributingEquipmentSequence if e.get("DeviceUID")]
    assert [e.DeviceUID for e in ours] == [MODEL.device_uid] == [e.DeviceUID for e in sr.ContributingEquipmentSequence
                                                                  if e.get("DeviceUID")]


@pytest.mark.parametrize("name", ["xa_rubo0002_cine96_jpegbaseline.dcm", "rf_siemens_karstenhilbert_uncompressed.dcm"])
def test_every_outline_in_the_result_image_is_where_the_sr_says_a_region_is(name, dicom_dir):
    """Read the regions back from the SR; each one's outline is red in its frame's tile, and every
    red pixel of the image belongs to one of them (the RF sample has non-square frames)."""
    result = analysed(dicom_dir / name)
    pixels = _image(result).pixel_array
    sr = reread(build_sr([result], model=MODEL, series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                         instance_number=1))
    regions = _sr_regions(sr)
    assert len(regions) == len(selected_regions(result.finding)) >= 2
    frames = shown_frames(result.finding)
    rows, columns = int(result.source.Rows), int(result.source.Columns)
    red = np.all(pixels == OUTLINE, axis=-1)
    expected = np.zeros_like(red)
    for sop, frame, (x0, y0, x1, y1) in regions:
        assert sop == result.source.SOPInstanceUID
        ox, oy = result_image.tile_origin(frames.index(frame), len(frames))
        left, top = ox + round(x0 * result_image.TILE / columns), oy + round(y0 * result_image.TILE / rows)
        right = ox + round(x1 * result_image.TILE / columns) - 1
        bottom = oy + round(y1 * result_image.TILE / rows) - 1
        for x in np.linspace(left, right, 9).round().astype(int):  # the outer line of each edge
            assert red[top, x], (frame, x)
            assert red[bottom, x], (frame, x)
        for y in np.linspace(top, bottom, 9).round().astype(int):
            assert red[y, left], (frame, y)
            assert red[y, right], (frame, y)
        ring = np.zeros_like(red)
        ring[top:bottom + 1, left:right + 1] = True
        ring[top + OUTLINE_WIDTH:bottom + 1 - OUTLINE_WIDTH, left + OUTLINE_WIDTH:right + 1 - OUTLINE_WIDTH] = False
        expected |= ring
    assert red.any(), "red pixels where the SR has no region"
    assert not (red & ~expected).any(), "red pixels where the SR has no region"


def test_a_negative_run_is_drawn_without_outlines(rubo):
    pixels = _image(analysed(rubo, negative_finding)).pixel_array
    assert not np.all(pixels == OUTLINE, axis=-1).any()


def _caption(result) -> np.ndarray:
    pixels = _image(result).pixel_array
    return pixels[result_image.caption_top(len(shown_frames(result.finding))):]


def test_the_caption_is_legible(rubo):
    """tesseract reads the finding, the numbers, the model and the notice off the caption's pixels."""
    result = analysed(rubo)
    text = _ocr(_caption(result))
    assert NOTICE in text, text
    assert "STENOSIS PRESENT" in text
    assert "Run probability 0.83 (threshold 0.40" in text
    assert "EfficientNet" in text
    assert "test-1" in text  # (tesseract reads the digit in "effb0" as a letter O)
    negative = _ocr(_caption(analysed(rubo, negative_finding)))
    assert "no stenosis found" in negative
    assert "0.12" in negative
    assert NOTICE in negative


def test_the_dashboard_keyframe_picture_is_the_result_image_tile(rubo):
    """One drawing code: the dashboard's keyframe picture equals the tile of the result image."""
    result = analysed(rubo)
    pixels = _image(result).pixel_array
    frames = shown_frames(result.finding)
    loaded = load_keyframes(rubo, frames)
    for index, number in enumerate(frames):
        png = pictures.keyframe_png(loaded.frames[number], result.window_scores[number], result.finding.threshold,
                                    selected_regions(result.finding))
        dashboard = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
        x, y = result_image.tile_origin(index, len(frames))
        assert np.array_equal(pixels[y:y + result_image.TILE, x:x + result_image.TILE], dashboard), number


def test_a_run_that_could_not_be_analysed_gets_an_image_that_says_why(dicom_dir, tmp_path):
    header = pydicom.dcmread(dicom_dir / "xa_rubo0002_cine96_jpegbaseline.dcm", stop_before_pixels=True)
    failed = FailedRun(source=header, reason="pixel data cannot be decoded:\n frame 96 is truncated", instance_id=7)
    (built,) = _objects([], [failed])
    assert built.kind is ObjectKind.SC
    assert built.instance_id == 7
    errors, warnings = dciodvfy(saved(built.dataset, tmp_path / "failed.dcm"), "SCImage")
    assert not errors, "\n".join(errors)
    ds = pydicom.dcmread(tmp_path / "failed.dcm")
    (ref,) = ds.SourceImageSequence
    assert ref.ReferencedSOPInstanceUID == header.SOPInstanceUID
    assert "ReferencedFrameNumber" not in ref
    assert "could not be analysed" in ds.ImageComments or "not analysed" in ds.ImageComments
    text = _ocr(ds.pixel_array)
    assert "NOT ANALYSED" in text, text
    assert "frame 96 is truncated" in text, text
    assert NOTICE in text, text


def test_a_run_whose_frames_are_gone_gets_a_caption_and_no_presentation_state(rubo, tmp_path):
    """Retention deleted the pixels before a re-analysis: the image says so; no GSPS (grey levels unknown)."""
    result = analysed(rubo)
    gone = type(result)(**{**result.__dict__, "path": str(tmp_path / "deleted.dcm")})
    (built,) = _objects([gone])
    assert built.kind is ObjectKind.SC
    text = _ocr(built.dataset.pixel_array)
    assert "could not be read again" in text, text
    assert NOTICE in text, text


def test_layout_keeps_tiles_apart_and_inside_the_image():
    for n in range(1, 10):
        origins = [result_image.tile_origin(i, n) for i in range(n)]
        width = result_image.canvas_width(n)
        assert len(set(origins)) == n
        assert all(0 <= x and x + result_image.TILE <= width for x, _ in origins)
        for (xa, ya) in origins:  # no two tiles overlap
            assert sum(1 for (xb, yb) in origins if abs(xa - xb) < result_image.TILE and abs(ya - yb) < result_image.TILE) == 1


def test_the_reporter_s_warm_up_loads_what_drawing_needs_without_drawing_anything():
    import subprocess
    import sys

    code = ("import sys; from arcade_pacs.report import drawing; "
            "assert 'scipy.ndimage' not in sys.modules and 'matplotlib' not in sys.modules; "
            "drawing.warm_up(); print('scipy.ndimage' in sys.modules, 'matplotlib.cm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]
