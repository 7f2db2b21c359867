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
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from arcade_pacs.deflate import InflateError, inflated_size
from arcade_pacs.dicomattrs import InvalidAttribute, grayscale_problem, number_of_frames
from arcade_pacs.elementcount import TooManyElements, count_elements
from arcade_pacs.phi import describe
from arcade_pacs.pipeline.fragments import (
    HEADER_WINDOW,
    CodestreamSize,
    FragmentError,
    codestream_size,
    encapsulated_with_offsets,
    locate_frames,
    read_fragment_table,
    table_agrees,
)
from arcade_pacs.pipeline.tensors import FRAME_SIZE, resize_frame

MAX_SIZE = 4096
"""Default largest Rows and Columns (``pipeline.max_rows``/``max_columns``): larger images are
refused before any buffer of their size is allocated."""
MAX_ELEMENTS = 500_000
"""Default most data elements in a data set (``scp.max_elements``): an element-count bomb guard."""
MAX_INFLATED_BYTES = 256 * 2**20
"""Default bound on a Deflated data set once inflated (``scp.max_inflated_bytes``)."""


class FrameError(ValueError):
    """The pixel data cannot become frames; the message says why (shown by the admin)."""


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


def _check_element_count(source, syntax, limit: int) -> None:
    """Count a Part 10 file's (path or bytes) data elements before pydicom parses them; a
    deflated one is counted by its compressed bytes' size bound instead (see deflate)."""
    from arcade_pacs.deflate import _meta_end, meta_end

    if not syntax or UID(syntax) == DeflatedExplicitVRLittleEndian:
        return
    syntax = UID(syntax)
    try:
        start = _meta_end(bytes(source[:144])) if isinstance(source, (bytes, bytearray)) else meta_end(Path(source))
    except InflateError:
        return  # no File Meta group length to start from: pydicom reads (or refuses) it as before
    if isinstance(source, (bytes, bytearray)):
        fp, end = io.BytesIO(source), len(source)
    else:
        fp, end = open(source, "rb"), Path(source).stat().st_size
    with fp:
        count_elements(fp, start, end, syntax.is_implicit_VR, limit, syntax.is_little_endian)


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
                 max_elements: int = MAX_ELEMENTS):
        try:
            self._open(src, max_frames, max_inflated_bytes, max_rows, max_columns, max_elements)
        except FrameError:
            raise
        except Exception as exc:  # attribute values pydicom or numpy cannot use
            raise FrameError(f"invalid image attributes: {describe(exc)}") from None

    def _open(self, src, max_frames, max_inflated_bytes, max_rows, max_columns, max_elements) -> None:
        import pydicom

        if isinstance(src, Dataset):
            ds = src
        else:
            src = str(src)
            try:
                meta = pydicom.filereader.read_file_meta_info(src)
                _check_element_count(src, meta.get("TransferSyntaxUID"), max_elements)
                if meta.get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian:
                    # Frames cannot be read lazily from a deflated file: it is inflated in memory,
                    # so its inflated size is counted first (deflate bombs).
                    inflated_size(Path(src), max_inflated_bytes)
                    ds = src = pydicom.dcmread(src)
                else:
                    ds = pydicom.dcmread(src, defer_size="64 KB")
            except (InflateError, TooManyElements) as exc:
                raise FrameError(str(exc)) from None
            except Exception as exc:
                raise FrameError(f"unreadable DICOM file: {describe(exc)}") from None
        self.src, self.ds = src, ds
        if "PixelData" not in ds:
            raise FrameError("no Pixel Data")
        problem = grayscale_problem(ds)
        if problem:
            raise FrameError(problem)
        self.photometric = str(ds.PhotometricInterpretation).strip()
        self.rows, self.columns = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        try:
            self.n_frames = number_of_frames(ds)
        except InvalidAttribute as exc:
            raise FrameError(str(exc)) from None
        if self.rows < 1 or self.columns < 1 or self.n_frames < 1:
            raise FrameError(f"empty image: {self.rows} rows, {self.columns} columns, {self.n_frames} frames")
        if max_frames is not None and self.n_frames > max_frames:
            raise FrameError(f"{self.n_frames} frames exceed the configured limit of {max_frames}")
        if self.rows > max_rows or self.columns > max_columns:  # before anything of that size is allocated
            raise FrameError(f"image {self.rows}x{self.columns} exceeds the configured limit of {max_rows}x{max_columns}")
        self.decode_options: dict = {}
        self.relocated = False  # True when frames were found by their fragments, not the offset table
        self._locate_fragments()
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

    def _locate_fragments(self) -> None:
        """Make compressed frames readable when the Basic Offset Table disagrees with the fragments.

        One fragment per frame (the usual case) is handed to pydicom as an Extended Offset Table
        (PS3.3 C.7.6.3.1.8), so frames are still read lazily from the file; frames of several
        fragments get a corrected Basic Offset Table on an in-memory copy of the data set.
        """
        ds = self.ds
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        if not syntax or not UID(syntax).is_encapsulated or "ExtendedOffsetTable" in ds:
            return
        element = ds.get_item("PixelData", keep_deferred=True)
        value = element.value
        try:
            if value is None:  # deferred: only item headers and frame headers are read from the file
                with open(self.src, "rb") as fp:
                    fp.seek(element.value_tell)
                    offsets, fragments = read_fragment_table(fp)
                    first = element.value_tell + 8 + 4 * len(offsets)

                    def read(fragment, size):
                        fp.seek(first + fragment.offset + 8)
                        return fp.read(size)

                    groups = locate_frames(offsets, fragments, self.n_frames)
                    self._check_codestreams(groups, fragments, read)
            else:
                value = bytes(value)
                offsets, fragments = read_fragment_table(io.BytesIO(value), end=len(value))
                first = 8 + 4 * len(offsets)
                groups = locate_frames(offsets, fragments, self.n_frames)
                self._check_codestreams(
                    groups, fragments, lambda f, size: value[first + f.offset + 8:first + f.offset + 8 + size])
        except FragmentError as exc:
            raise FrameError(f"encapsulated pixel data cannot be read: {exc}") from None
        n = self.n_frames
        if table_agrees(offsets, fragments, n) or (not offsets and (n == 1 or len(fragments) == n)):
            return  # pydicom finds the same frames by itself
        if groups is None:
            if not offsets:
                return  # no table to contradict: pydicom's own rule (JPEG EOI markers) may still work
            raise FrameError(
                f"the Basic Offset Table ({len(offsets)} entries) does not match the {len(fragments)} "
                f"fragments, and {n} frames cannot be located by their start markers"
            )
        self.relocated = True
        firsts = [fragments[g[0]] for g in groups]
        if all(len(g) == 1 for g in groups):
            self.decode_options = {"extended_offsets": ([f.offset for f in firsts], [f.length for f in firsts])}
            return
        last = fragments[-1]
        start, size = 8 + 4 * len(offsets), last.offset + 8 + last.length
        if value is None:
            import pydicom

            fixed = pydicom.dcmread(self.src)
            with open(self.src, "rb") as fp:
                fp.seek(element.value_tell + start)
                items = fp.read(size)
        else:
            fixed = Dataset(dict(ds.items()))  # a new element dict: the caller's data set is not changed
            fixed.file_meta = ds.file_meta
            items = value[start:start + size]
        from pydicom.dataelem import DataElement

        fixed["PixelData"] = DataElement(0x7FE00010, "OB", encapsulated_with_offsets([f.offset for f in firsts], items),
                                         is_undefined_length=True)
        self.src = fixed

    def _check_codestreams(self, groups, fragments, read) -> None:
        """Each frame's codestream must declare Rows x Columns (see
        :func:`~arcade_pacs.pipeline.fragments.codestream_size`): checked from the headers, before
        a decoder allocates what a forged header asks for."""
        if groups is None:
            return
        for number, group in enumerate(groups, start=1):
            head = b""
            for index in group:  # a header may run on into the frame's next fragment
                fragment = fragments[index]
                head += read(fragment, min(fragment.length, HEADER_WINDOW - len(head)))
                if len(head) >= HEADER_WINDOW:
                    break
            try:
                size = codestream_size(head)
            except CodestreamSize as exc:
                raise FrameError(f"frame {number}: {exc}") from None
            if size is not None and size != (self.rows, self.columns):
                raise FrameError(
                    f"frame {number} codestream declares {size[0]}x{size[1]} pixels, "
                    f"Rows x Columns is {self.rows}x{self.columns}"
                )

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
        valid = self.field
        if self.padding is not None:
            valid = valid & ~((raw >= self.padding[0]) & (raw <= self.padding[1]))
        frame = resize_frame(values)
        if self.voi_lut is not None:
            from pydicom.pixels import apply_voi_lut

            top = float(2 ** int(self.voi_lut[0].LUTDescriptor[2]) - 1)
            frame = (apply_voi_lut(np.rint(frame).astype(np.int64), self.ds) / top).astype(np.float32)
        elif self.windows is not None:
            frame = apply_window(frame, *self.windows[index]).astype(np.float32)
        if self.photometric == "MONOCHROME1":
            frame = (1.0 - frame) if not self.scaled_by_range else -frame
        return frame, resize_frame(valid.astype(np.float32)) > 0.5

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
            inside = frame[valid] if valid.any() else frame.ravel()
            lo, hi = min(lo, float(inside.min())), max(hi, float(inside.max()))
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
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise FrameError(f"not a readable PNG/JPEG image: {describe(exc)}") from None
    rows, cols = grey.shape
    frame = resize_frame(grey)
    return Frames(data=frame[None], valid=np.ones(frame.shape, bool), rows=rows, columns=cols)


