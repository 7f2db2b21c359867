"""STOW-RS client: sends a stored SR file to a DICOMweb destination (``kind = "dicomweb"``) and
turns the answer into the outbox's outcome, beside the C-STORE SCU (:mod:`arcade_pacs.send.scu`).

One request per delivery: ``POST {url}/studies`` with ``multipart/related;
type="application/dicom"`` holding the Part 10 file as stored (the same bytes, so the same SOP
Instance UID every time it is sent), streamed from disk with its Content-Length. The answer is
read as PS3.18 10.5.3 describes it:

- 200, or 202 naming the instance in the Referenced SOP Sequence: sent (a Warning Reason is kept
  as the status; 0xB000, 0xB006, 0xB007 still mean stored, as for C-STORE);
- the instance in the Failed SOP Sequence (a 409, or a 202 that stored nothing of ours): its
  Failure Reason is the status, classified as a C-STORE status is (0xA7xx retried, others
  failed at once, the reason kept);
- 408, 429, 5xx and transport errors (refused, reset, timeout, TLS): retried;
- any other answer (400, 401, 403, 404, 413, 415, a 409 without a Failure Reason, redirects):
  failed at once with the HTTP status in the error, since sending the same request again
  cannot change it (fix the configuration, then ``POST /deliveries/{id}/retry``).
"""

from __future__ import annotations

import logging
import os
import secrets
import ssl
from collections.abc import Iterator

import httpx

from arcade_pacs.dicom import dicomweb
from arcade_pacs.dicom.tls import client_context
from arcade_pacs.send.scu import SendOutcome
from arcade_pacs.settings import Destination, Settings

log = logging.getLogger(__name__)

CHUNK = 1 << 16
RETRIED_HTTP = {408, 429}
"""HTTP statuses besides 5xx that may pass by themselves: request timeout, too many requests."""


def _file_meta_uids(path: str) -> tuple[str, str]:
    """SOP Class and Instance UIDs of the stored Part 10 file (its File Meta Information)."""
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)
    return str(meta.MediaStorageSOPClassUID), str(meta.MediaStorageSOPInstanceUID)


class StowClient:
    """Sends to DICOMweb destinations; one HTTP connection pool per destination, made at start."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._clients: dict[str, httpx.Client] = {}
        for dest in settings.destinations:  # bad certificate files stop the start, not a delivery
            if dest.kind == "dicomweb":
                self._clients[dest.name] = self._client(dest)

    def _client(self, dest: Destination) -> httpx.Client:
        cfg = self.settings.outbox
        verify: ssl.SSLContext | bool = True
        if dest.url.lower().startswith("https://"):
            tls = dest.tls
            verify = client_context(tls.ca_certificates, tls.certificate, tls.private_key, tls.check_hostname)
        auth = None
        headers = {"Accept": dicomweb.DICOM_JSON}
        if dest.token is not None:
            headers["Authorization"] = f"Bearer {dest.token.get_secret_value()}"
        elif dest.username is not None:
            auth = httpx.BasicAuth(dest.username, dest.password.get_secret_value() if dest.password else "")
        timeout = httpx.Timeout(dest.timeout_s or cfg.network_timeout_s, connect=cfg.connect_timeout_s)
        return httpx.Client(verify=verify, auth=auth, headers=headers, timeout=timeout, follow_redirects=False,
                            trust_env=False)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def send_to(self, path: str, destination: Destination) -> SendOutcome:
        """STOW-RS the Part 10 file at ``path`` to ``destination``; never raises."""
        try:
            client = self._clients.get(destination.name) or self._clients.setdefault(
                destination.name, self._client(destination))
            sop_class, sop_instance = _file_meta_uids(path)
        except Exception as exc:  # an unreadable file or certificate: nothing a retry changes
            return SendOutcome(None, f"cannot send: {type(exc).__name__}: {exc}"[:500], final=True)
        url = destination.url.rstrip("/") + "/studies"
        boundary = secrets.token_hex(16)
        head = (f"--{boundary}\r\nContent-Type: {dicomweb.DICOM}\r\n"
                f"Content-Length: {os.path.getsize(path)}\r\n\r\n").encode("ascii")
        tail = f"\r\n--{boundary}--\r\n".encode("ascii")
        length = len(head) + os.path.getsize(path) + len(tail)
        headers = {"Content-Type": f'{dicomweb.MULTIPART_RELATED}; type="{dicomweb.DICOM}"; boundary={boundary}',
                   "Content-Length": str(length)}
        try:
            response = client.post(url, content=_body(head, path, tail), headers=headers)
        except httpx.HTTPError as exc:  # connection refused or reset, timeouts, TLS failures
            return SendOutcome(None, f"STOW-RS to {url} failed: {type(exc).__name__}: {exc}"[:500])
        return outcome(response, sop_instance, sop_class)


def _body(head: bytes, path: str, tail: bytes) -> Iterator[bytes]:
    yield head
    with open(path, "rb") as fp:
        while chunk := fp.read(CHUNK):
            yield chunk
    yield tail


def outcome(response: httpx.Response, sop_instance: str, sop_class: str = "") -> SendOutcome:
    """What one STOW-RS answer means for the delivery of ``sop_instance`` (see the module docstring)."""
    code = response.status_code
    said = f"HTTP {code} {response.reason_phrase}".strip()
    warning = response.headers.get("warning", "")
    if code >= 500 or code in RETRIED_HTTP:
        return SendOutcome(None, f"{said}: {response.text[:200]}".strip())
    if code in (200, 202, 409):
        try:
            results = dicomweb.parse_store_response(response.json())
        except ValueError:
            results = []
        mine = [r for r in results if r.sop_instance_uid == sop_instance]
        if mine:
            status = mine[0].status
            if mine[0].stored:
                return SendOutcome(status, None)
            return SendOutcome(status, f"{said}: Failure Reason 0x{status:04X} {warning}".strip()[:500])
        if code == 200:
            return SendOutcome(0, None)  # all stored, though the answer does not name it
    return SendOutcome(None, f"{said} (not retried): {warning or response.text[:200]}".strip()[:500], final=True)
