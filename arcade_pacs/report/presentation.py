"""Presentation states: the findings as graphics on the cine's own frames (GSPS).

A Grayscale Softcopy Presentation State (PS3.3 A.33.1; PS3.4 Annex N) changes no pixel: a
viewer that supports it opens the original run with the plugin's marks overlaid on the right
frames, at the grey levels the model saw. For each analysed run the plugin writes one, built
with :class:`highdicom.pr.GrayscaleSoftcopyPresentationState`:

- it references the run (all its frames: the grey-level mapping applies to the whole cine);
- on each frame of :func:`arcade_pacs.report.marks.shown_frames` (the keyframes the run's
  probability averages and every frame with a region) one Graphic Annotation (PS3.3 C.10.5):
  each region of :func:`~arcade_pacs.report.marks.selected_regions` as a closed POLYLINE
  rectangle in PIXEL units, the very coordinates of the SR's SCOORD (both use the image's pixel
  grid, 0 at the top left edge, PS3.3 C.10.5.1.2 and C.18.6.1.2), with its probability as text,
  and a line of text (DISPLAY units) with the run's finding, probability and threshold and
  "RESEARCH USE ONLY";
- the VOI the plugin applied (:class:`~arcade_pacs.report.drawing.DisplayVOI`): the run's own
  window or VOI LUT, else the linear window that spans the run's pixel values, which is how the
  pipeline scaled it; Presentation LUT Shape INVERSE for MONOCHROME1 runs, IDENTITY otherwise;
- the plugin's equipment identity, as the SR has (:mod:`arcade_pacs.report.identity`).
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom import Dataset

from arcade_pacs.core.findings import Finding, Region
from arcade_pacs.report.drawing import DisplayVOI
from arcade_pacs.report.identity import (
    LO,
    NOTICE,
    ModelIdentity,
    beyond_highdicom_series,
    contributing_equipment,
    equipment,
)
from arcade_pacs.report.marks import clipped_box, outline, selected_regions, shown_frames

SERIES_NUMBER = 9903
SERIES_DESCRIPTION = "ARCADE stenosis AI marks - research use, not for diagnosis"
CONTENT_LABEL = "ARCADE_STENOSIS"
CONTENT_DESCRIPTION = "ARCADE stenosis AI regions and probabilities - research use only"
REGIONS_LAYER = hd.pr.GraphicLayer(
    "ARCADE_REGIONS", order=1, description="Windows the stenosis classifier marked (research use)",
    display_color=hd.color.CIELabColor(53.24, 80.09, 67.20),  # red, as in the result images
)
TEXT_LAYER = hd.pr.GraphicLayer(
    "ARCADE_TEXT", order=2, description="The classifier's result in words (research use)",
    display_color=hd.color.CIELabColor(97.14, -21.56, 94.48),  # yellow
)
HEADLINE_BOX = (0.01, 0.01, 0.99, 0.07)
"""Where the run's line of text sits, in DISPLAY units (fractions of the displayed area)."""


def region_text(region: Region) -> str:
    """The text beside a region on the cine."""
    return f"stenosis p={region.probability:.2f}"


def headline(finding: Finding, frame_probability: float | None) -> str:
    """The run's result on each marked frame (one line)."""
    found = "stenosis present" if finding.present else "no stenosis found"
    frame = f", this frame {frame_probability:.2f}" if frame_probability is not None else ""
    return (f"ARCADE AI: {found}, run probability {finding.probability:.2f} (threshold {finding.threshold:.2f})"
            f"{frame}. {NOTICE}")


def _frames(source: Dataset, number: int) -> int | None:
    """Referenced Frame Number only for a multi-frame image (PS3.3 C.10.5)."""
    return number if int(source.get("NumberOfFrames", 1) or 1) > 1 else None


def annotations(source: Dataset, finding: Finding) -> list[hd.pr.GraphicAnnotation]:
    """Per shown frame: its regions as rectangles (layer ARCADE_REGIONS), and in words (ARCADE_TEXT)
    the run's line and each region's probability."""
    rows, columns = int(source.Rows), int(source.Columns)
    regions = selected_regions(finding)
    probability = dict(zip(finding.frame_numbers, finding.frame_probabilities, strict=True))
    found = []
    for number in shown_frames(finding):
        mine = [r for r in regions if r.frame_number == number]
        boxes = [clipped_box(rows, columns, r.box) for r in mine]
        graphics = [
            hd.pr.GraphicObject(graphic_type=hd.pr.GraphicTypeValues.POLYLINE, graphic_data=outline(box),
                                units=hd.pr.AnnotationUnitsValues.PIXEL)
            for box in boxes
        ]
        texts = [hd.pr.TextObject(headline(finding, probability.get(number)), units=hd.pr.AnnotationUnitsValues.DISPLAY,
                                  bounding_box=HEADLINE_BOX, text_justification="LEFT")]
        texts += [
            hd.pr.TextObject(region_text(r), units=hd.pr.AnnotationUnitsValues.PIXEL,
                             anchor_point=(box[0], box[1]), anchor_point_visible=False)
            for r, box in zip(mine, boxes, strict=True)
        ]
        frame = _frames(source, number)
        if graphics:
            found.append(hd.pr.GraphicAnnotation(referenced_images=[source], graphic_layer=REGIONS_LAYER,
                                                 referenced_frame_number=frame, graphic_objects=graphics))
        found.append(hd.pr.GraphicAnnotation(referenced_images=[source], graphic_layer=TEXT_LAYER,
                                             referenced_frame_number=frame, text_objects=texts))
    return found


