"""The SCP's transport: bounded PDUs, a TLS handshake that cannot stall the listener, and
C-STORE data sets received in chunks to files under the storage root.

pynetdicom reads a whole PDU into memory, of whatever length the peer declares, and holds a
C-STORE data set in memory until the last PDU arrived. Here:

- every PDU header is checked as it is read: a P-DATA-TF PDU longer than the Maximum Length
  we announced (``scp.max_pdu``, PS3.8 D.1) or any other PDU over 1 MiB closes the
  association before its body is read, so one association holds at most one PDU;
- data sets are written to ``<storage root>/.incoming/`` as they arrive
  (pynetdicom's ``STORE_RECV_CHUNKED_DATASET``), bytes past ``scp.max_instance_bytes`` are
  discarded as they arrive and the C-STORE is then refused (0xA700), so neither memory nor
  disk grows with what a peer sends; an accepted data set is committed by a rename;
- with TLS, the handshake runs in the association's own thread with a timeout (pynetdicom
  runs it in the thread that accepts connections, where one silent client blocks all others).
"""

from __future__ import annotations

import logging
import socket
import ssl
import tempfile
import threading
from pathlib import Path

from pynetdicom import _config
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

log = logging.getLogger(__name__)

P_DATA_TF = 0x04
MAX_OTHER_PDU = 1 << 20
"""Largest non-data PDU accepted (an A-ASSOCIATE-RQ proposing 128 contexts is about 30 KB)."""
PDU_SLACK = 64
"""Tolerance over ``max_pdu`` for senders that count the PDV headers differently."""


class PduTooLong(ConnectionError):
    """A peer declared a PDU longer than allowed; the association is closed (transport closed)."""


class PduLimitedSocket:
    """A socket whose reads are parsed as a stream of PDUs (PS3.8 9.3: type, reserved, 4-byte
    big-endian length): a header declaring too long a PDU raises :class:`PduTooLong`, which
    pynetdicom treats as the connection closing (Evt17), before any of that PDU's body is read.

    Everything else is the wrapped socket's (``__class__`` included, so pynetdicom still sees
    an ``ssl.SSLSocket`` and reads its pending bytes).
    """

    def __init__(self, sock: socket.socket, max_data_pdu: int, max_other_pdu: int = MAX_OTHER_PDU):
        self._sock = sock
        self._max_data = max_data_pdu + PDU_SLACK if max_data_pdu else 0
        self._max_other = max_other_pdu
        self._header = bytearray()
        self._left = 0

    @property  # type: ignore[misc]
    def __class__(self):
        return self._sock.__class__

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def recv(self, bufsize: int, *flags) -> bytes:
        data = self._sock.recv(bufsize, *flags)
        self._track(data)
        return data

    def _track(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._left:
                step = min(self._left, n - i)
                self._left -= step
                i += step
                continue
            step = min(6 - len(self._header), n - i)
            self._header += data[i:i + step]
            i += step
            if len(self._header) == 6:
                pdu_type, length = self._header[0], int.from_bytes(self._header[2:6], "big")
                self._header.clear()
                limit = self._max_data if pdu_type == P_DATA_TF else self._max_other
                if limit and length > limit:
                    raise PduTooLong(f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds the limit of {limit}")
                self._left = length


class LimitedRequestHandler(RequestHandler):
    """One connection: finish the TLS handshake (bounded), then bound every PDU."""

    server: ArcadeAssociationServer

    def handle(self) -> None:
        peer = self.client_address[0] if isinstance(self.client_address, tuple) else "?"
        if isinstance(self.request, ssl.SSLSocket):
            try:
                self.request.settimeout(self.server.handshake_timeout_s)
                self.request.do_handshake()
                self.request.settimeout(None)
            except (OSError, ssl.SSLError) as exc:
                log.warning("TLS handshake with %s failed: %s", peer, type(exc).__name__ + ": " + str(exc)[:120])
                return
        self.request = PduLimitedSocket(self.request, self.server.max_pdu)
        try:
            super().handle()
        except PduTooLong as exc:  # pragma: no cover - pynetdicom turns it into Evt17 first
            log.warning("association from %s closed: %s", peer, exc)


class ArcadeAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with :class:`LimitedRequestHandler`; TLS sockets are wrapped
    without handshaking, so accepting the next connection never waits for a peer."""

    def __init__(self, *args, max_pdu: int = 0, handshake_timeout_s: float = 10.0, **kwargs):
        self.max_pdu = max_pdu
        self.handshake_timeout_s = handshake_timeout_s
        kwargs.setdefault("request_handler", LimitedRequestHandler)
        super().__init__(*args, **kwargs)

    def get_request(self):
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address


class ChunkedReceipt:
    """C-STORE data sets written to files under ``incoming`` as they arrive, at most
    ``max_bytes`` each (bytes past it are dropped and the file is marked as overflowed).

    pynetdicom writes a received data set to ``tempfile.NamedTemporaryFile`` (in the system's
    temporary folder) when ``_config.STORE_RECV_CHUNKED_DATASET`` is on; :meth:`install` makes
    that call create a :class:`_BoundedFile` in ``incoming`` instead (same file system as the
    store, so a commit is a rename). Both are process-wide pynetdicom settings: one installed
    receipt serves the process's SCP.
    """

    def __init__(self, incoming: Path, max_bytes: int):
        self.incoming = Path(incoming)
        self.max_bytes = max_bytes
        self._overflowed: set[str] = set()
        self._lock = threading.Lock()

    def install(self) -> None:
        from pynetdicom import dimse_messages

        self.incoming.mkdir(parents=True, exist_ok=True)
        _config.STORE_RECV_CHUNKED_DATASET = True
        dimse_messages.NamedTemporaryFile = self._open  # type: ignore[attr-defined]

    def _open(self, delete: bool = False, mode: str = "wb", suffix: str = ".dcm", **_ignored) -> _BoundedFile:
        handle = tempfile.NamedTemporaryFile(delete=False, mode=mode, suffix=suffix, dir=self.incoming, prefix="recv-")
        return _BoundedFile(handle, self)

    def overflowed(self, path: Path | str) -> bool:
        """Whether the data set at ``path`` exceeded ``max_bytes`` (then it is incomplete); forgets it."""
        with self._lock:
            if str(path) in self._overflowed:
                self._overflowed.discard(str(path))
                return True
        return False

    def _mark(self, path: str) -> None:
        with self._lock:
            self._overflowed.add(path)

    def sweep_stale(self, older_than_s: float) -> int:
        """Remove data sets of associations that ended mid-message (no handler ever took them):
        files in ``incoming`` not written to for ``older_than_s``. Returns how many were removed."""
        import time

        removed, cutoff = 0, time.time() - older_than_s
        for path in self.incoming.glob("recv-*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
                    self.overflowed(path)
            except OSError:
                continue
        return removed


class _BoundedFile:
    """The file pynetdicom writes a data set into, keeping at most ``receipt.max_bytes``."""

    def __init__(self, handle, receipt: ChunkedReceipt):
        self._handle = handle
        self._receipt = receipt
        self._written = 0
        self._full = False

    @property
    def name(self) -> str:
        return self._handle.name

    @property
    def file(self):
        return self

    def write(self, data) -> int:
        size = len(data)
        if self._full:
            return size
        if self._written + size > self._receipt.max_bytes:
            self._full = True
            self._receipt._mark(self._handle.name)
            self._handle.truncate(0)  # what arrived so far is useless: give the space back now
            return size
        self._written += size
        return self._handle.write(data)

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __getattr__(self, name):
        return getattr(self._handle, name)
