"""DICOM pixel data to display-ready frames: ``(T, 512, 512)`` float32 in [0, 1], 0 = black.

The steps follow the grayscale pipeline of PS3.3 C.11 (Modality LUT, then VOI LUT or window,
then Presentation: MONOCHROME1 inverted so that bright always means bright):

1. Decode one frame at a time (``pydicom.pixels.iter_pixels``), so a long 1024x1024 cine is
   never held at full resolution; each frame is area-resized to 512x512 at once.
2. Modality LUT / Rescale Slope and Intercept (top level or Enhanced functional groups).
3. VOI: a VOI LUT Sequence or the first Window Center/Width when present (PS3.3 C.11.2.1.2,
   linear function); otherwise the instance's actual range of values (min to max over all
   frames, padding excluded) maps to [0, 1], whatever Bits Stored is.
4. MONOCHROME1 inverted; Pixel Padding Value and regions outside a Display Shutter
   (PS3.3 C.7.6.11: rectangular, circular, polygonal) set to black, as a viewer shows them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian

from arcade_pacs.pipeline.tensors import FRAME_SIZE, resize_frame


class FrameError(ValueError):
    """The pixel data cannot become frames; the message says why (shown by the admin)."""


@dataclass(frozen=True)
class Frames:
    """Decoded frames of one instance.

    Attributes
    ----------
    data
        ``(T, 512, 512)`` float32 in [0, 1].
    valid
        ``(512, 512)`` bool: pixels inside the exposed field (not padding, not shuttered).
    rows, columns
        Size of the source frames, to map 512x512 coordinates back to source pixels.
    """

    data: np.ndarray
    valid: np.ndarray
    rows: int
    columns: int

    @property
    def frame_numbers(self) -> list[int]:
        """1-based DICOM frame numbers, one per frame in ``data``."""
        return list(range(1, len(self.data) + 1))

    def to_source(self, box512: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Map ``(x0, y0, x1, y1)`` on the 512x512 frame to source pixel coordinates."""
        sx, sy = self.columns / FRAME_SIZE, self.rows / FRAME_SIZE
        x0, y0, x1, y1 = box512
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def number_of_frames(ds: Dataset) -> int:
    """Number of Frames (1 when absent)."""
    value = ds.get("NumberOfFrames")
    if value is None or value == "":
        return 1
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise FrameError(f"invalid Number of Frames: {ds.get('NumberOfFrames')!r}") from exc


def _functional_group(ds: Dataset, sequence: str):
    """The first item of ``sequence`` in the Shared Functional Groups (Enhanced IODs), or None."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0] and shared[0][sequence]:
        return shared[0][sequence][0]
    return None


def _rescale(ds: Dataset) -> tuple[float, float]:
    item = _functional_group(ds, "PixelValueTransformationSequence") or ds
    return float(item.get("RescaleSlope", 1) or 1), float(item.get("RescaleIntercept", 0) or 0)


def _window(ds: Dataset) -> tuple[float, float] | None:
    item = _functional_group(ds, "FrameVOILUTSequence") or ds
    center, width = item.get("WindowCenter"), item.get("WindowWidth")
    if center is None or width is None:
        return None
    first = lambda v: float(v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v)  # noqa: E731
    center, width = first(center), first(width)
    return (center, width) if width >= 1 else None


def apply_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear window, output in [0, 1]."""
    out = ((values - (center - 0.5)) / (width - 1) + 0.5)
    return np.clip(out, 0.0, 1.0)


