"""``POST /predict`` is bounded: size while reading, dimensions before decoding, types, concurrency."""

import io
import struct
import threading
import zlib

import pydicom
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.model.holder import ModelHolder
from tests.factory import real_frame, xa_dataset


@pytest.fixture
def state(settings, sessions, tiny_classifier):
    settings.admin.predict_max_mb = 1
    return AdminState(settings, sessions, ModelHolder(tiny_classifier))


@pytest.fixture
def client(state):
    with TestClient(create_app(state)) as c:
        yield c


def _post(client, data, name="x.bin", content_type="application/octet-stream"):
    return client.post("/predict", files={"file": (name, data, content_type)})


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb's shape)."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _dicom_declaring(rows: int, cols: int, frames: int = 1) -> bytes:
    ds = xa_dataset(real_frame_stub())
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, frames
    ds.PixelData = b"\x00" * 512  # a 1 KB file that declares far more
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def real_frame_stub():
    import numpy as np

    return np.zeros((16, 16), np.uint8)


def test_a_body_over_the_limit_is_refused_with_413_while_reading(client):
    r = _post(client, b"\x00" * (2 * 1024 * 1024))
    assert r.status_code == 413
    assert "larger than" in r.json()["detail"]


def test_a_chunked_body_without_a_length_is_counted_too(client):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536  # 2.5 MB in all, no Content-Length

    r = client.post("/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=abc"})
    assert r.status_code == 413


def test_declared_dimensions_are_refused_before_any_allocation(client):
    r = _post(client, _dicom_declaring(65535, 65535), "bomb.dcm", "application/dicom")
    assert r.status_code == 413
    assert "65535x65535" in r.json()["detail"]
    r = _post(client, _dicom_declaring(512, 512, 100000), "many.dcm", "application/dicom")
    assert r.status_code == 413
    assert "exceeds the limits" in r.json()["detail"]
    r = _post(client, _png_header_only(60000, 60000), "bomb.png", "image/png")
    assert r.status_code == 413, r.text
    r = _post(client, _png_header_only(5000, 100), "wide.png", "image/png")
    assert r.status_code == 413
    assert "exceeds" in r.json()["detail"]


def test_unsupported_and_undecodable_uploads_get_415_and_422_with_one_line(client):
    r = _post(client, b"hello, not an image", "x.txt", "text/plain")
    assert r.status_code == 415
    assert "\n" not in r.json()["detail"]
    r = _post(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, "broken.png", "image/png")
    assert r.status_code == 422
    assert "\n" not in r.json()["detail"]
    truncated = _dicom_declaring(64, 64)  # declares 64x64 but holds 512 bytes of pixels
    r = _post(client, truncated, "short.dcm", "application/dicom")
    assert r.status_code == 422
    assert "\n" not in r.json()["detail"]


def test_a_real_png_and_dicom_still_work(client, rubo):
    buffer = io.BytesIO()
    Image.fromarray(real_frame(rubo, 50)).save(buffer, format="PNG")
    assert _post(client, buffer.getvalue(), "f.png", "image/png").status_code == 200
    small = xa_dataset(real_frame(rubo, 50))
    out = io.BytesIO()
    small.save_as(out, enforce_file_format=True)
    assert pydicom.dcmread(io.BytesIO(out.getvalue())).Rows == 512
    assert _post(client, out.getvalue(), "f.dcm", "application/dicom").status_code == 200


def test_more_predictions_than_the_limit_at_once_get_429(state, client, rubo):
    buffer = io.BytesIO()
    Image.fromarray(real_frame(rubo, 50)).save(buffer, format="PNG")
    # Two predictions in flight (their slots held), a third is refused at once.
    assert state.settings.admin.predict_concurrency == 2
    assert state.predict_slots.acquire(blocking=False)
    assert state.predict_slots.acquire(blocking=False)
    try:
        r = _post(client, buffer.getvalue(), "f.png", "image/png")
        assert r.status_code == 429
        assert r.headers["retry-after"]
    finally:
        state.predict_slots.release()
        state.predict_slots.release()
    results = []

    def call():
        results.append(_post(client, buffer.getvalue(), "f.png", "image/png").status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) <= {200, 429}
    assert 200 in results