def meta_end_of(data: bytes) -> int:
    """End of a Part 10 file's File Meta Information (its first 144 bytes + group length)."""
    from arcade_pacs.deflate import _meta_end

    try:
        return _meta_end(data[:144])
    except InflateError:
        return min(len(data), 1024)


def frames_from_bytes(data: bytes, max_frames: int | None = None) -> Frames:
    """Frames of an uploaded file: DICOM (Part 10, or a bare data set) or a PNG/JPEG image."""
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    is_dicom = len(data) > 132 and data[128:132] == b"DICM"
    if is_dicom:
        try:
            if DeflatedExplicitVRLittleEndian.encode() in data[:meta_end_of(data)]:
                inflated_size(data, MAX_INFLATED_BYTES)  # before pydicom inflates it in memory
            else:
                syntax = pydicom.dcmread(io.BytesIO(data[:meta_end_of(data)]), force=True).file_meta.get("TransferSyntaxUID")
                _check_element_count(data, syntax, MAX_ELEMENTS)
            ds = pydicom.dcmread(io.BytesIO(data))
        except (InflateError, TooManyElements) as exc:
            raise FrameError(str(exc)) from None
        except (InvalidDicomError, Exception) as exc:
            raise FrameError(f"unreadable DICOM file: {describe(exc)}") from None
        return decode_frames(ds, max_frames=max_frames)
    return frames_from_image(data)
