"""Result images: a run's keyframes with the findings burnt in, as a DICOM Secondary Capture.

Most hospital viewers show an SR as text at best; every viewer shows an image. For each run of
a study the plugin therefore writes one Secondary Capture Image (PS3.3 A.8.1, built with
highdicom's :class:`highdicom.sc.SCImage`) in the source study, in a series of its own:

- tiles of 512x512 pixels, one per frame of :func:`arcade_pacs.report.marks.shown_frames` (the
  keyframes the run's probability averages, and every frame with a region), best first, left to
  right and top to bottom (:func:`layout`), each drawn by
  :func:`arcade_pacs.report.drawing.draw_keyframe`: the frame as the model saw it, the heat map
  of its window scores, the SR's regions outlined in red with their probabilities;
- under them a caption in letters a reader can read on a reading-room screen: the finding and
  ``RESEARCH USE ONLY - NOT FOR DIAGNOSIS`` first, then the run's probability and the threshold,
  which frames are shown, and the model's name and version; nothing in the bottom margin, where
  viewers write their own overlays;
- a run that could not be analysed gets an image with a caption saying so and why.

Burned In Annotation is YES, Source Image Sequence names the run and the frames shown (purpose
(121329, DCM) "Source image for montage"), Derivation Description says how the pixels were
made, and the equipment identity is the SR's (:mod:`arcade_pacs.report.identity`).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw
from pydicom import Dataset
from pydicom.dataset import Dataset as Item
from pydicom.uid import ExplicitVRLittleEndian

from arcade_pacs.core.findings import Finding
from arcade_pacs.pipeline.scores import INSTANCE_TOP_K
from arcade_pacs.pipeline.tensors import FRAME_SIZE
from arcade_pacs.report import codes
from arcade_pacs.report.drawing import LoadedRun, draw_keyframe, font
from arcade_pacs.report.identity import (
    NOTICE,
    ModelIdentity,
    beyond_highdicom_series,
    contributing_equipment,
    equipment,
)
from arcade_pacs.report.marks import selected_regions, shown_frames

SERIES_NUMBER = 9902
SERIES_DESCRIPTION = "ARCADE stenosis AI images - research use, not for diagnosis"
TILE = FRAME_SIZE
GAP = 8
"""Black pixels between tiles, so an outline on a tile's edge never merges with the next tile."""
MAX_COLUMNS = 3
MIN_WIDTH = 1024
"""Narrowest result image: room for the caption's lines at a legible size beside one tile."""
TITLE_SIZE = 30
TEXT_SIZE = 24
NOTICE_SIZE = 30
MARGIN = 16
BOTTOM_MARGIN = 128
"""Black below the caption: viewers write their corner overlays (window level, frame count: a few
lines of text) over the image's bottom corners, and must not cover its last lines (OHIF's reach
about 45 screen pixels up, 70 image pixels at the scale it shows a three-tile image)."""
LINE_GAP = 8
BACKGROUND = (0, 0, 0)
WHITE = (255, 255, 255)
NOTICE_COLOUR = (255, 210, 0)
PRESENT_COLOUR = (255, 90, 90)


@dataclass(frozen=True)
class Caption:
    """The caption's lines: a title (coloured by the finding), text lines, and the notice."""

    title: str
    lines: list[str]
    present: bool = False


def layout(n_tiles: int) -> tuple[int, int]:
    """``(columns, rows)`` of tiles: one row up to three, 2x2 for four, then rows of three."""
    if n_tiles <= 0:
        return 0, 0
    columns = 2 if n_tiles == 4 else min(n_tiles, MAX_COLUMNS)
    return columns, math.ceil(n_tiles / columns)


def _span(n: int) -> int:
    """Pixels taken by ``n`` tiles side by side (with the gaps between them)."""
    return n * TILE + max(0, n - 1) * GAP


def canvas_width(n_tiles: int) -> int:
    return max(MIN_WIDTH, _span(layout(n_tiles)[0]))


