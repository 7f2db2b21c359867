"""The admin's real HTTP server (uvicorn as ``serve`` configures it) against slow and greedy clients
(issue 18): slow headers and one-byte-a-second uploads are closed at their deadlines while others
are served, connections are capped per client and in all, uvicorn's own log passes the PHI filter,
and over HTTPS the session cookie is Secure."""

import contextlib
import http.client
import logging
import select
import socket
import ssl
import threading
import time

import pytest
import uvicorn

from arcade_pacs.admin.app import AdminState, create_app
from arcade_pacs.admin.deps import SESSION_COOKIE
from arcade_pacs.admin.server import server_config
from arcade_pacs.bench.peers import free_port, wait_until
from arcade_pacs.model.holder import ModelHolder
from tests.hostile import CANARIES

MARGIN_S = 30  # generous: the machine is shared; the deadlines themselves are short


@contextlib.contextmanager
def serving(app, settings):
    """The app on a free loopback port, in uvicorn configured by :func:`server_config`."""
    settings.admin.host, settings.admin.port = "127.0.0.1", free_port()
    server = uvicorn.Server(server_config(app, settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=60, message="admin server started")
        yield settings.admin.port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def app_settings(settings):
    admin = settings.admin
    admin.header_timeout_s, admin.body_timeout_s, admin.body_min_rate = 2.0, 2.0, 500
    admin.max_connections, admin.max_connections_per_client = 500, 0
    return settings


@pytest.fixture
def app(app_settings, sessions, tiny_classifier):
    return create_app(AdminState(app_settings, sessions, ModelHolder(tiny_classifier)))


def get(port: int, path: str = "/health", timeout: float = 60) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server closed ``sock`` (readable with end of file, or reset)."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(4096) == b""
    except OSError:
        return True


def trickle(sockets: list[socket.socket], byte: bytes, until: float) -> dict[int, float]:
    """Send ``byte`` on each open socket every half second; when each was closed by the server."""
    closed: dict[int, float] = {}
    start = time.monotonic()
    while len(closed) < len(sockets) and time.monotonic() < until:
        for i, s in enumerate(sockets):
            if i in closed:
                continue
            if closed_by_server(s):
                closed[i] = time.monotonic() - start
                continue
            with contextlib.suppress(OSError):
                s.send(byte)
        time.sleep(0.5)
    return closed


def connect(port: int, first: bytes = b"") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    if first:
        s.sendall(first)
    return s


def test_slow_headers_are_closed_at_their_deadline_while_others_are_served(app, app_settings, caplog):
    caplog.set_level(logging.WARNING, logger="arcade_pacs.admin.server")
    with serving(app, app_settings) as port:
        slow = [connect(port, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ") for _ in range(50)]
        try:
            assert get(port) == 200  # served while fifty clients hold half-sent headers
            closed = trickle(slow, b"a", until=time.monotonic() + app_settings.admin.header_timeout_s + MARGIN_S)
            assert len(closed) == 50, f"{50 - len(closed)} slow-header connections still open"
            assert get(port) == 200
        finally:
            for s in slow:
                s.close()
    assert "request headers not received within 2 s" in caplog.text


def test_one_byte_a_second_uploads_are_closed_while_a_real_upload_is_served(app, app_settings, rubo, caplog):
    import io

    from PIL import Image

    from tests.factory import real_frame

    caplog.set_level(logging.WARNING, logger="arcade_pacs.admin.server")
    head = (b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=xyz\r\n"
            b"Content-Length: 100000\r\n\r\n--xyz\r\n")
    with serving(app, app_settings) as port:
        slow = [connect(port, head) for _ in range(20)]
        try:
            buffer = io.BytesIO()
            Image.fromarray(real_frame(rubo, 50)).save(buffer, format="PNG")
            body = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.png\"\r\n"
                    b"Content-Type: image/png\r\n\r\n" + buffer.getvalue() + b"\r\n--xyz--\r\n")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "multipart/form-data; boundary=xyz"})
            assert conn.getresponse().status == 200
            conn.close()
            closed = trickle(slow, b"x", until=time.monotonic() + app_settings.admin.body_timeout_s + MARGIN_S)
            assert len(closed) == 20, f"{20 - len(closed)} slow uploads still open"
        finally:
            for s in slow:
                s.close()
    assert "request body slower than 500 bytes/s" in caplog.text


def test_connections_are_capped_per_client_and_in_all(app, app_settings):
    app_settings.admin.header_timeout_s = 120  # only the caps close connections here
    app_settings.admin.max_connections_per_client = 5
    with serving(app, app_settings) as port:
        idle = [connect(port) for _ in range(8)]
        try:
            wait_until(lambda: sum(closed_by_server(s) for s in idle[5:]) == 3 or None, timeout=MARGIN_S,
                       message="connections past the per-client cap closed")
            assert not any(closed_by_server(s) for s in idle[:5])
        finally:
            for s in idle:
                s.close()
    app_settings.admin.max_connections, app_settings.admin.max_connections_per_client = 10, 0
    with serving(app, app_settings) as port:
        idle = [connect(port) for _ in range(10)]
        try:
            assert get(port) == 503  # uvicorn's limit_concurrency: an answer, not a hang
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: get(port) == 200, timeout=MARGIN_S, message="served again")


def test_uvicorns_own_log_carries_no_patient_value(app, app_settings, caplog):
    def fails():
        raise ValueError(f"cannot parse '{CANARIES[0]}' born '{CANARIES[2]}'")

    app.add_api_route("/test-fails", fails)
    caplog.set_level(logging.ERROR)
    with serving(app, app_settings) as port:
        assert get(port, "/test-fails") == 500
    records = [r for r in caplog.records if r.name.startswith("uvicorn")]
    assert records, [r.name for r in caplog.records]
    assert records[0].name == "uvicorn.error", [r.name for r in caplog.records]
    assert "ValueError" in caplog.text
    assert "test_server.py" in caplog.text  # the type and where, kept
    assert not any(c in caplog.text for c in CANARIES), caplog.text
    assert all(r.exc_info is None for r in records)


def test_over_https_the_session_cookie_is_secure(app_settings, sessions, tiny_classifier, tmp_path):
    from tests.certs import make_certificates

    certs = make_certificates(tmp_path / "certs")
    token = "kq3V9-_xTzL0bWm2RyN8dA5cUeHf7JpG"
    app_settings.admin.token = token
    app_settings.admin.tls_certificate, app_settings.admin.tls_private_key = certs.server_cert, certs.server_key
    app = create_app(AdminState(app_settings, sessions, ModelHolder(tiny_classifier)))
    with serving(app, app_settings) as port:
        context = ssl.create_default_context(cafile=str(certs.ca))
        conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=60)
        conn.request("POST", "/ui/login", body=f"token={token}",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        cookie = r.getheader("set-cookie")
        assert r.status == 303
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "secure" in cookie.lower()
        assert r.getheader("strict-transport-security", "").startswith("max-age=")
        conn.close()
        with pytest.raises((http.client.HTTPException, ConnectionError, OSError)):
            plain = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            plain.request("GET", "/health")
            assert plain.getresponse().status != 200
