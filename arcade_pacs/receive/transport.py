"""The SCP's transport: bounded PDUs read within a deadline, bounded connections, a TLS handshake
that cannot stall the listener, and C-STORE data sets received in chunks to files under the
storage root.

pynetdicom reads a whole PDU into memory, of whatever length the peer declares, with a blocking
read that has no deadline, and holds a C-STORE data set in memory until the last PDU arrived.
A peer that sends part of a PDU and stops holds that thread (and, before this module, an
association slot) for ever. Here:

- every PDU header is checked as it is read: a P-DATA-TF PDU longer than the Maximum Length
  we announced (``scp.max_pdu``, PS3.8 D.1) or any other PDU over 1 MiB closes the
  association before its body is read, so one association holds at most one PDU;
- every PDU must arrive whole within ``scp.network_timeout_s`` of its first byte, before and
  after association (a half-sent A-ASSOCIATE-RQ, a stalled P-DATA-TF): past it the connection
  is closed and the drop logged with the peer's address, the PDU's type and declared length
  (no data); a connection that sends nothing is closed by pynetdicom's ARTIM timer, an idle
  association by its network timeout (both ``scp.network_timeout_s``);
- connections are counted at accept: at most ``scp.max_connections_per_peer`` from one address
  and ``scp.max_connections`` in all; more are closed before any byte is read (logged, at most
  once per address and reason every 10 s);
- only established associations take one of ``scp.max_associations`` slots
  (:class:`AssociationSlots`, taken when the whole A-ASSOCIATE-RQ has arrived): pynetdicom's
  own limit counts every connection's thread, so idle or half-sent connections used to take the
  slots of modalities;
- data sets are written to ``<storage root>/.incoming/`` as they arrive
  (pynetdicom's ``STORE_RECV_CHUNKED_DATASET``), bytes past ``scp.max_instance_bytes`` are
  discarded as they arrive and the C-STORE is then refused (0xA700), so neither memory nor
  disk grows with what a peer sends; an accepted data set is committed by a rename;
- with TLS, the handshake runs in the association's own thread within
  ``scp.tls.handshake_timeout_s`` (pynetdicom runs it in the thread that accepts connections,
  where one silent client blocks all others); a failed handshake closes the connection.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from pynetdicom import _config, evt
from pynetdicom.transport import RequestHandler, ThreadedAssociationServer

from arcade_pacs.core import metrics
from arcade_pacs.receive import pynetdicom_adapter

log = logging.getLogger(__name__)

P_DATA_TF = 0x04
PDU_NAMES = {0x01: "A-ASSOCIATE-RQ", 0x02: "A-ASSOCIATE-AC", 0x03: "A-ASSOCIATE-RJ", 0x04: "P-DATA-TF",
             0x05: "A-RELEASE-RQ", 0x06: "A-RELEASE-RP", 0x07: "A-ABORT"}
"""PDU types (PS3.8 9.3.1), for log lines."""
MAX_OTHER_PDU = 1 << 20
"""Largest non-data PDU accepted (an A-ASSOCIATE-RQ proposing 128 contexts is about 30 KB)."""
PDU_SLACK = 64
"""Tolerance over ``max_pdu`` for senders that count the PDV headers differently."""
LOG_EVERY_S = 10.0
"""A refusal at accept is logged at most this often per address and reason (a flood is counted)."""


class PduTooLong(ConnectionError):
    """A peer declared a PDU longer than allowed; the association is closed (transport closed)."""


class PduDeadline(TimeoutError):
    """A PDU did not arrive whole within the deadline; the connection is closed (transport closed)."""


def _pdu_name(pdu_type: int) -> str:
    return PDU_NAMES.get(pdu_type, f"type 0x{pdu_type:02X}")


class PduLimitedSocket:
    """A socket whose reads are parsed as a stream of PDUs (PS3.8 9.3: type, reserved, 4-byte
    big-endian length):

    - a header declaring too long a PDU raises :class:`PduTooLong` before any of that PDU's
      body is read;
    - with ``deadline_s``, a PDU must arrive whole within ``deadline_s`` of its first byte:
      each read waits at most for what is left of that time, then :class:`PduDeadline` is
      raised and the socket shut down.

    pynetdicom treats both as the transport connection closing (Evt17). Reads and writes of one
    association happen in its DUL thread, one at a time, so the timeout set for a read never
    shortens a write (a write may block at most ``deadline_s``: a peer that stops reading is
    stalled too). Everything else is the wrapped socket's (``__class__`` included, so
    pynetdicom still sees an ``ssl.SSLSocket`` and reads its pending bytes).
    """

    def __init__(self, sock: socket.socket, max_data_pdu: int, max_other_pdu: int = MAX_OTHER_PDU,
                 deadline_s: float | None = None, peer: str = "?"):
        self._sock = sock
        self._max_data = max_data_pdu + PDU_SLACK if max_data_pdu else 0
        self._max_other = max_other_pdu
        self._deadline_s = deadline_s
        self._peer = peer
        self._header = bytearray()
        self._left = 0
        self._type: int | None = None
        self._length = 0
        self._started: float | None = None  # monotonic time of the current PDU's first byte

    @property  # type: ignore[misc]
    def __class__(self):
        return self._sock.__class__

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def recv(self, bufsize: int, *flags) -> bytes:
        if self._deadline_s:
            now = time.monotonic()
            if self._started is None:
                self._started = now  # pynetdicom reads once bytes are there: the PDU starts now
            left = self._started + self._deadline_s - now
            if left <= 0:
                self._expired()
            self._sock.settimeout(left)
        try:
            data = self._sock.recv(bufsize, *flags)
        except TimeoutError:
            self._expired()
        self._track(data)
        return data

    def send(self, data, *flags) -> int:
        if self._deadline_s:
            self._sock.settimeout(self._deadline_s)
        return self._sock.send(data, *flags)

    def sendall(self, data, *flags) -> None:
        if self._deadline_s:
            self._sock.settimeout(self._deadline_s)
        self._sock.sendall(data, *flags)

    def _expired(self):
        if self._type is None:
            what = f"a PDU header ({len(self._header)} of 6 bytes)"
        else:
            got = self._length - self._left
            what = f"{_pdu_name(self._type)} PDU of {self._length} bytes ({got} received)"
        log.warning("connection from %s dropped: %s not received within the %.0f-s deadline (scp.network_timeout_s)",
                    self._peer, what, self._deadline_s)
        metrics.SCP_CONNECTIONS_DROPPED.labels(reason="pdu-deadline").inc()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise PduDeadline(f"{what} not received within {self._deadline_s} s")

    def _track(self, data: bytes) -> None:
        i, n = 0, len(data)
        while i < n:
            if self._started is None:
                self._started = time.monotonic()
            if self._left:
                step = min(self._left, n - i)
                self._left -= step
                i += step
                if not self._left:
                    self._started = self._type = None  # the PDU is complete
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
                self._left, self._type, self._length = length, pdu_type, length
                if not length:
                    self._started = self._type = None


class LimitedRequestHandler(RequestHandler):
    """One connection: finish the TLS handshake (within its deadline), then bound every PDU."""

    server: ArcadeAssociationServer

    def handle(self) -> None:
        peer = self.client_address[0] if isinstance(self.client_address, tuple) else "?"
        if isinstance(self.request, ssl.SSLSocket):
            if not _handshake(self.request, self.server.handshake_timeout_s, peer):
                self.server.shutdown_request(self.request)
                return
        self.request = PduLimitedSocket(self.request, self.server.max_pdu, deadline_s=self.server.deadline_s,
                                        peer=peer)
        try:
            super().handle()
        except PduTooLong as exc:  # pragma: no cover - pynetdicom turns it into Evt17 first
            log.warning("association from %s closed: %s", peer, exc)


def _handshake(sock: ssl.SSLSocket, deadline_s: float, peer: str) -> bool:
    """The TLS handshake within ``deadline_s`` (CPython applies a socket's timeout to the whole
    handshake as one deadline, however slowly the client sends)."""
    try:
        sock.settimeout(deadline_s)
        sock.do_handshake()
        sock.settimeout(None)
        return True
    except (OSError, ssl.SSLError) as exc:
        log.warning("TLS handshake with %s failed: %s", peer, type(exc).__name__ + ": " + str(exc)[:120])
        metrics.SCP_CONNECTIONS_DROPPED.labels(reason="tls-handshake").inc()
        return False


class ConnectionCount:
    """Open TCP connections, by peer address: admitted at accept up to a cap per address and in
    all. A connection counts until its socket is closed (pynetdicom closes it when its association
    thread ends), so what is counted is what holds a file descriptor and threads."""

    def __init__(self, per_peer: int, total: int):
        self.per_peer = per_peer
        self.total = total
        self._open: dict[str, list[socket.socket]] = defaultdict(list)
        self._lock = threading.Lock()
        self._logged: dict[tuple[str, str], tuple[float, int]] = {}

    def _prune(self) -> None:
        for peer in list(self._open):
            alive = [s for s in self._open[peer] if s.fileno() != -1]
            if alive:
                self._open[peer] = alive
            else:
                del self._open[peer]

    def admit(self, sock: socket.socket, peer: str) -> str | None:
        """Count ``sock``; or say why it must be closed (``None``: admitted)."""
        with self._lock:
            self._prune()
            if sum(len(v) for v in self._open.values()) >= self.total:
                return f"{self.total} connections open in all (scp.max_connections)"
            if len(self._open[peer]) >= self.per_peer:
                return f"{self.per_peer} connections from that address already open (scp.max_connections_per_peer)"
            self._open[peer].append(sock)
            return None

    def open(self, peer: str | None = None) -> int:
        """Connections open now (from ``peer``, or all)."""
        with self._lock:
            self._prune()
            return len(self._open.get(peer, ())) if peer is not None else sum(len(v) for v in self._open.values())

    def log_refusal(self, peer: str, reason: str) -> None:
        """Log a refusal, at most once per address and reason every :data:`LOG_EVERY_S` (with the count)."""
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._logged.get((peer, reason), (0.0, 0))
            if now - last < LOG_EVERY_S:
                self._logged[(peer, reason)] = (last, suppressed + 1)
                return
            self._logged[(peer, reason)] = (now, 0)
            if len(self._logged) > 10_000:  # many addresses: forget the oldest notes
                self._logged = dict(sorted(self._logged.items(), key=lambda kv: kv[1][0])[-5_000:])
        more = f" ({suppressed} more refused since the last note)" if suppressed else ""
        log.warning("connection from %s closed at accept: %s%s", peer, reason, more)


class AssociationSlots:
    """The ``scp.max_associations`` slots, taken by associations whose A-ASSOCIATE-RQ arrived
    whole (``EVT_REQUESTED``), given back when they end. A slot is also free again once the
    association's thread has ended, whatever event was missed."""

    def __init__(self, limit: int):
        self.limit = limit
        self._held: set = set()
        self._lock = threading.Lock()

    def take(self, assoc) -> bool:
        """Hold a slot for ``assoc``; False when all are taken."""
        with self._lock:
            self._held = {a for a in self._held if a.is_alive()}
            if len(self._held) >= self.limit:
                return False
            self._held.add(assoc)
            return True

    def give_back(self, event) -> None:
        with self._lock:
            self._held.discard(event.assoc)

    def held(self) -> int:
        with self._lock:
            self._held = {a for a in self._held if a.is_alive()}
            return len(self._held)

    def handlers(self) -> list[tuple]:
        """The ``evt_handlers`` entries that give slots back."""
        return [(event, self.give_back) for event in
                (evt.EVT_RELEASED, evt.EVT_ABORTED, evt.EVT_REJECTED, evt.EVT_CONN_CLOSE)]


class ArcadeAssociationServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with :class:`LimitedRequestHandler`: connections are counted
    at accept (:class:`ConnectionCount`), TLS sockets are wrapped without handshaking, so
    accepting the next connection never waits for a peer.

    Started with :meth:`start` and stopped with :meth:`shutdown`, without pynetdicom's private
    list of an AE's servers (``AE.start_server`` takes no server class).
    """

    def __init__(self, *args, max_pdu: int = 0, handshake_timeout_s: float = 10.0, deadline_s: float | None = None,
                 max_connections_per_peer: int = 20, max_connections: int = 200, **kwargs):
        self.max_pdu = max_pdu
        self.handshake_timeout_s = handshake_timeout_s
        self.deadline_s = deadline_s
        self.connections = ConnectionCount(max_connections_per_peer, max_connections)
        kwargs.setdefault("request_handler", LimitedRequestHandler)
        super().__init__(*args, **kwargs)

    def get_request(self):
        client, address = self.socket.accept()
        if self.ssl_context:
            client = self.ssl_context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        return client, address

    def verify_request(self, request, client_address) -> bool:
        """Admit the connection within the per-address and total caps (socketserver's hook: a
        refused request is closed before a thread is started for it)."""
        peer = client_address[0] if isinstance(client_address, tuple) else str(client_address)
        reason = self.connections.admit(request, peer)
        if reason is None:
            return True
        metrics.SCP_CONNECTIONS_DROPPED.labels(reason="connection-cap").inc()
        self.connections.log_refusal(peer, reason)
        return False

    def start(self) -> threading.Thread:
        """Serve in a daemon thread (as ``AE.start_server(block=False)`` does)."""
        thread = threading.Thread(target=self.serve_forever, name="AcceptorServer", daemon=True)
        thread.start()
        return thread

    def shutdown(self) -> None:
        """Stop accepting and close the listening socket (pynetdicom's ``shutdown`` would also
        remove the server from the AE's private list of servers, where it never was)."""
        socketserver.BaseServer.shutdown(self)
        self.server_close()


class ChunkedReceipt:
    """C-STORE data sets written to files under ``incoming`` as they arrive, at most
    ``max_bytes`` each (bytes past it are dropped and the file is marked as overflowed).

    pynetdicom writes a received data set to ``tempfile.NamedTemporaryFile`` (in the system's
    temporary folder) when ``_config.STORE_RECV_CHUNKED_DATASET`` is on; :meth:`install` makes
    that call create a :class:`_BoundedFile` in ``incoming`` instead (same file system as the
    store, so a commit is a rename), through :mod:`~arcade_pacs.receive.pynetdicom_adapter`.
    Both are process-wide pynetdicom settings: one installed receipt serves the process's SCP.
    """

    def __init__(self, incoming: Path, max_bytes: int):
        self.incoming = Path(incoming)
        self.max_bytes = max_bytes
        self._overflowed: set[str] = set()
        self._lock = threading.Lock()

    def install(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True)
        _config.STORE_RECV_CHUNKED_DATASET = True  # public pynetdicom setting
        pynetdicom_adapter.receive_data_sets_with(self._open)  # the one private hook (see there)

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