def shutter_mask(ds: Dataset, rows: int, cols: int) -> np.ndarray:
    """Boolean ``(rows, cols)``: True inside the exposed field given by the Display Shutter."""
    from PIL import Image, ImageDraw

    shapes = ds.get("ShutterShape") or []
    shapes = [shapes] if isinstance(shapes, str) else list(shapes)
    mask = np.ones((rows, cols), dtype=bool)
    yy, xx = np.ogrid[:rows, :cols]
    for shape in (str(s).strip().upper() for s in shapes):
        if shape == "RECTANGULAR" and "ShutterLeftVerticalEdge" in ds:
            left, right = int(ds.ShutterLeftVerticalEdge), int(ds.ShutterRightVerticalEdge)
            top, bottom = int(ds.ShutterUpperHorizontalEdge), int(ds.ShutterLowerHorizontalEdge)
            # Edges are 1-based pixel columns/rows of the boundary (PS3.3 C.7.6.11.1).
            mask &= (xx >= left - 1) & (xx <= right - 1) & (yy >= top - 1) & (yy <= bottom - 1)
        elif shape == "CIRCULAR" and "CenterOfCircularShutter" in ds:
            cy, cx = (float(v) - 1 for v in ds.CenterOfCircularShutter)  # row, column
            r = float(ds.RadiusOfCircularShutter)
            mask &= (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        elif shape == "POLYGONAL" and "VerticesOfThePolygonalShutter" in ds:
            v = [float(x) - 1 for x in ds.VerticesOfThePolygonalShutter]  # row, column pairs
            poly = Image.new("1", (cols, rows), 0)
            ImageDraw.Draw(poly).polygon([(v[i + 1], v[i]) for i in range(0, len(v), 2)], fill=1)
            mask &= np.asarray(poly, dtype=bool)
    return mask


def decode_frames(src: Dataset | str | Path, max_frames: int | None = None) -> Frames:
    """Decode every frame of a data set or a Part 10 file to :class:`Frames` (module docstring).

    Given a path, the header is read with the pixel data deferred and frames are read from the
    file one at a time, so memory holds one source frame plus the 512x512 stack.

    Raises
    ------
    FrameError
        When the pixel data is absent, truncated, colour, or otherwise undecodable.
    """
    import pydicom
    from pydicom.pixels import iter_pixels

    if isinstance(src, Dataset):
        ds = src
    else:
        src = str(src)
        try:
            ds = pydicom.dcmread(src, defer_size="64 KB")
            if ds.file_meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                ds = src = pydicom.dcmread(src)  # frames cannot be read lazily from a deflated file
        except Exception as exc:
            raise FrameError(f"unreadable DICOM file: {type(exc).__name__}: {exc}"[:500]) from exc
    if "PixelData" not in ds:
        raise FrameError("no Pixel Data")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise FrameError(f"unsupported Photometric Interpretation {photometric!r} (grayscale only)")
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        raise FrameError("more than one sample per pixel (grayscale only)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    n_frames = number_of_frames(ds)
    if rows < 1 or cols < 1 or n_frames < 1:
        raise FrameError(f"empty image: {rows} rows, {cols} columns, {n_frames} frames")
    if max_frames is not None and n_frames > max_frames:
        raise FrameError(f"{n_frames} frames exceed the configured limit of {max_frames}")

    slope, intercept = _rescale(ds)
    padding = ds.get("PixelPaddingValue")
    field = shutter_mask(ds, rows, cols)
    stack = np.empty((n_frames, FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    padded_any = np.zeros((rows, cols), dtype=bool)
    decoded = 0
    try:
        for i, raw in enumerate(iter_pixels(src)):
            decoded = i + 1
            if i >= n_frames:
                raise FrameError(f"pixel data holds more frames than Number of Frames ({n_frames})")
            if raw.shape != (rows, cols):
                raise FrameError(f"frame {i + 1} has shape {raw.shape}, expected {(rows, cols)}")
            if padding is not None:
                padded_any |= raw == padding
            stack[i] = resize_frame(raw.astype(np.float32) * slope + intercept)
    except FrameError:
        raise
    except Exception as exc:
        raise FrameError(f"pixel data cannot be decoded: {type(exc).__name__}: {exc}"[:500]) from exc
    if decoded != n_frames:
        raise FrameError(f"pixel data holds {decoded} frames, Number of Frames says {n_frames}")

    valid_src = field & ~padded_any
    valid = resize_frame(valid_src.astype(np.float32)) > 0.5
    # Frame by frame and in place: the stack is the only large array ever held.
    window = _window(ds)
    voi_lut = ds.get("VOILUTSequence")
    if voi_lut:
        from pydicom.pixels import apply_voi_lut

        top = float(2 ** int(voi_lut[0].LUTDescriptor[2]) - 1)
        for frame in stack:
            frame[...] = apply_voi_lut(np.rint(frame).astype(np.int64), ds) / top
    elif window is not None:
        for frame in stack:
            frame[...] = apply_window(frame, *window)
    else:
        inside = valid if valid.any() else np.ones_like(valid)
        lo = min(float(frame[inside].min()) for frame in stack)
        hi = max(float(frame[inside].max()) for frame in stack)
        stack -= lo
        stack *= 1.0 / (hi - lo) if hi > lo else 0.0
    np.clip(stack, 0.0, 1.0, out=stack)
    if photometric == "MONOCHROME1":
        np.subtract(1.0, stack, out=stack)
    stack[:, ~valid] = 0.0
    return Frames(data=stack, valid=valid, rows=rows, columns=cols)


def frames_from_image(data: bytes) -> Frames:
    """A PNG/JPEG (grey or RGB, as ARCADE frames are exported) as a single-frame :class:`Frames`."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise FrameError(f"not a readable PNG/JPEG image: {exc}") from exc
    rows, cols = grey.shape
    frame = resize_frame(grey)
    return Frames(data=frame[None], valid=np.ones(frame.shape, bool), rows=rows, columns=cols)


def frames_from_bytes(data: bytes, max_frames: int | None = None) -> Frames:
    """Frames of an uploaded file: DICOM (Part 10, or a bare data set) or a PNG/JPEG image."""
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    is_dicom = len(data) > 132 and data[128:132] == b"DICM"
    if is_dicom:
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except (InvalidDicomError, Exception) as exc:
            raise FrameError(f"unreadable DICOM file: {type(exc).__name__}: {exc}"[:300]) from exc
        return decode_frames(ds, max_frames=max_frames)
    return frames_from_image(data)