def tile_origin(index: int, n_tiles: int) -> tuple[int, int]:
    """Top left pixel ``(x, y)`` of tile ``index`` (0-based) in a result image of ``n_tiles`` tiles.

    Tiles fill rows left to right, :data:`GAP` pixels apart; the grid is centred when the image
    is wider than it.
    """
    columns, _ = layout(n_tiles)
    left = (canvas_width(n_tiles) - _span(columns)) // 2
    return left + (index % columns) * (TILE + GAP), (index // columns) * (TILE + GAP)


def _wrap(text: str, size: int, width: int) -> list[str]:
    """``text`` broken into lines no wider than ``width`` pixels in the caption font."""
    face = font(size)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        words = paragraph.split()
        line = ""
        for word in words:
            trial = f"{line} {word}".strip()
            if line and face.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        while face.getlength(line) > width:  # one word wider than the image: cut it
            cut = max(1, int(len(line) * width / face.getlength(line)))
            lines.append(line[:cut])
            line = line[cut:]
        lines.append(line)
    return lines


def _caption_rows(caption: Caption, width: int) -> list[tuple[str, int, tuple[int, int, int]]]:
    inner = width - 2 * MARGIN
    rows = [(line, TITLE_SIZE, PRESENT_COLOUR if caption.present else WHITE)
            for line in _wrap(caption.title, TITLE_SIZE, inner)]
    rows += [(line, NOTICE_SIZE, NOTICE_COLOUR) for line in _wrap(NOTICE, NOTICE_SIZE, inner)]
    for text in caption.lines:
        rows += [(line, TEXT_SIZE, WHITE) for line in _wrap(text, TEXT_SIZE, inner)]
    return rows


def caption_top(n_tiles: int) -> int:
    """First pixel row of the caption, under the tiles."""
    _, grid_rows = layout(n_tiles)
    return _span(grid_rows) + (GAP if grid_rows else 0)


def compose(tiles: list[Image.Image], caption: Caption) -> np.ndarray:
    """The result image's pixels: ``tiles`` (512x512 RGB) laid out by :func:`layout`, the caption below."""
    width = canvas_width(len(tiles))
    rows = _caption_rows(caption, width)
    caption_height = MARGIN + sum(size + LINE_GAP for _, size, _ in rows) + BOTTOM_MARGIN
    top = caption_top(len(tiles))
    picture = Image.new("RGB", (width, top + caption_height), BACKGROUND)
    for index, tile in enumerate(tiles):
        picture.paste(tile, tile_origin(index, len(tiles)))
    draw = ImageDraw.Draw(picture)
    y = top + MARGIN
    for text, size, colour in rows:
        draw.text((MARGIN, y), text, fill=colour, font=font(size))
        y += size + LINE_GAP
    return np.asarray(picture, dtype=np.uint8)


def _model_line(model: ModelIdentity) -> str:
    return f"Model: {model.name}, version {model.version}"


def finding_caption(finding: Finding, label: str, model: ModelIdentity, frames: list[int],
                    note: str | None = None) -> Caption:
    """What an analysed run's image says under its tiles (``note``: why there are none)."""
    title = "ARCADE stenosis AI: STENOSIS PRESENT" if finding.present else "ARCADE stenosis AI: no stenosis found"
    regions = selected_regions(finding)
    marks = (f"Red boxes: the {len(regions)} strongest windows at or above the threshold, with their probability."
             if regions else "No region is marked (the run is below the threshold).")
    shown = (f"Frames shown, left to right: {', '.join(str(n) for n in frames)}. "
             f"Heat map: each window's score, blue low to red high. {marks}")
    return Caption(title, [
        f"Run probability {finding.probability:.2f} (threshold {finding.threshold:.2f}; "
        f"mean of the {INSTANCE_TOP_K} best keyframes). {label}.",
        note or shown,
        _model_line(model),
    ], present=finding.present)


MAX_CAPTION_REASON = 400


def failed_caption(reason: str, label: str, model: ModelIdentity) -> Caption:
    """What a run that could not be analysed gets instead of tiles (the reason cut to a few lines)."""
    if len(reason) > MAX_CAPTION_REASON:
        reason = reason[:MAX_CAPTION_REASON - 3] + "..."
    return Caption("ARCADE stenosis AI: run NOT ANALYSED", [
        f"{label} could not be analysed; it has no result.",
        f"Why: {reason}",
        _model_line(model),
    ])


def analysed_pixels(finding: Finding, loaded: LoadedRun | None, window_scores: dict[int, list[float]],
                    label: str, model: ModelIdentity, unreadable: str | None = None) -> tuple[np.ndarray, list[int]]:
    """Pixels of an analysed run's result image, and the frames it shows (in tile order).

    ``loaded`` holds the frames of :func:`~arcade_pacs.report.marks.shown_frames`; when they
    could not be read again (``unreadable`` says why), the image is the caption alone.
    """
    frames = shown_frames(finding)
    if loaded is None:
        note = f"The keyframes could not be read again: {unreadable or 'unknown reason'}."
        return compose([], finding_caption(finding, label, model, [], note)), []
    regions = selected_regions(finding)
    tiles = [draw_keyframe(loaded.frames[n], window_scores.get(n), finding.threshold, regions) for n in frames]
    return compose(tiles, finding_caption(finding, label, model, frames)), frames


def _lossy(source: Dataset) -> bool:
    """The source was lossy compressed once (PS3.3 C.7.6.1.1.5), so what is derived from it is too."""
    if str(source.get("LossyImageCompression", "")).strip() == "01":
        return True
    syntax = getattr(getattr(source, "file_meta", None), "TransferSyntaxUID", None)
    return syntax is not None and syntax in LOSSY_SYNTAXES


LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.100", "1.2.840.10008.1.2.4.101", "1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.203",
}
"""Transfer syntaxes whose pixel data may have been lossy compressed (JPEG Baseline/Extended,
JPEG-LS near-lossless, JPEG 2000, MPEG, HTJ2K)."""
ORIENTATION_PLACEHOLDER = ("L", "F")
"""What highdicom is given for Patient Orientation when the source records none; replaced by the
source's empty value in :func:`beyond_highdicom_image` (never left in the image)."""


