"""DICOM pixel data to display-ready frames: ``(T, 512, 512)`` float32 in [0, 1], 0 = black.

The steps follow the grayscale pipeline of PS3.3 C.11 (Modality LUT, then VOI LUT or window,
then Presentation: MONOCHROME1 inverted so that bright always means bright):

1. Decode one frame at a time (``pydicom.pixels.iter_pixels``), so a long 1024x1024 cine is
   never held at full resolution; each frame is area-resized to 512x512 at once. A first pass
   scores every frame; a second decodes only the frames to classify (:class:`FrameSource`).
   Compressed frames are located by their fragments when the Basic Offset Table disagrees with
   them (odd-length fragments padded in transit; :mod:`arcade_pacs.pipeline.fragments`).
2. Modality LUT: a Modality LUT Sequence (PS3.3 C.11.1), else Rescale Slope and Intercept,
   from the top level or, in Enhanced IODs, the frame's own Per-Frame Functional Group or
   the Shared one (PS3.3 C.7.6.16).
3. VOI: a VOI LUT Sequence or the first Window Center/Width when present (PS3.3 C.11.2.1.2,
   linear function; per frame in Enhanced IODs); otherwise the instance's actual range of
   values (min to max over all frames, padding excluded) maps to [0, 1], whatever Bits Stored is.
4. MONOCHROME1 inverted; Pixel Padding Value (or the range it spans with Pixel Padding Range
   Limit, PS3.3 C.7.5.1.1.2) and regions outside a Display Shutter (PS3.3 C.7.6.11:
   rectangular, circular, polygonal) set to black, as a viewer shows them.
"""

from __future__ import annotations

import io
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom import Dataset

from arcade_pacs.core.phi import describe
from arcade_pacs.pipeline.fragments import encapsulated_with_offsets
from arcade_pacs.pipeline.part10 import (
    MAX_ELEMENTS,
    MAX_INFLATED_BYTES,
    MAX_SIZE,
    ImageShape,
    InputError,
    Limits,
    check_image,
    frame_layout,
    is_part10,
    open_part10,
)
from arcade_pacs.pipeline.tensors import FRAME_SIZE, resize_frame

__all__ = ["MAX_ELEMENTS", "MAX_INFLATED_BYTES", "MAX_SIZE", "FrameError", "FrameSource", "Frames"]


class FrameError(InputError):
    """The pixel data cannot become frames; the message says why (shown by the admin), the
    ``kind`` what is wrong (:class:`~arcade_pacs.pipeline.part10.Kind`, ``UNREADABLE`` unless
    the door said otherwise)."""