def lut_array(item: Dataset) -> tuple[int, np.ndarray]:
    """``(first mapped value, entries)`` of a Modality or VOI LUT item (PS3.3 C.11.1.1.1, C.11.2.1.1)."""
    entries, first, bits = (int(v) for v in item.LUTDescriptor)
    entries = entries or 65536  # 0 means 2**16 entries
    dtype = np.uint8 if bits <= 8 else np.uint16
    data = item.LUTData
    if isinstance(data, bytes):
        values = np.frombuffer(data, dtype="<u2")
    else:
        values = np.atleast_1d(np.asarray(data))
    return first, values[:entries].astype(dtype)


def _modality(source: Dataset, voi: DisplayVOI) -> hd.ModalityLUTTransformation:
    """The Modality LUT stage the plugin applied: the run's Modality LUT Sequence, else its rescale.

    Given explicitly: highdicom reads a multi-frame image's Modality LUT from the functional
    groups of Enhanced images only, and a cine run is usually a legacy multi-frame XA image.
    """
    if voi.rescale is None:
        item = source.ModalityLUTSequence[0]
        first, values = lut_array(item)
        lut_type = str(item.get("ModalityLUTType", "US")) or "US"
        return hd.ModalityLUTTransformation(modality_lut=hd.ModalityLUT(lut_type, first, values))
    slope, intercept = voi.rescale
    return hd.ModalityLUTTransformation(rescale_intercept=intercept, rescale_slope=slope,
                                        rescale_type=hd.RescaleTypeValues.US)


def _voi(source: Dataset, voi: DisplayVOI) -> list[hd.pr.SoftcopyVOILUTTransformation]:
    """The VOI the plugin used: its window, or the run's own (first) VOI LUT."""
    explanation = f"ARCADE: {voi.explanation}"[:LO]
    if voi.window is None:
        first, values = lut_array(source.VOILUTSequence[0])
        return [hd.pr.SoftcopyVOILUTTransformation(voi_luts=[hd.VOILUT(first, values, explanation)])]
    center, width = voi.window
    # One-item lists: highdicom 0.28 stores a plain string explanation as one value per character.
    return [hd.pr.SoftcopyVOILUTTransformation(window_center=[round(center, 4)], window_width=[round(width, 4)],
                                               window_explanation=[explanation])]


def build_presentation_state(
    source: Dataset,
    finding: Finding,
    voi: DisplayVOI,
    *,
    model: ModelIdentity,
    series_instance_uid: str,
    sop_instance_uid: str,
    instance_number: int,
) -> hd.pr.GrayscaleSoftcopyPresentationState:
    """The GSPS of one analysed run: its marks on its frames, at the plugin's grey levels."""
    shape = hd.PresentationLUTShapeValues.INVERSE if voi.inverse else hd.PresentationLUTShapeValues.IDENTITY
    identity = equipment(model)
    gsps = hd.pr.GrayscaleSoftcopyPresentationState(
        referenced_images=[source],
        series_instance_uid=series_instance_uid,
        series_number=SERIES_NUMBER,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=identity["manufacturer"],
        manufacturer_model_name=identity["manufacturer_model_name"],
        software_versions=identity["software_versions"],
        device_serial_number=None,
        content_label=CONTENT_LABEL,
        content_description=CONTENT_DESCRIPTION,
        graphic_annotations=annotations(source, finding),
        graphic_layers=[REGIONS_LAYER, TEXT_LAYER],
        modality_lut_transformation=_modality(source, voi),
        voi_lut_transformations=_voi(source, voi),
        presentation_lut_transformation=hd.PresentationLUTTransformation(presentation_lut_shape=shape),
        contributing_equipment=contributing_equipment(model),
        series_description=SERIES_DESCRIPTION,
    )
    return beyond_highdicom_series(gsps, source)
