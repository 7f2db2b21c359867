"""STOW-RS request bodies for the tests: ``multipart/related; type="application/dicom"`` built by hand,
so each test can also build the broken ones (truncated, wrong boundary, foreign parts)."""

from __future__ import annotations

import io

from pydicom import Dataset

SENDER, SENDER_TOKEN = "CATHLAB-WEB", "stow-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {SENDER_TOKEN}"}


def part10(ds: Dataset) -> bytes:
    """``ds`` as a Part 10 file (preamble, DICM, File Meta Information, data set)."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def content_type(boundary: str = "arcade-test-boundary", kind: str = "application/dicom") -> str:
    return f'multipart/related; type="{kind}"; boundary={boundary}'


def body(parts: list[bytes | tuple[str, bytes]], boundary: str = "arcade-test-boundary", close: bool = True) -> bytes:
    """A multipart body: each part ``bytes`` (sent as application/dicom) or ``(content_type, bytes)``;
    ``close=False`` leaves out the closing delimiter (a truncated body)."""
    out = bytearray()
    for part in parts:
        kind, data = part if isinstance(part, tuple) else ("application/dicom", part)
        out += f"--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out)