def _source_orientation(source: Dataset) -> tuple[str, str] | None:
    value = source.get("PatientOrientation")
    if value is not None and len(value) == 2 and all(str(v).strip() for v in value):
        return str(value[0]), str(value[1])
    return None


def _source_item(source: Dataset, frames: list[int]) -> Item:
    item = Item()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if frames and int(source.get("NumberOfFrames", 1) or 1) > 1:
        item.ReferencedFrameNumber = sorted(frames) if len(frames) > 1 else frames[0]
    item.PurposeOfReferenceCodeSequence = [hd.sr.CodedConcept.from_code(codes.SOURCE_IMAGE_FOR_MONTAGE)]
    return item


def beyond_highdicom_image(sc: hd.sc.SCImage, source: Dataset, frames: list[int], derivation: str,
                           comments: str) -> hd.sc.SCImage:
    """The General Image attributes (PS3.3 C.7.6.1) a result image needs that highdicom's SCImage
    has no parameter for; the only place the image is changed after highdicom built it.

    - Burned In Annotation (0028,0301) ``YES``: the caption and the marks are in the pixels.
    - Source Image Sequence (0008,2112): the run, its frames shown (Referenced Frame Number,
      multi-frame sources only) and the purpose (121329, DCM) "Source image for montage".
    - Derivation Description (0008,2111) and Image Comments (0020,4000): how the pixels were made.
    - Lossy Image Compression (0028,2110) ``01`` when the source was lossy compressed: once lossy,
      always marked lossy, derived images included (PS3.3 C.7.6.1.1.5).
    - Patient Orientation (0020,0020), Type 2C: the tiles keep the source frames' orientation,
      which cine runs seldom record; highdicom requires a value for a PATIENT image, so the
      source's own (empty) value replaces :data:`ORIENTATION_PLACEHOLDER`.
    - Body Part Examined and Laterality: :func:`~arcade_pacs.report.identity.beyond_highdicom_series`.
    """
    sc.BurnedInAnnotation = "YES"
    sc.SourceImageSequence = [_source_item(source, frames)]
    sc.DerivationDescription = derivation[:1024]
    sc.ImageComments = comments[:10240]
    if _lossy(source):
        sc.LossyImageCompression = "01"
    if _source_orientation(source) is None:
        sc.PatientOrientation = ""
    return beyond_highdicom_series(sc, source)


def build_result_image(
    source: Dataset,
    pixels: np.ndarray,
    frames: list[int],
    *,
    model: ModelIdentity,
    series_instance_uid: str,
    sop_instance_uid: str,
    instance_number: int,
    derivation: str,
    comments: str,
) -> hd.sc.SCImage:
    """A Secondary Capture of ``pixels`` (RGB) in the source's study, with the plugin's identity."""
    sc = hd.sc.SCImage.from_ref_dataset(
        source,
        pixel_array=pixels,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_instance_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        patient_orientation=_source_orientation(source) or ORIENTATION_PLACEHOLDER,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=contributing_equipment(model),
        series_description=SERIES_DESCRIPTION,
        **equipment(model),
    )
    return beyond_highdicom_image(sc, source, frames, derivation, comments)


def derivation_of(frames: list[int]) -> str:
    """Derivation Description: which frames, how drawn, where the tiles are (for a reader or a test)."""
    if not frames:
        return "Caption only: the plugin's result in words, burnt in. Research use only."
    return textwrap.shorten(
        f"Montage of frames {', '.join(str(n) for n in frames)} of the source (tiles of {TILE}x{TILE} pixels, "
        f"left to right and top to bottom, each frame scaled to {TILE}x{TILE}) as the stenosis classifier saw them, "
        "with the heat map of its window scores and the SR's regions outlined; caption burnt in. "
        "Research use only, not for diagnosis.", 1024)
