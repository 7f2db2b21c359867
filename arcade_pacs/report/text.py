"""An SR as text, for people: DCMTK's ``dsrdump`` when installed, else the content tree walked here;
and a result image as PNG (its pixels, unchanged).

``dsrdump`` renders every content item with its relationship, value type, concept name and
value (the reference rendering of PS3.3 C.17.3); the fallback prints the same tree from the
Content Sequence with pydicom, so the admin can always show what an SR says.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

DSRDUMP_TIMEOUT_S = 30


def _concept(item: Dataset) -> str:
    seq = item.get("ConceptNameCodeSequence")
    return str(seq[0].CodeMeaning) if seq else ""


def _value(item: Dataset) -> str:
    """The value of one content item, by its Value Type (PS3.3 Table C.17.3-1)."""
    kind = item.get("ValueType", "")
    if kind == "TEXT":
        return f'"{item.get("TextValue", "")}"'
    if kind == "CODE":
        code = item.ConceptCodeSequence[0]
        return f"({code.CodeValue}, {code.CodingSchemeDesignator}, \"{code.CodeMeaning}\")"
    if kind == "NUM":
        seq = item.get("MeasuredValueSequence")
        if not seq:
            return "(no value)"
        unit = seq[0].MeasurementUnitsCodeSequence[0].CodeValue
        return f'"{seq[0].NumericValue}" ({unit})'
    if kind == "UIDREF":
        return str(item.get("UID", ""))
    if kind in ("DATE", "TIME", "DATETIME"):
        return str(item.get(kind.capitalize() if kind != "DATETIME" else "DateTime", ""))
    if kind == "PNAME":
        return "(person name)"
    if kind == "IMAGE":
        ref = item.ReferencedSOPSequence[0]
        frames = ref.get("ReferencedFrameNumber")
        return f"{ref.ReferencedSOPInstanceUID}" + (f" frames {frames}" if frames is not None else "")
    if kind == "SCOORD":
        return f"{item.get('GraphicType', '')} {list(item.get('GraphicData', []))}"
    if kind == "SCOORD3D":
        return f"{item.get('GraphicType', '')} {list(item.get('GraphicData', []))}"
    if kind == "COMPOSITE":
        return str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    return ""


def content_tree(ds: Dataset) -> str:
    """The SR's content tree, one item a line, indented by depth (no patient module printed)."""
    lines = [f"{ds.get('SOPClassUID', '')} {ds.get('SOPInstanceUID', '')}",
             f"Completion: {ds.get('CompletionFlag', '')}  Verification: {ds.get('VerificationFlag', '')}",
             "", f"<CONTAINER:(,,\"{_concept(ds)}\")>"]

    def walk(items, depth: int, prefix: str) -> None:
        for n, item in enumerate(items, start=1):
            label = f"{prefix}{n}"
            relation = item.get("RelationshipType", "")
            lines.append(f"{'  ' * depth}{label} <{relation}:{item.get('ValueType', '')}:"
                         f"\"{_concept(item)}\"> = {_value(item)}".rstrip(" ="))
            if "ContentSequence" in item:
                walk(item.ContentSequence, depth + 1, f"{label}.")

    walk(ds.get("ContentSequence", []), 1, "1.")
    return "\n".join(lines) + "\n"


def render_sr_text(path: str | Path, use_dsrdump: bool = True, document_header: bool = False) -> tuple[str, str]:
    """``(text, renderer)``: the SR at ``path`` rendered by ``dsrdump``, else by :func:`content_tree`.

    ``dsrdump``'s document header names the patient, so it is left out unless
    ``document_header`` (the admin's ``show_patient_identity``) asks for it.
    """
    tool = shutil.which("dsrdump") if use_dsrdump else None
    if tool:
        args = [tool, "-Ee", *([] if document_header else ["-Ph"]), str(path)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=DSRDUMP_TIMEOUT_S)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout, "dsrdump"
    return content_tree(pydicom.dcmread(str(path))), "pydicom"


def result_image_png(path: str | Path) -> bytes:
    """The RGB pixels of a stored result image (Secondary Capture) as PNG."""
    import io

    from PIL import Image

    ds = pydicom.dcmread(str(path))
    buffer = io.BytesIO()
    Image.fromarray(ds.pixel_array).save(buffer, format="PNG")
    return buffer.getvalue()