@dataclass(frozen=True)
class Frames:
    """Decoded frames of one instance.

    Attributes
    ----------
    data
        ``(T, 512, 512)`` float32 in [0, 1] (all frames, or the ones read).
    valid
        ``(512, 512)`` bool: pixels inside the exposed field (not padding, not shuttered).
    rows, columns
        Size of the source frames, to map 512x512 coordinates back to source pixels.
    numbers
        1-based DICOM frame numbers of ``data`` when not all frames were read.
    """

    data: np.ndarray
    valid: np.ndarray
    rows: int
    columns: int
    numbers: list[int] | None = None

    @property
    def frame_numbers(self) -> list[int]:
        """1-based DICOM frame numbers, one per frame in ``data``."""
        return self.numbers if self.numbers is not None else list(range(1, len(self.data) + 1))

    def to_source(self, box512: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Map ``(x0, y0, x1, y1)`` on the 512x512 frame to source pixel coordinates."""
        sx, sy = self.columns / FRAME_SIZE, self.rows / FRAME_SIZE
        x0, y0, x1, y1 = box512
        return (x0 * sx, y0 * sy, x1 * sx, y1 * sy)


def _functional_group(ds: Dataset, sequence: str, index: int = 0):
    """The item of ``sequence`` for frame ``index`` (0-based) in an Enhanced IOD, or None.

    A Per-Frame Functional Group overrides the Shared one (PS3.3 C.7.6.16).
    """
    for groups, position in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        if items and position < len(items) and sequence in items[position] and items[position][sequence]:
            return items[position][sequence][0]
    return None


def _rescale(ds: Dataset, index: int = 0) -> tuple[float, float]:
    item = _functional_group(ds, "PixelValueTransformationSequence", index) or ds
    slope, intercept = float(item.get("RescaleSlope", 1) or 1), float(item.get("RescaleIntercept", 0) or 0)
    if not (np.isfinite(slope) and np.isfinite(intercept)):
        raise FrameError("Rescale Slope or Rescale Intercept is not a finite number")
    return slope, intercept


def _window(ds: Dataset, index: int = 0) -> tuple[float, float] | None:
    item = _functional_group(ds, "FrameVOILUTSequence", index) or ds
    center, width = item.get("WindowCenter"), item.get("WindowWidth")
    if center is None or width is None:
        return None
    first = lambda v: float(v[0] if hasattr(v, "__len__") and not isinstance(v, str) else v)  # noqa: E731
    center, width = first(center), first(width)
    # A window that is not a finite range of at least 1 is ignored: the instance's range is used.
    return (center, width) if np.isfinite(center) and np.isfinite(width) and width >= 1 else None


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


@contextmanager
def _named_errors():
    """Any failure while turning pixels into frames becomes a :class:`FrameError` whose message
    names what went wrong without quoting data values (LUTs, windows, shutters of any shape)."""
    try:
        yield
    except FrameError:
        raise
    except Exception as exc:
        raise FrameError(f"frames cannot be computed: {describe(exc)}") from None


class FrameSource:
    """One instance's pixel data, read in two passes so memory stays bounded.

    :meth:`scan` streams every frame once (one source frame in memory at a time), learns the
    instance's value range and scores each frame with ``measure``; :meth:`read` then decodes
    only the frames asked for (the keyframes) and normalises them. A 2000-frame run costs the
    same memory as an 8-frame one.

    Between the passes, frames are held in *display polarity* (bright = bright) but, when no
    VOI is given, not yet scaled to [0, 1]; since that scaling is one positive linear map for
    the whole instance, a scale-equivariant ``measure`` ranks frames identically before and
    after it, and :meth:`scan` rescales its scores to the [0, 1] picture.
    """

    def __init__(self, src: Dataset | str | Path, max_frames: int | None = None,
                 max_inflated_bytes: int = MAX_INFLATED_BYTES, max_rows: int = MAX_SIZE, max_columns: int = MAX_SIZE,
                 max_elements: int = MAX_ELEMENTS, limits: Limits | None = None):
        limits = limits or Limits(max_elements=max_elements, max_inflated_bytes=max_inflated_bytes,
                                  max_rows=max_rows, max_columns=max_columns, max_frames=max_frames)
        try:
            self._open(src, limits)
        except FrameError:
            raise
        except InputError as exc:  # the door's refusal, with its kind
            raise FrameError(str(exc), exc.kind) from None
        except Exception as exc:  # attribute values pydicom or numpy cannot use
            raise FrameError(f"invalid image attributes: {describe(exc)}") from None

    def _open(self, src, limits: Limits) -> None:
        """Open ``src`` through the door (:mod:`arcade_pacs.pipeline.part10`): every bound is
        applied before a frame is decoded. A deflated file is inflated in memory (frames cannot
        be read lazily from it), within ``max_inflated_bytes``."""
        file_size = None
        if isinstance(src, Dataset):
            ds = src
        else:
            src = str(src)
            file_size = Path(src).stat().st_size
            ds = open_part10(src, limits)
            if not isinstance(ds.filename, str):
                src = ds  # a deflated file, inflated in memory: frames are read from the data set
        self.src, self.ds = src, ds
        shape = check_image(ds, limits, file_size=file_size)
        self.photometric = str(ds.PhotometricInterpretation).strip()
        self.rows, self.columns, self.n_frames = shape.rows, shape.columns, shape.frames
        self.decode_options: dict = {}
        self.relocated = False  # True when frames were found by their fragments, not the offset table
        self._locate_fragments(shape)
        self.modality_lut = ds.get("ModalityLUTSequence") or None
        self.rescale = [_rescale(ds, i) for i in range(self.n_frames)]
        padding, limit = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit")
        self.padding = None if padding is None else tuple(sorted((padding, padding if limit is None else limit)))
        windows = [_window(ds, i) for i in range(self.n_frames)]
        # A window for every frame, or none at all: then the instance's own range is used.
        self.windows = windows if all(w is not None for w in windows) else None
        self.voi_lut = ds.get("VOILUTSequence") or None
        self.field = shutter_mask(ds, self.rows, self.columns)
        self.field512 = resize_frame(self.field.astype(np.float32)) > 0.5
        self.lo: float | None = None
        self.hi: float | None = None
        self.valid: np.ndarray | None = None

    def _locate_fragments(self, shape: ImageShape) -> None:
        """Make compressed frames readable when the Basic Offset Table disagrees with the fragments.

        The door (:func:`~arcade_pacs.pipeline.part10.frame_layout`) finds the frames and checks
        their headers. One fragment per frame (the usual case) is handed to pydicom as an
        Extended Offset Table (PS3.3 C.7.6.3.1.8), so frames are still read lazily from the file;
        frames of several fragments get a corrected Basic Offset Table on an in-memory copy.
        """
        ds = self.ds
        layout = frame_layout(ds, self.src if not isinstance(self.src, Dataset) else None, shape)
        if layout is None or layout.found_by_pydicom(self.n_frames) or layout.groups is None:
            return  # pydicom finds the same frames by itself (or its own rule, JPEG EOI markers, may)
        self.relocated = True
        fragments, groups = layout.fragments, layout.groups
        firsts = [fragments[g[0]] for g in groups]
        if all(len(g) == 1 for g in groups):
            self.decode_options = {"extended_offsets": ([f.offset for f in firsts], [f.length for f in firsts])}
            return
        last = fragments[-1]
        size = last.offset + 8 + last.length
        if layout.value is None:
            import pydicom

            fixed = pydicom.dcmread(self.src)
            with open(self.src, "rb") as fp:
                fp.seek(layout.first)
                items = fp.read(size)
        else:
            fixed = Dataset(dict(ds.items()))  # a new element dict: the caller's data set is not changed
            fixed.file_meta = ds.file_meta
            items = layout.value[layout.first:layout.first + size]
        from pydicom.dataelem import DataElement

        fixed["PixelData"] = DataElement(0x7FE00010, "OB", encapsulated_with_offsets([f.offset for f in firsts], items),
                                         is_undefined_length=True)
        self.src = fixed

    @property
    def scaled_by_range(self) -> bool:
        """True when no VOI is given: the instance's own range maps to [0, 1]."""
        return self.voi_lut is None and self.windows is None

    def _display(self, raw: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Source frame ``index`` to (512x512 display-polarity values, 512x512 valid mask)."""
        if self.modality_lut is not None:
            from pydicom.pixels import apply_modality_lut

            values = apply_modality_lut(raw, self.ds).astype(np.float32)
        else:
            slope, intercept = self.rescale[index]
            values = raw.astype(np.float32) * slope + intercept
        if not np.isfinite(values).all():
            raise FrameError(f"frame {index + 1}: pixel values are not finite after the Modality LUT or rescale")
        if self.padding is None:
            valid512 = self.field512  # the same every frame: resized once
        else:
            valid = self.field & ~((raw >= self.padding[0]) & (raw <= self.padding[1]))
            valid512 = resize_frame(valid.astype(np.float32)) > 0.5
        frame = resize_frame(values)
        if self.voi_lut is not None:
            from pydicom.pixels import apply_voi_lut

            top = float(2 ** int(self.voi_lut[0].LUTDescriptor[2]) - 1)
            frame = (apply_voi_lut(np.rint(frame).astype(np.int64), self.ds) / top).astype(np.float32)
        elif self.windows is not None:
            frame = apply_window(frame, *self.windows[index]).astype(np.float32)
        if self.photometric == "MONOCHROME1":
            frame = (1.0 - frame) if not self.scaled_by_range else -frame
        return frame, valid512

    def _frames(self, indices: list[int] | None = None):
        """Yield ``(index, raw frame)`` with the checks every decoded frame must pass."""
        from pydicom.pixels import iter_pixels

        wanted = list(range(self.n_frames)) if indices is None else list(indices)
        seen = 0
        try:
            frames = iter_pixels(self.src, indices=None if indices is None else wanted, **self.decode_options)
            for index, raw in zip(wanted, frames, strict=False):
                seen += 1
                if raw.shape != (self.rows, self.columns):
                    raise FrameError(f"frame {index + 1} has shape {raw.shape}, expected {(self.rows, self.columns)}")
                yield index, raw
        except FrameError:
            raise
        except Exception as exc:
            raise FrameError(f"pixel data cannot be decoded: {describe(exc)}") from None
        if seen != len(wanted):
            raise FrameError(f"pixel data holds {seen} frames, Number of Frames says {self.n_frames}")

    def scan(self, measure=None) -> np.ndarray:
        """Pass 1: every frame once; returns ``measure(frame, valid)`` per frame (zeros without one)."""
        with _named_errors():
            return self._scan(measure)

    def _scan(self, measure=None) -> np.ndarray:
        scores = np.zeros(self.n_frames, dtype=np.float64)
        lo, hi = np.inf, -np.inf
        valid_all = self.field512.copy()
        for index, raw in self._frames():
            frame, valid = self._display(raw, index)
            valid_all &= valid
            where = valid if valid.any() else True
            lo = min(lo, float(frame.min(where=where, initial=np.inf)))
            hi = max(hi, float(frame.max(where=where, initial=-np.inf)))
            if measure is not None:
                scores[index] = measure(frame, valid)
        self.lo, self.hi, self.valid = lo, hi, valid_all
        if self.scaled_by_range:
            scores *= 1.0 / (hi - lo) if hi > lo else 0.0
        return scores

    def read(self, indices: list[int] | None = None) -> Frames:
        """Pass 2: the frames at 0-based ``indices`` (all when None), display-ready in [0, 1]."""
        with _named_errors():
            return self._read(indices)

    def _read(self, indices: list[int] | None = None) -> Frames:
        if self.valid is None:
            self.scan()
        indices = list(range(self.n_frames)) if indices is None else sorted(indices)
        stack = np.empty((len(indices), FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
        position = {index: k for k, index in enumerate(indices)}
        for index, raw in self._frames(indices):
            stack[position[index]] = self._display(raw, index)[0]
        if self.scaled_by_range:
            stack -= self.lo
            stack *= 1.0 / (self.hi - self.lo) if self.hi > self.lo else 0.0
        np.clip(stack, 0.0, 1.0, out=stack)
        stack[:, ~self.valid] = 0.0
        return Frames(data=stack, valid=self.valid, rows=self.rows, columns=self.columns,
                      numbers=[i + 1 for i in indices])


def decode_frames(src: Dataset | str | Path, max_frames: int | None = None, **limits) -> Frames:
    """Every frame of a data set or Part 10 file as :class:`Frames` (see :class:`FrameSource`;
    ``limits``: ``max_rows``, ``max_columns``, ``max_inflated_bytes``)."""
    return FrameSource(src, max_frames, **limits).read()


def frames_from_image(data: bytes) -> Frames:
    """A PNG/JPEG (grey or RGB, as ARCADE frames are exported) as a single-frame :class:`Frames`."""

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise FrameError(f"not a readable PNG/JPEG image: {describe(exc)}") from None
    rows, cols = grey.shape
    frame = resize_frame(grey)
    return Frames(data=frame[None], valid=np.ones(frame.shape, bool), rows=rows, columns=cols)


def frames_from_bytes(data: bytes, max_frames: int | None = None, limits: Limits | None = None) -> Frames:
    """Frames of an uploaded file: DICOM Part 10 (through the door,
    :mod:`arcade_pacs.pipeline.part10`) or a PNG/JPEG image."""
    if is_part10(data):
        limits = limits or Limits(max_frames=max_frames)
        try:
            ds = open_part10(data, limits)
        except InputError as exc:
            raise FrameError(str(exc), exc.kind) from None
        return FrameSource(ds, limits=limits).read()
    return frames_from_image(data)

