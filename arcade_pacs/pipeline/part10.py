"""The one guarded door for DICOM input: every Part 10 data set the plugin reads passes here.

A C-STORE's received file, a stored instance the worker analyses, a ``/predict`` upload (and a
STOW-RS part) are opened by :func:`open_part10` and checked by :func:`check_image` and
:func:`frame_layout`, which apply every bound before anything of the size a file declares is
allocated:

- Part 10 structure: a preamble, ``DICM`` and a File Meta Information Group Length (PS3.10 7.1);
- a Deflated data set (PS3.5 A.5) inflates to at most ``max_inflated_bytes`` (deflate bombs),
  streamed to a file or counted, never inflated whole by pydicom first;
- at most ``max_elements`` data elements, nested ones included, counted from the element
  headers before pydicom parses them (each costs ~300 bytes of memory once parsed);
- declared Rows, Columns and Number of Frames within ``max_rows``, ``max_columns``,
  ``max_frames``; one grey sample per pixel;
- native Pixel Data as long as Rows x Columns x Frames x Bits Allocated (PS3.5 8.1.1), and
  present in full (a file cut short with its declared length intact is :attr:`Kind.TRUNCATED`);
- encapsulated Pixel Data whose fragments can be told apart into the declared frames, each
  frame's codestream header declaring Rows x Columns (decoders allocate what the header says).

Every refusal is an :class:`InputError` carrying its :class:`Kind`; callers choose what to
answer by the kind, never by the message: the SCP a DICOM status (``receive/receipt.py``),
``/predict`` an HTTP code (``admin/routers/predict.py``). Messages name attributes and sizes,
never data values.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pydicom
from pydicom import Dataset
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from arcade_pacs.core.phi import describe
from arcade_pacs.dicom.attrs import InvalidAttribute, grayscale_problem, number_of_frames
from arcade_pacs.dicom.deflate import (
    InflatedTooLarge,
    InflateError,
    NoFileMeta,
    inflate_into,
    inflate_to_file,
    meta_end,
)
from arcade_pacs.dicom.elementcount import ElementHeaderError, TooManyElements, count_elements
from arcade_pacs.pipeline.fragments import (
    HEADER_WINDOW,
    CodestreamSize,
    Fragment,
    FragmentError,
    codestream_size,
    locate_frames,
    read_fragment_table,
    table_agrees,
)

MAX_SIZE = 4096
"""Default largest Rows and Columns (``pipeline.max_rows``/``max_columns``)."""
MAX_ELEMENTS = 500_000
"""Default most data elements in a data set (``scp.max_elements``): an element-count bomb guard."""
MAX_INFLATED_BYTES = 256 * 2**20
"""Default bound on a Deflated data set once inflated (``scp.max_inflated_bytes``)."""
MAX_FRAMES = 2000
"""Default most frames (``pipeline.max_frames``)."""


class Kind(StrEnum):
    """What is wrong with an input, which decides the answer (a DICOM status, an HTTP code)."""

    UNKNOWN_FORMAT = "unknown-format"
    """Not a format the plugin reads (no Part 10 header; for uploads, neither PNG nor JPEG)."""
    TOO_LARGE = "too-large"
    """Past a configured bound: elements, inflated size, rows, columns, frames, pixels, bytes."""
    UNREADABLE = "unreadable"
    """Cannot be parsed or decoded (malformed elements, values, fragments, codestreams)."""
    UNSUPPORTED = "unsupported"
    """Valid DICOM the plugin cannot analyse (not grayscale, a Secondary Capture that is not XA)."""
    INCONSISTENT = "inconsistent"
    """Attributes that contradict each other, the pixel data or the SOP class (missing UIDs,
    no Pixel Data, zero Rows, Pixel Data shorter than declared, frame headers of another size)."""
    TRUNCATED = "truncated"
    """The data end before what their own header declares (a transfer cut short): resend."""


class InputError(ValueError):
    """An input refused at the door; ``kind`` says what is wrong, the message why (no data values)."""

    kind: Kind = Kind.UNREADABLE

    def __init__(self, message: str, kind: Kind | None = None):
        super().__init__(message)
        if kind is not None:
            self.kind = kind


@dataclass(frozen=True)
class Limits:
    """The bounds every input is held to (from ``scp`` and ``pipeline`` settings)."""

    max_elements: int = MAX_ELEMENTS
    max_inflated_bytes: int = MAX_INFLATED_BYTES
    max_rows: int = MAX_SIZE
    max_columns: int = MAX_SIZE
    max_frames: int | None = MAX_FRAMES

    @classmethod
    def of(cls, settings) -> Limits:
        """The limits of a :class:`~arcade_pacs.settings.Settings`."""
        return cls(max_elements=settings.scp.max_elements, max_inflated_bytes=settings.scp.max_inflated_bytes,
                   max_rows=settings.pipeline.max_rows, max_columns=settings.pipeline.max_columns,
                   max_frames=settings.pipeline.max_frames)


Source = Path | str | bytes | bytearray


def is_part10(data: bytes) -> bool:
    """Whether ``data`` starts as a Part 10 file: 128-byte preamble, then ``DICM`` (PS3.10 7.1)."""
    return len(data) > 132 and data[128:132] == b"DICM"


def open_part10(source: Source, limits: Limits, *, tags: list[str] | None = None, defer_size: str | None = "64 KB",
                inflate_to: Path | None = None) -> Dataset:
    """Open a Part 10 file (path) or its bytes, within ``limits``; the data set with its File Meta.

    ``tags`` keeps only those attributes (pydicom's ``specific_tags``); values over
    ``defer_size`` stay on disk until read (a path only). A Deflated data set is inflated into
    ``inflate_to`` when given (then read from there, lazily; the caller removes the file), else
    in memory, in both cases bounded by ``max_inflated_bytes`` and counted before parsing.

    Raises
    ------
    InputError
        ``UNKNOWN_FORMAT`` (no Part 10 header), ``TOO_LARGE`` (elements, inflated size),
        ``UNREADABLE`` (corrupt deflate stream, elements pydicom cannot parse).
    """
    in_memory = isinstance(source, (bytes, bytearray))
    try:
        start = meta_end(source)
    except NoFileMeta:
        raise InputError("not a DICOM Part 10 file (no File Meta Information)", Kind.UNKNOWN_FORMAT) from None
    except OSError as exc:
        raise InputError(f"unreadable file: {describe(exc)}", Kind.UNREADABLE) from None
    try:
        head = bytes(source[:start]) if in_memory else _head(source, start)
        meta = pydicom.dcmread(io.BytesIO(head), stop_before_pixels=True).file_meta
        syntax = UID(str(meta.get("TransferSyntaxUID", "")).strip("\0 "))
        if not syntax:
            raise ValueError("no Transfer Syntax UID")
        syntax.is_little_endian  # noqa: B018 - raises for a UID that is no transfer syntax
    except Exception as exc:
        raise InputError(f"unreadable File Meta Information: {describe(exc)}", Kind.UNREADABLE) from None
    body: Path | str | io.BytesIO = io.BytesIO(source) if in_memory else source
    if syntax == DeflatedExplicitVRLittleEndian:
        try:
            if inflate_to is not None and not in_memory:
                inflate_to_file(Path(source), inflate_to, limits.max_inflated_bytes)
                body = inflate_to
            else:  # one buffer: a Part 10 header, then the data set inflated into it
                meta.TransferSyntaxUID = ExplicitVRLittleEndian
                body = _part10_header(meta)
                inflate_into(source if in_memory else Path(source), body, limits.max_inflated_bytes)
                in_memory = True
        except InflatedTooLarge as exc:
            raise InputError(str(exc), Kind.TOO_LARGE) from None
        except InflateError as exc:
            raise InputError(str(exc), Kind.UNREADABLE) from None
        syntax = ExplicitVRLittleEndian
    _count_elements(body, syntax, limits.max_elements)
    try:
        if in_memory:
            body.seek(0)
            return pydicom.dcmread(body, specific_tags=tags)
        return pydicom.dcmread(body, defer_size=defer_size, specific_tags=tags)
    except Exception as exc:
        raise InputError(f"data set cannot be decoded: {describe(exc)}", Kind.UNREADABLE) from None


def _head(path: Source, size: int) -> bytes:
    with open(path, "rb") as fp:
        return fp.read(size)


def _part10_header(meta) -> io.BytesIO:
    """A buffer holding a Part 10 preamble and ``meta``, positioned for the data set."""
    from pydicom.filewriter import write_file_meta_info

    buffer = io.BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, meta)
    return buffer


def _count_elements(source: Path | str | io.BytesIO, syntax: UID, limit: int) -> None:
    """Refuse more than ``limit`` data elements before anything parses them (PS3.5 7.1-7.5)."""
    try:
        if isinstance(source, io.BytesIO):
            view = source.getbuffer()
            try:
                start, end = meta_end(bytes(view[:144])), len(view)
            finally:
                view.release()
            count_elements(source, start, end, syntax.is_implicit_VR, limit, syntax.is_little_endian)
        else:
            with open(source, "rb") as fp:
                count_elements(fp, meta_end(source), Path(source).stat().st_size, syntax.is_implicit_VR, limit,
                               syntax.is_little_endian)
    except TooManyElements as exc:
        raise InputError(str(exc), Kind.TOO_LARGE) from None
    except ElementHeaderError as exc:
        raise InputError(str(exc), Kind.UNREADABLE) from None


@dataclass(frozen=True)
class ImageShape:
    """What an image declares: Rows, Columns, Number of Frames."""

    rows: int
    columns: int
    frames: int


def check_image(ds: Dataset, limits: Limits, *, syntax: str | None = None, file_size: int | None = None) -> ImageShape:
    """Check what the header of an image declares, before any pixel buffer exists.

    ``syntax`` is the transfer syntax the data set was encoded in (its File Meta's when not
    given); ``file_size`` the size of the file ``ds`` was read from, to see whether deferred
    native Pixel Data is there in full.

    Raises
    ------
    InputError
        ``INCONSISTENT`` (no Pixel Data, zero Rows, Columns or frames, native Pixel Data shorter
        than declared), ``UNSUPPORTED`` (not grayscale), ``TOO_LARGE`` (past the limits),
        ``TRUNCATED`` (the data end before the Pixel Data's own length), ``UNREADABLE``
        (attribute values that are no numbers).
    """
    try:
        if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
            raise InputError("no Pixel Data", Kind.INCONSISTENT)
        problem = grayscale_problem(ds)
        if problem:
            raise InputError(problem, Kind.UNSUPPORTED)
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = number_of_frames(ds)
    except InputError:
        raise
    except (InvalidAttribute, TypeError, ValueError, OverflowError) as exc:
        raise InputError(f"invalid image attributes: {describe(exc)}", Kind.UNREADABLE) from None
    if rows < 1 or cols < 1:
        raise InputError("Rows or Columns missing or zero", Kind.INCONSISTENT)
    if frames < 1:
        raise InputError("Number of Frames is zero", Kind.INCONSISTENT)
    max_frames = limits.max_frames if limits.max_frames is not None else frames
    if rows > limits.max_rows or cols > limits.max_columns or frames > max_frames:
        raise InputError(f"image {rows}x{cols}x{frames} exceeds configured limits; it exceeds the limits "
                         f"{limits.max_rows}x{limits.max_columns}x{max_frames} (rows x columns x frames)",
                         Kind.TOO_LARGE)
    shape = ImageShape(rows, cols, frames)
    syntax = syntax or getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if "PixelData" in ds and (not syntax or not UID(syntax).is_encapsulated):
        declared, present = pixel_data_lengths(ds, file_size)
        if present < declared:
            raise InputError(f"pixel data truncated: {present} of its {declared} bytes arrived", Kind.TRUNCATED)
        if declared < frame_bytes(ds, shape) * frames:
            raise InputError("pixel data shorter than Rows x Columns x Frames", Kind.INCONSISTENT)
    return shape


def frame_bytes(ds: Dataset, shape: ImageShape) -> int:
    """Bytes of one native frame (PS3.5 8.1.1; 1-bit data is packed)."""
    bits = int(ds.get("BitsAllocated", 8) or 8)
    return (shape.rows * shape.columns * int(ds.get("SamplesPerPixel", 1) or 1) * bits + 7) // 8


def pixel_data_lengths(ds: Dataset, file_size: int | None = None) -> tuple[int, int]:
    """``(declared, present)`` bytes of Pixel Data: the length its element header declares, and
    how many of them the file (or the value read) holds, without reading a deferred value."""
    element = ds.get_item("PixelData", keep_deferred=True)
    value = getattr(element, "value", None)
    declared = getattr(element, "length", None)
    if value is not None:
        present = len(value)
        return (present if declared is None else int(declared)), present
    declared = int(declared or 0)
    tell = getattr(element, "value_tell", None)
    if file_size is None or tell is None:
        return declared, declared
    return declared, max(0, min(declared, file_size - tell))


@dataclass(frozen=True)
class FrameLayout:
    """Encapsulated Pixel Data as read from its item headers (PS3.5 A.4).

    ``groups`` are the 0-based fragment indices of each frame (``None``: pydicom's own rule is
    left to find them); ``first`` is where the first fragment's item tag lies, in the file
    (``value`` is None: the value stayed on disk) or in ``value``.
    """

    offsets: list[int]
    fragments: list[Fragment]
    groups: list[tuple[int, ...]] | None
    first: int
    value: bytes | None

    def found_by_pydicom(self, n_frames: int) -> bool:
        """Whether pydicom finds the same frames by itself (a table that agrees, or no table
        with one frame or one fragment per frame)."""
        return table_agrees(self.offsets, self.fragments, n_frames) or (
            not self.offsets and (n_frames == 1 or len(self.fragments) == n_frames))


def frame_layout(ds: Dataset, path: Path | str | None, shape: ImageShape) -> FrameLayout | None:
    """Where each frame of encapsulated Pixel Data lies, every frame's codestream header checked.

    Only item headers and the first bytes of each frame are read (from ``path`` when the value
    was deferred); ``None`` for native Pixel Data or with an Extended Offset Table. See
    :mod:`arcade_pacs.pipeline.fragments`.

    Raises
    ------
    InputError
        ``UNREADABLE`` (items that cannot be read), ``INCONSISTENT`` (a Basic Offset Table that
        contradicts the fragments with no other way to find the frames; a frame header that
        declares another size than Rows x Columns, or none).
    """
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if not syntax or not UID(syntax).is_encapsulated or "ExtendedOffsetTable" in ds or "PixelData" not in ds:
        return None
    element = ds.get_item("PixelData", keep_deferred=True)
    value = element.value
    try:
        if value is None:  # deferred: only item headers and frame headers are read from the file
            with open(path, "rb") as fp:
                fp.seek(element.value_tell)
                offsets, fragments = read_fragment_table(fp)
                first = element.value_tell + 8 + 4 * len(offsets)

                def read(fragment, size):
                    fp.seek(first + fragment.offset + 8)
                    return fp.read(size)

                groups = locate_frames(offsets, fragments, shape.frames)
                _check_codestreams(groups, fragments, read, shape)
        else:
            value = bytes(value)
            offsets, fragments = read_fragment_table(io.BytesIO(value), end=len(value))
            first = 8 + 4 * len(offsets)
            groups = locate_frames(offsets, fragments, shape.frames)
            _check_codestreams(groups, fragments, lambda f, size: value[first + f.offset + 8:first + f.offset + 8 + size],
                               shape)
    except FragmentError as exc:
        raise InputError(f"encapsulated pixel data cannot be read: {exc}", Kind.UNREADABLE) from None
    except OSError as exc:
        raise InputError(f"encapsulated pixel data cannot be read: {describe(exc)}", Kind.UNREADABLE) from None
    layout = FrameLayout(offsets, fragments, groups, first, value)
    if groups is None and offsets and not layout.found_by_pydicom(shape.frames):
        raise InputError(
            f"the Basic Offset Table ({len(offsets)} entries) does not match the {len(fragments)} "
            f"fragments, and {shape.frames} frames cannot be located by their start markers", Kind.INCONSISTENT)
    return layout


def _check_codestreams(groups, fragments, read, shape: ImageShape) -> None:
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
            raise InputError(f"frame {number}: {exc}", Kind.INCONSISTENT) from None
        if size is not None and size != (shape.rows, shape.columns):
            raise InputError(
                f"frame {number} codestream declares {size[0]}x{size[1]} pixels, "
                f"Rows x Columns is {shape.rows}x{shape.columns}", Kind.INCONSISTENT)
