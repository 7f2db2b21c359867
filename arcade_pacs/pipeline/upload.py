"""Checks on an uploaded file before anything is decoded (``POST /predict``, ``arcade-pacs predict``).

A DICOM upload goes through the one door for DICOM input (:mod:`arcade_pacs.pipeline.part10`):
what the header declares is checked against the same limits as receipt (``pipeline.max_rows``,
``max_columns``, ``max_frames``, ``scp.max_elements``, ``scp.max_inflated_bytes``) before a
pixel buffer is allocated: a 1 KB file declaring 65535 x 65535 pixels is refused in
microseconds, not after allocating gigabytes. PNG and JPEG are opened lazily (Pillow reads the
header only) under Pillow's decompression-bomb guard, set to the same pixel limit. Every
refusal is an :class:`~arcade_pacs.pipeline.part10.InputError` whose ``kind`` the caller maps.
"""

from __future__ import annotations

import io
import warnings

from arcade_pacs.pipeline.frames import FrameError
from arcade_pacs.pipeline.part10 import Kind, Limits, check_image, open_part10

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class UnsupportedUpload(FrameError):
    """Neither DICOM Part 10 nor PNG nor JPEG (``Kind.UNKNOWN_FORMAT``: answered 415)."""

    kind = Kind.UNKNOWN_FORMAT


class UploadTooLarge(FrameError):
    """Declares more rows, columns, frames or pixels than the configured limits (``Kind.TOO_LARGE``: 413)."""

    kind = Kind.TOO_LARGE


def kind_of(data: bytes) -> str:
    """``dicom``, ``png`` or ``jpeg`` by the file's magic bytes (PS3.10 7.1: ``DICM`` at offset 128)."""
    if len(data) > 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    raise UnsupportedUpload("not a DICOM Part 10, PNG or JPEG file")


def check_upload(data: bytes, max_rows: int, max_columns: int, max_frames: int, limits: Limits | None = None) -> str:
    """Refuse what cannot or must not be decoded; return the file's kind.

    ``limits`` (all of them) win over ``max_rows``, ``max_columns`` and ``max_frames``.

    Raises
    ------
    InputError
        With its kind: ``UNKNOWN_FORMAT`` (not a file type the service reads), ``TOO_LARGE``
        (declared dimensions beyond the limits, a decompression bomb, too many elements),
        ``UNREADABLE``, ``UNSUPPORTED``, ``INCONSISTENT`` or ``TRUNCATED``.
    """
    limits = limits or Limits(max_rows=max_rows, max_columns=max_columns, max_frames=max_frames)
    kind = kind_of(data)
    if kind == "dicom":
        check_image(open_part10(data, limits), limits)
        return kind
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = limits.max_rows * limits.max_columns  # the bomb guard, at the configured limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                cols, rows = img.size
                frames = getattr(img, "n_frames", 1)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadTooLarge(f"image refused as a decompression bomb: {exc}"[:200]) from exc
    except Exception as exc:
        raise FrameError(f"unreadable {kind.upper()} image: {type(exc).__name__}") from exc
    max_frames = limits.max_frames if limits.max_frames is not None else frames
    if rows > limits.max_rows or cols > limits.max_columns or frames > max_frames:
        raise UploadTooLarge(f"image {rows}x{cols}x{frames} exceeds the limits "
                             f"{limits.max_rows}x{limits.max_columns}x{max_frames} (rows x columns x frames)")
    return kind
