"""Checks on an uploaded file before anything is decoded (``POST /predict``, ``arcade-pacs predict``).

What the header declares is checked against the same limits as receipt (``pipeline.max_rows``,
``max_columns``, ``max_frames``) before a pixel buffer is allocated: a 1 KB file declaring
65535 x 65535 pixels is refused in microseconds, not after allocating gigabytes. PNG and JPEG
are opened lazily (Pillow reads the header only) under Pillow's decompression-bomb guard,
set to the same pixel limit.
"""

from __future__ import annotations

import io
import warnings

from arcade_pacs.dicomattrs import InvalidAttribute, number_of_frames
from arcade_pacs.pipeline.frames import FrameError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


class UnsupportedUpload(FrameError):
    """Neither DICOM Part 10 nor PNG nor JPEG (answered 415)."""


class UploadTooLarge(FrameError):
    """Declares more rows, columns, frames or pixels than the configured limits (answered 413)."""


def kind_of(data: bytes) -> str:
    """``dicom``, ``png`` or ``jpeg`` by the file's magic bytes (PS3.10 7.1: ``DICM`` at offset 128)."""
    if len(data) > 132 and data[128:132] == b"DICM":
        return "dicom"
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    raise UnsupportedUpload("not a DICOM Part 10, PNG or JPEG file")


def check_upload(data: bytes, max_rows: int, max_columns: int, max_frames: int) -> str:
    """Refuse what cannot or must not be decoded; return the file's kind.

    Raises
    ------
    UnsupportedUpload
        Not a file type the service reads.
    UploadTooLarge
        Declared dimensions beyond the limits, or a decompression bomb.
    FrameError
        A header that cannot be read.
    """
    kind = kind_of(data)
    if kind == "dicom":
        import pydicom

        try:
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            rows, cols, frames = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), number_of_frames(ds)
        except (InvalidAttribute, Exception) as exc:
            raise FrameError(f"unreadable DICOM header: {type(exc).__name__}") from exc
    else:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = max_rows * max_columns  # the bomb guard, at the configured limit
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
    if rows > max_rows or cols > max_columns or frames > max_frames:
        raise UploadTooLarge(f"image {rows}x{cols}x{frames} exceeds the limits "
                             f"{max_rows}x{max_columns}x{max_frames} (rows x columns x frames)")
    return kind
